"""Checkpoint reading in sssegmentation's formats, strict loading, refusal of code, and downloads
from a local HTTP server on 127.0.0.1 (resume, checksum, offline error)."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading

import pytest
import torch

from pspnet_trt import checkpoints as ck
from pspnet_trt.models import PSPNet, randomize_


def small(num_classes: int = 11) -> PSPNet:
    return PSPNet(num_classes=num_classes, depth=18, ppm_channels=8, aux_channels=8).eval()


@pytest.fixture(scope="module")
def trained():
    return randomize_(small(), 3)


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_sssegmentation_training_format_loads_strictly(trained, tmp_path):
    # ssseg/train.py: {'cur_epoch', 'cur_iter', 'optimizer', 'model'} with no 'module.' prefix
    opt = torch.optim.SGD(trained.parameters(), lr=0.01, momentum=0.9)
    path = tmp_path / "checkpoints-epoch-3.pth"
    torch.save({"cur_epoch": 3, "cur_iter": 120, "optimizer": opt.state_dict(), "model": trained.state_dict()}, path)
    model = ck.load_checkpoint(small(), path)
    assert_same_weights(model, trained)


def test_2020_format_with_fuse_layer_and_ddp_prefix(trained, tmp_path):
    old = {}
    for k, v in trained.state_dict().items():
        k = k.replace("ppm_net.bottleneck.", "ppm_net.fuse_layer.")
        old["module." + k] = v
    path = tmp_path / "old.pth"
    torch.save({"epoch": 220, "state_dict": old}, path)
    assert_same_weights(ck.load_checkpoint(small(), path), trained)
    torch.save(old, path)  # a bare state dict
    assert_same_weights(ck.load_checkpoint(small(), path), trained)


def test_save_checkpoint_is_published_layout(trained, tmp_path):
    path = ck.save_checkpoint(tmp_path / "x.pth", trained.state_dict(), cur_epoch=1)
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"model", "cur_epoch"}
    assert not list(tmp_path.glob("*.part"))


class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['EVIL_MARKER']}",))


def test_pickle_that_runs_code_is_refused(tmp_path, monkeypatch, trained):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("EVIL_MARKER", str(marker))
    path = tmp_path / "evil.pth"
    torch.save({"model": trained.state_dict(), "hook": Evil()}, path)
    with pytest.raises(ck.CheckpointError, match="refused"):
        ck.load_checkpoint(small(), path)
    assert not marker.exists()


def test_truncated_file_is_reported_as_corrupt(trained, tmp_path):
    path = tmp_path / "cut.pth"
    torch.save({"model": trained.state_dict()}, path)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ck.CheckpointError, match="truncated or corrupt"):
        ck.load_checkpoint(small(), path)


def test_wrong_num_classes_says_so(trained, tmp_path):
    path = ck.save_checkpoint(tmp_path / "c.pth", trained.state_dict())
    with pytest.raises(ck.CheckpointError, match="11 classes but the model has 19.*num_classes=11"):
        ck.load_checkpoint(small(19), path)


def test_missing_unexpected_and_shape_mismatch_are_named(trained, tmp_path):
    state = dict(trained.state_dict())
    state.pop("decoder.1.bias")
    state["extra.weight"] = torch.zeros(1)
    state["ppm_net.bottleneck.0.weight"] = torch.zeros(8, 1, 3, 3)
    path = ck.save_checkpoint(tmp_path / "bad.pth", state)
    with pytest.raises(ck.CheckpointError) as e:
        ck.load_checkpoint(small(), path)
    msg = str(e.value)
    assert "decoder.1.bias" in msg and "extra.weight" in msg and "ppm_net.bottleneck.0.weight is (8, 1, 3, 3)" in msg


def test_non_tensor_entries_are_rejected(tmp_path):
    path = tmp_path / "meta.pth"
    torch.save({"model": {"a": 1}}, path)
    with pytest.raises(ck.CheckpointError, match="not a tensor"):
        ck.read_state_dict(path)


# --- downloads ------------------------------------------------------------------------------------

PAYLOAD = os.urandom(300_000)


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD at /ok.pth with HTTP Range support; logs the Range headers it saw."""

    ranges: list = []

    def do_GET(self):  # noqa: N802
        if self.path != "/ok.pth":
            self.send_error(404)
            return
        start = 0
        header = self.headers.get("Range")
        RangeHandler.ranges.append(header)
        if header:
            start = int(header.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD) - start))
        self.end_headers()
        self.wfile.write(PAYLOAD[start:])

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_download_verifies_checksum_and_writes_atomically(server, tmp_path):
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    dest = ck.download(f"{server}/ok.pth", tmp_path / "a.pth", sha256=sha, progress=False)
    assert dest.read_bytes() == PAYLOAD and not (tmp_path / "a.pth.part").exists()


