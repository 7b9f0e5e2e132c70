"""report.json, report.md and a per-class IoU bar chart (PNG), written atomically."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, List

import numpy as np

from ..files import atomic_open, atomic_path, write_json

if TYPE_CHECKING:
    from . import ValidationReport

log = logging.getLogger(__name__)


def _fmt(v: object, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def markdown(report: ValidationReport) -> str:
    verdict = "PASS" if report.passed else "FAIL"
    lines = [
        f"# Validation: {verdict}",
        "",
        f"{report.images} images, {report.mode} inference, tolerance {report.tolerance} mIoU points below PyTorch, "
        f"{report.seconds:.0f} s.",
        "",
        "| backend | precision | mIoU % | Δ vs PyTorch | pixel acc % | agreement % | images/s | size MB | gate |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report.rows:
        gate = "-" if "passed" not in r else ("pass" if r["passed"] else "**FAIL**")
        lines.append(f"| {r['backend']} | {r['precision']} | {_fmt(r['miou'], '.2f')} | {_fmt(r['delta'], '+.2f')} | "
                     f"{_fmt(r['pixel_accuracy'], '.2f')} | {_fmt(r['agreement'], '.3f')} | "
                     f"{_fmt(r['images_per_s'], '.2f')} | {_fmt(r['size_mb'], '.1f')} | {gate} |")
    lines += ["", "## IoU per class (%)", "",
              "| class | " + " | ".join(r["backend"] for r in report.rows) + " |",
              "|---|" + "---|" * len(report.rows)]
    for name in report.class_names:
        cells = [_fmt(None if r["iou"][name] is None else 100 * r["iou"][name], ".2f") for r in report.rows]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def bar_chart(report: ValidationReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names: List[str] = [n.split(",")[0] for n in report.class_names]
    x = np.arange(len(names))
    width = 0.8 / len(report.rows)
    fig, ax = plt.subplots(figsize=(max(8.0, 0.45 * len(names) * len(report.rows) ** 0.5), 4.5))
    for i, r in enumerate(report.rows):
        values = [100 * (r["iou"][n] or 0.0) for n in report.class_names]
        ax.bar(x + i * width - 0.4 + width / 2, values, width, label=f"{r['backend']} ({r['miou']:.1f})")
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("IoU %")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7)
    ax.set_title("IoU per class and backend (mIoU in the legend)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def write_report(report: ValidationReport, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "report.json", report.to_dict())
    with atomic_open(folder / "report.md", "w") as f:
        f.write(markdown(report))
    try:
        bar_chart(report, folder / "iou_per_class.png")
    except ImportError:
        log.warning("matplotlib is not installed: no bar chart (pip install 'pspnet-trt[train]')")
