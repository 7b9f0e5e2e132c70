"""report.json, report.md and a per-class IoU bar chart (iou_per_class.png), written atomically."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, List

import numpy as np

from ..files import atomic_open, write_json
from ..reporting import fmt, markdown_table, pyplot, save_png

if TYPE_CHECKING:
    from .core import ValidationReport

log = logging.getLogger(__name__)

CLASSES_PER_PANEL = 40  # the bar chart wraps into several panels above this (ADE20k: 150 classes)


def markdown(report: ValidationReport) -> str:
    """The report as markdown: verdict, setup, one row per backend, IoU per class."""
    c = report.context
    verdict = report.verdict
    setup = [report.coverage]
    if c.get("dataset"):
        setup.append(f"{c['dataset']} {c.get('split')} ({c.get('data_root')})")
    if c.get("input_size"):
        setup.append(f"input {c['input_size'][0]}x{c['input_size'][1]}")
    mode = report.mode
    if report.mode == "slide" and c.get("stride"):
        mode += f" (stride {c['stride'][0]}x{c['stride'][1]}, test resize {c.get('test_resize') or 'none'})"
    lines = [
        f"# Validation: {verdict}",
        "",
        f"Model {c.get('model', '?')} (checkpoint sha256 {str(c.get('checkpoint_sha256') or 'unknown')[:16]}); "
        f"{', '.join(setup)}; {mode} inference; {report.seconds:.1f} s.",
        (f"Gate: an artifact passes when its mIoU is at most {report.tolerance} points below PyTorch's, its labels "
         f"agree with PyTorch's on at least the floor of its precision ({_floors(report)}) and it predicts no label "
         f"outside 0..{len(report.class_names) - 1} (out-of-range px: such pixels, any pixel; scored as misses). "
         if report.gated else
         "No --onnx/--engine artifact was given: PyTorch is evaluated alone and nothing is gated. ") +
        "Agreement = pixels (all, labelled or not) where the artifact predicts the class of PyTorch computing what "
        "its graph computes (fed its input, its scores upsampled where its graph upsamples them).",
        "",
    ]
    rows = []
    for r in report.rows:
        gate = "-" if "passed" not in r else ("pass" if r["passed"] else "**FAIL**")
        rows.append([r["backend"], r["precision"], fmt(r["miou"], ".2f"), fmt(r["delta"], "+.2f"),
                     fmt(r["pixel_accuracy"], ".2f"), fmt(r["agreement"], ".3f"), fmt(r.get("invalid_pixels"), "d"),
                     fmt(r["images_per_s"], ".2f"), fmt(r["size_mb"], ".1f"), gate])
    lines.append(markdown_table(["backend", "precision", "mIoU %", "Δ vs PyTorch", "pixel acc %", "agreement %",
                                 "out-of-range px", "images/s", "size MB", "gate"], rows))
    for r in report.rows:
        if r.get("why"):
            lines += ["", f"**{r['backend']} fails the gate: {'; '.join(r['why'])}.**"]
    for r in report.rows:
        if r.get("invalid_pixels"):
            lines += ["", f"**{r['backend']} predicted {r['invalid_pixels']} pixels outside the class range "
                          f"0..{len(report.class_names) - 1} (out-of-range labels): it fails the gate; a healthy "
                          "artifact emits none.**"]
    other = [r["backend"] for r in report.rows if r.get("same_checkpoint") is False]
    if other:
        lines += ["", f"Note: exported from a different checkpoint than the reference's: {', '.join(other)}."]
    numerics = [f"Numerics of {r['backend']}: {r['numerics']}." for r in report.rows if r.get("numerics")]
    if numerics:
        lines += ["", *numerics]
    lines += ["", "## IoU per class (%)", "", "- = class absent from both the labels and the predictions.", "",
              markdown_table(["class", *(r["backend"] for r in report.rows)],
                             [[name, *(fmt(None if r["iou"][name] is None else 100 * r["iou"][name], ".2f")
                                       for r in report.rows)] for name in report.class_names])]
    return "\n".join(lines) + "\n"


def _floors(report: ValidationReport) -> str:
    """The agreement floors of the report's artifacts, e.g. ``fp32 99.9 %, int8 96 %``."""
    floors = {r["precision"]: r["agreement_floor"] for r in report.rows if r.get("agreement_floor") is not None}
    return ", ".join(f"{p} {f:g} %" for p, f in floors.items())


def bar_chart(report: ValidationReport, path: Path) -> None:
    """Grouped bars: IoU per class, one colour per backend (mIoU in the legend); matplotlib Agg."""
    save_png(iou_figure(report), path)


def iou_figure(report: ValidationReport) -> Any:
    """The figure of :func:`bar_chart`. A class absent from both the labels and the predictions has no IoU: its
    bar is marked "n/a" (not drawn as 0, nor left as a blank gap that reads as a missing bar)."""
    plt = pyplot()
    names: List[str] = list(report.class_names)
    panels = max(1, -(-len(names) // CLASSES_PER_PANEL))
    per_panel = -(-len(names) // panels)
    width = 0.8 / len(report.rows)
    legend_rows = -(-len(report.rows) // 2)
    legend_in = 0.22 * legend_rows + 0.2
    height = 4.0 * panels + legend_in
    fig, axes = plt.subplots(panels, 1, figsize=(max(8.0, 0.32 * per_panel * len(report.rows) ** 0.5 + 2), height),
                             squeeze=False)
    for p, ax in enumerate(axes[:, 0]):
        chunk = names[p * per_panel:(p + 1) * per_panel]
        x = np.arange(len(chunk))
        for i, r in enumerate(report.rows):
            values = [100 * (r["iou"][n] or 0.0) for n in chunk]
            miou = "-" if r["miou"] is None or r["miou"] != r["miou"] else f"{r['miou']:.2f}"
            where = x + i * width - 0.4 + width / 2
            ax.bar(where, values, width, label=f"{r['backend']} (mIoU {miou})")
            for at, n in zip(where, chunk):
                if r["iou"][n] is None:
                    ax.text(at, 1, "n/a", rotation=90, ha="center", va="bottom", fontsize=6, color="0.4")
        ax.set_xticks(x)
        ax.set_xticklabels([n.split(",")[0] for n in chunk], rotation=60, ha="right", fontsize=8)
        ax.set_xlim(-0.6, len(chunk) - 0.4)
        ax.set_ylabel("IoU %")
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
    handles, legend_labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, legend_labels, loc="lower center", ncol=min(2, len(handles)), fontsize=8, frameon=False)
    axes[0, 0].set_title(f"IoU per class and backend ({report.coverage}, {report.mode} inference; n/a: class absent "
                         "from labels and predictions)", fontsize=9)
    fig.tight_layout(rect=(0, legend_in / height, 1, 1))
    return fig


def write_report(report: ValidationReport, folder: Path) -> None:
    """report.json, report.md and iou_per_class.png in ``folder`` (the chart is skipped without matplotlib)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "report.json", report.to_dict())
    with atomic_open(folder / "report.md", "w") as f:
        f.write(markdown(report))
    try:
        bar_chart(report, folder / "iou_per_class.png")
    except ImportError:
        log.warning("matplotlib is not installed: no bar chart (pip install '.[train]' in the pspnet-trt checkout)")
    log.info("validation report: %s", folder / "report.md")