def test_download_resumes_from_part_file(server, tmp_path):
    ck.part_path(tmp_path / "b.pth", f"{server}/ok.pth").write_bytes(PAYLOAD[:100_000])  # this URL's partial file
    RangeHandler.ranges.clear()
    dest = ck.download(f"{server}/ok.pth", tmp_path / "b.pth", sha256=hashlib.sha256(PAYLOAD).hexdigest(), progress=False)
    assert RangeHandler.ranges == ["bytes=100000-"]
    assert dest.read_bytes() == PAYLOAD


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    with pytest.raises(ck.DownloadError, match="sha256 mismatch"):
        ck.download(f"{server}/ok.pth", tmp_path / "c.pth", sha256="0" * 64, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_http_404_and_offline_errors(server, tmp_path):
    with pytest.raises(ck.DownloadError, match="HTTP 404"):
        ck.download(f"{server}/missing.pth", tmp_path / "d.pth", progress=False)
    with pytest.raises(ck.DownloadError, match="--checkpoint PATH"):
        ck.download("http://127.0.0.1:9/x.pth", tmp_path / "e.pth", progress=False, retries=0, timeout=2)
    assert not (tmp_path / "e.pth").exists()


def test_fetch_checkpoint_uses_cache_dir(server, tmp_path, monkeypatch):
    import dataclasses

    from pspnet_trt import zoo

    monkeypatch.setenv("PSPNET_TRT_CACHE", str(tmp_path / "cache"))
    spec = dataclasses.replace(zoo.ZOO["r50_os8_voc"], checkpoint_files=("ok.pth",))
    monkeypatch.setitem(zoo.ZOO, "r50_os8_voc", spec)
    monkeypatch.setenv("PSPNET_TRT_MODEL_BASE_URL", server)
    path = ck.fetch_checkpoint("r50_os8_voc", progress=False)
    assert path == tmp_path / "cache" / "ok.pth" and path.read_bytes() == PAYLOAD
    RangeHandler.ranges.clear()
    assert ck.fetch_checkpoint("r50_os8_voc", progress=False) == path and RangeHandler.ranges == []  # cached


def test_demo_model_has_no_published_checkpoint():
    with pytest.raises(ck.DownloadError, match="train one"):
        ck.fetch_checkpoint("r18_os8_camvid")


def test_cli_prints_one_line_error_for_bad_checkpoint(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    r = subprocess.run([sys.executable, "-m", "pspnet_trt", "export", "--model", "r18_os8_camvid", "--checkpoint",
                        str(bad), "--out", str(tmp_path / "x.onnx")], capture_output=True, text=True)
    assert r.returncode == 2
    assert "error:" in r.stderr and "Traceback" not in r.stderr and str(bad) in r.stderr
    assert "corrupt" in r.stderr and "refused" not in r.stderr
    assert not (tmp_path / "x.onnx").exists()


def test_sssegmentation_latest_link_relative_to_training_folder(trained, tmp_path, monkeypatch):
    # ssseg/train.py: os.symlink("ckpts/checkpoints-epoch-1.pth", "ckpts/checkpoints-epoch-latest.pth"), run from the
    # training folder, so the link is broken when resolved from its own folder
    ckpts = tmp_path / "ckpts"
    ckpts.mkdir()
    ck.save_checkpoint(ckpts / "checkpoints-epoch-1.pth", trained.state_dict())
    latest = ckpts / "checkpoints-epoch-latest.pth"
    latest.symlink_to("ckpts/checkpoints-epoch-1.pth")
    assert not latest.exists()
    monkeypatch.chdir(tmp_path.parent)  # elsewhere: resolved by the file name beside the link
    assert_same_weights(ck.load_checkpoint(small(), latest), trained)
    (ckpts / "checkpoints-epoch-1.pth").unlink()
    with pytest.raises(ck.CheckpointError, match="pass the checkpoints-epoch-1.pth file"):
        ck.read_state_dict(latest)
