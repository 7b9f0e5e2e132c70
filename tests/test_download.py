"""Downloads against a local HTTP server (127.0.0.1): both published names, mirrors, Content-Length, HTTP 416."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading

import pytest

from pspnet_trt import checkpoints as ck
from pspnet_trt import zoo

PAYLOAD = os.urandom(200_000)
LOG = b"2023-11-22 epoch 1 loss 1.0\n"


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``files`` (path -> bytes) with Range support. ``truncate_once``: paths whose next full answer
    stops half way (Content-Length still says the whole size). ``refuse_ranges``: answer every Range with 416."""

    files: dict = {}
    truncate_once: set = set()
    refuse_ranges = False
    seen: list = []

    def do_GET(self):  # noqa: N802
        Handler.seen.append((self.path, self.headers.get("Range")))
        data = Handler.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start, header = 0, self.headers.get("Range")
        if header:
            start = int(header.split("=")[1].split("-")[0])
            if Handler.refuse_ranges or start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if self.path in Handler.truncate_once and not header:
            Handler.truncate_once.discard(self.path)
            body = body[: len(body) // 2]
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    Handler.files, Handler.truncate_once, Handler.refuse_ranges, Handler.seen = {}, set(), False, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture()
def mirror(server, tmp_path, monkeypatch):
    """The zoo pointed at the local server's /mirror folder; an empty cache."""
    monkeypatch.setenv("PSPNET_TRT_MODEL_BASE_URL", f"{server}/mirror/")
    monkeypatch.setenv("PSPNET_TRT_CACHE", str(tmp_path / "cache"))
    return server


def test_zoo_entries_carry_both_published_names(monkeypatch):
    monkeypatch.delenv("PSPNET_TRT_MODEL_BASE_URL", raising=False)
    spec = zoo.get_spec("r50_os8_cityscapes")
    base = "https://github.com/SegmentationBLWX/modelstore/releases/download/ssseg_pspnet"
    assert spec.urls == (f"{base}/pspnet_resnet50os8_cityscapes.pth", f"{base}/pspnet_resnet50os8_cityscapes_train.pth")
    assert spec.log_urls[-1] == f"{base}/pspnet_resnet50os8_cityscapes_train.log"
    assert zoo.get_spec("r18_os8_camvid").urls == ()


def test_mirror_base_url_replaces_the_folder(mirror, caplog):
    Handler.files = {"/mirror/pspnet_resnet50os8_voc.pth": PAYLOAD}
    assert zoo.get_spec("r50_os8_voc").urls[0] == f"{mirror}/mirror/pspnet_resnet50os8_voc.pth"
    with caplog.at_level("INFO", logger="pspnet_trt"):
        path = ck.fetch_checkpoint("r50_os8_voc", progress=False)
    assert path.read_bytes() == PAYLOAD and path.parent.name == "cache"
    assert [p for p, _ in Handler.seen] == ["/mirror/pspnet_resnet50os8_voc.pth"]
    assert f"fetched {mirror}/mirror/pspnet_resnet50os8_voc.pth" in caplog.text


def test_first_name_404s_then_the_train_name_is_fetched(mirror, caplog):
    Handler.files = {"/mirror/pspnet_resnet50os8_voc_train.pth": PAYLOAD}
    with caplog.at_level("INFO", logger="pspnet_trt"):
        path = ck.fetch_checkpoint("r50_os8_voc", progress=False)
    assert path.read_bytes() == PAYLOAD
    assert [p for p, _ in Handler.seen] == ["/mirror/pspnet_resnet50os8_voc.pth",
                                            "/mirror/pspnet_resnet50os8_voc_train.pth"]
    assert f"fetched {mirror}/mirror/pspnet_resnet50os8_voc_train.pth" in caplog.text
    Handler.seen.clear()
    assert ck.fetch_checkpoint("r50_os8_voc", progress=False) == path and Handler.seen == []  # cached


def test_both_names_404_lists_every_url_with_its_status(mirror):
    with pytest.raises(ck.DownloadError) as e:
        ck.fetch_checkpoint("r50_os8_voc", progress=False)
    message = str(e.value)
    assert f"{mirror}/mirror/pspnet_resnet50os8_voc.pth (HTTP 404" in message
    assert f"{mirror}/mirror/pspnet_resnet50os8_voc_train.pth (HTTP 404" in message
    assert "offline" not in message and "PSPNET_TRT_MODEL_BASE_URL" in message
    assert "\n" not in message


def test_unreachable_server_says_offline_and_names_the_url(tmp_path):
    with pytest.raises(ck.DownloadError, match=r"http://127.0.0.1:9/x.pth \(no answer.*offline"):
        ck.download("http://127.0.0.1:9/x.pth", tmp_path / "x.pth", progress=False, retries=0, timeout=2)


def test_download_command_fetches_the_training_log(mirror, tmp_path):
    Handler.files = {"/mirror/pspnet_resnet50os8_voc_train.pth": PAYLOAD,
                     "/mirror/pspnet_resnet50os8_voc_train.log": LOG}
    env = {**os.environ, "PSPNET_TRT_MODEL_BASE_URL": f"{mirror}/mirror", "PSPNET_TRT_CACHE": str(tmp_path / "cache")}
    run = subprocess.run([sys.executable, "-m", "pspnet_trt", "download", "--model", "r50_os8_voc", "--log"],
                         capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    cache = tmp_path / "cache"
    assert (cache / "pspnet_resnet50os8_voc.pth").read_bytes() == PAYLOAD
    assert (cache / "pspnet_resnet50os8_voc.log").read_bytes() == LOG
    assert "pspnet_resnet50os8_voc_train.log" in run.stderr  # says which URL served it
    assert str(cache / "pspnet_resnet50os8_voc.log") in run.stdout


# --- issue 14 item 13: Content-Length and HTTP 416 ----------------------------------------------------


def test_short_body_is_not_accepted_as_complete(server, tmp_path):
    """The server closes after half of what Content-Length announced: the download resumes, it does not stop."""
    Handler.files = {"/f.pth": PAYLOAD}
    Handler.truncate_once = {"/f.pth"}
    dest = ck.download(f"{server}/f.pth", tmp_path / "f.pth", progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert Handler.seen == [("/f.pth", None), ("/f.pth", f"bytes={len(PAYLOAD) // 2}-")]


def test_http_416_restarts_instead_of_taking_the_part_file_as_complete(server, tmp_path):
    Handler.files = {"/f.pth": PAYLOAD}
    ck.part_path(tmp_path / "f.pth", f"{server}/f.pth").write_bytes(os.urandom(len(PAYLOAD) + 10))  # stale, longer
    dest = ck.download(f"{server}/f.pth", tmp_path / "f.pth", progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert Handler.seen == [("/f.pth", f"bytes={len(PAYLOAD) + 10}-"), ("/f.pth", None)]


def test_server_that_refuses_every_range_still_gives_the_whole_file(server, tmp_path):
    Handler.files, Handler.refuse_ranges = {"/f.pth": PAYLOAD}, True
    ck.part_path(tmp_path / "f.pth", f"{server}/f.pth").write_bytes(PAYLOAD[:1000])
    assert ck.download(f"{server}/f.pth", tmp_path / "f.pth", progress=False).read_bytes() == PAYLOAD


# --- issue 26 item 6: one partial file per URL ----------------------------------------------------------------


def test_a_partial_body_from_one_url_is_never_resumed_from_another(server, tmp_path):
    """URL 1 stops half way through its file; URL 2 holds different bytes under the other name: the download
    from URL 2 starts at byte 0 (the old shared .part was resumed from URL 2 with a Range request: a file
    spliced from two sources, which only a published checksum could catch)."""
    other = os.urandom(len(PAYLOAD))
    Handler.files = {"/a.pth": PAYLOAD, "/b.pth": other}
    Handler.truncate_once = {"/a.pth"}
    dest = ck.download([f"{server}/a.pth", f"{server}/b.pth"], tmp_path / "f.pth", progress=False, retries=0)
    assert dest.read_bytes() == other
    assert Handler.seen == [("/a.pth", None), ("/b.pth", None)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.pth"]  # URL 1's partial body went with the success


def test_each_url_resumes_its_own_partial_file(server, tmp_path):
    """A partial body from URL 1 survives a failed run (URL 2 has nothing) and the next run resumes it from URL 1."""
    urls = [f"{server}/a.pth", f"{server}/b.pth"]
    Handler.files = {"/a.pth": PAYLOAD}
    Handler.truncate_once = {"/a.pth"}
    with pytest.raises(ck.DownloadError, match="HTTP 404"):
        ck.download(urls, tmp_path / "f.pth", progress=False, retries=0)
    assert ck.part_path(tmp_path / "f.pth", urls[0]).stat().st_size == len(PAYLOAD) // 2
    assert not ck.part_path(tmp_path / "f.pth", urls[1]).exists()
    Handler.seen.clear()
    assert ck.download(urls, tmp_path / "f.pth", progress=False, retries=0).read_bytes() == PAYLOAD
    assert Handler.seen == [("/a.pth", f"bytes={len(PAYLOAD) // 2}-")]
    assert ck.part_path(tmp_path / "f.pth", urls[0]) != ck.part_path(tmp_path / "f.pth", urls[1])
