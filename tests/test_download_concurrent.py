"""Two downloads of one URL at once, from a server that ignores Range (http.server's, as the `www` fixture runs):
they must not share a partial file. Before, the second one's Range request got the whole file back, it truncated
the first one's `.part` and both wrote into it: the cache ended with a right-sized file whose start was zeros."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import threading
import time

import pytest

from pspnet_trt import checkpoints as ck

PAYLOAD = os.urandom(3 << 20)


class SlowHandler(http.server.SimpleHTTPRequestHandler):
    """The `www` fixture's handler (whole files, Range ignored), sending in 128 KiB pieces 20 ms apart."""

    def copyfile(self, source, outputfile):
        while True:
            chunk = source.read(128 << 10)
            if not chunk:
                return
            outputfile.write(chunk)
            outputfile.flush()
            time.sleep(0.02)

    def log_message(self, *args):
        pass


@pytest.fixture
def slow_www(www):
    """The `www` folder served slowly, so a second download starts while the first one is writing."""
    _, root = www
    (root / "model.pth").write_bytes(PAYLOAD)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(SlowHandler, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/model.pth"
    httpd.shutdown()
    httpd.server_close()


def test_two_downloads_of_one_url_get_the_whole_file(slow_www, tmp_path):
    dest = tmp_path / "cache" / "model.pth"
    results, errors = [], []

    def fetch():
        try:
            results.append(ck.download(slow_www, dest, progress=False))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    first = threading.Thread(target=fetch)
    first.start()
    part = ck.part_path(dest, slow_www)
    deadline = time.monotonic() + 30
    while not (part.exists() and part.stat().st_size > 0) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert part.exists(), "the first download never started writing"
    second = threading.Thread(target=fetch)
    second.start()
    first.join(60)
    second.join(60)
    assert not errors, errors
    assert results == [dest, dest]
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == hashlib.sha256(PAYLOAD).hexdigest()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["model.pth"]  # no part file, no lock file left


def test_a_wrong_sha256_is_refused_and_nothing_is_cached(slow_www, tmp_path):
    dest = tmp_path / "cache" / "model.pth"
    with pytest.raises(ck.DownloadError, match="sha256 mismatch"):
        ck.download(slow_www, dest, sha256="0" * 64, progress=False)
    assert sorted(p.name for p in dest.parent.iterdir()) == []
