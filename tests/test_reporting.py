"""The one markdown-table helper and the one plot helper (issue 14.24)."""

from __future__ import annotations

import cv2
import pytest

from pspnet_trt.reporting import fmt, markdown_table, pyplot, save_png


def test_markdown_table_and_fmt():
    table = markdown_table(["a", "b"], [[1, fmt(None, ".2f")], ["x|y", fmt(float("nan"), ".1f")], [2, fmt(1.234, "+.2f")]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1 | - |", "| x\\|y | - |", "| 2 | +1.23 |"]
    with pytest.raises(ValueError, match="row of 1 cells for 2 columns"):
        markdown_table(["a", "b"], [[1]])


def test_every_table_uses_the_helper():
    from pspnet_trt.demo import format_table
    from pspnet_trt.zoo import ZOO, table

    zoo = markdown_table(*table()).splitlines()
    assert zoo[0].startswith("| name | backbone |") and len(zoo) == 2 + len(ZOO)
    demo = format_table([{"backend": "pytorch", "precision": "fp32", "miou": 36.2},
                         {"backend": "onnxruntime", "precision": "int8", "miou": 36.1, "delta": -0.1, "passed": False}])
    assert demo.splitlines()[3] == "| onnxruntime | int8 | 36.10 | -0.10 | - | - | - | FAIL |"


def test_save_png_writes_a_picture(tmp_path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    save_png(fig, tmp_path / "p.png")
    assert cv2.imread(str(tmp_path / "p.png")).shape == (200, 200, 3)
    assert not plt.get_fignums()  # closed
