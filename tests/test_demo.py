"""The demo's stage cache: a stage re-runs only when its inputs change, and Ctrl-C leaves no stamp."""

from __future__ import annotations

import pytest

from pspnet_trt.demo import Stages, format_table


def test_stage_is_reused_until_an_input_file_changes(tmp_path):
    stages = Stages(tmp_path / "stamps")
    src, out = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_text("a")
    calls = []

    def work():
        calls.append(1)
        out.write_text(src.read_text().upper())
        return "done"

    assert stages.run("s", {"src": src}, [out], work) == "done"
    assert stages.run("s", {"src": src}, [out], work) == "done" and len(calls) == 1
    src.write_text("b")
    stages.run("s", {"src": src}, [out], work)
    assert len(calls) == 2 and out.read_text() == "B"
    out.unlink()
    stages.run("s", {"src": src}, [out], work)
    assert len(calls) == 3


def test_interrupted_stage_leaves_no_stamp(tmp_path):
    stages = Stages(tmp_path / "stamps")

    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        stages.run("s", {"x": 1}, [tmp_path / "o"], interrupted)
    assert not (tmp_path / "stamps" / "s.json").exists()


def test_table_has_every_column():
    rows = [{"backend": "pytorch", "precision": "fp32", "miou": 50.0, "latency_ms": 10.0},
            {"backend": "onnxruntime", "precision": "int8", "miou": 49.8, "delta": -0.2, "agreement": 99.5,
             "latency_ms": 5.0, "size_mb": 13.5, "passed": True}]
    table = format_table(rows)
    assert "| onnxruntime | int8 | 49.80 | -0.20 | 99.500 | 5.0 | 13.5 | pass |" in table
