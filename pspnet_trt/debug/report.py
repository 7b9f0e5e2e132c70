"""debug.json, debug.md and error_per_layer.png (relative L2 per tensor in graph order), written atomically."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Optional

from ..files import atomic_open, atomic_path, write_json
from .compare import EXACT_OPS, Comparison

log = logging.getLogger(__name__)


def summary_line(c: Comparison) -> str:
    """The command's last line."""
    if c.first_divergence is None:
        return "first divergence: none (every layer within the rounding noise of its precision)"
    fd = c.first_divergence
    return f"first divergence: {fd['module']} ({fd['tensor']}, rel L2 {fd['rel_l2']:.3g})"


def markdown(c: Comparison, fix: Optional[Dict[str, Any]] = None) -> str:
    rule = c.rule
    lines = [f"# Layer-wise comparison: {Path(c.artifact).name} vs {Path(c.reference).name}", "",
             f"Artifact precision {c.precision}; {len(c.images)} images; {len(c.rows)} tensors compared "
             "(Polygraphy: every tensor marked as an output, its L2, cosine and simple compare functions per "
             "image).", ""]
    lines += [f"**{summary_line(c)}**", "",
              f"Rule: the first layer (graph order) whose added error `sqrt(relL2^2 - relL2_inputs^2)` exceeds "
              f"{rule['factor']:g} x max(floor {rule['floor']:g} for {rule['precision']}, the median error added by "
              f"the earlier layers of the same kind (Q/DQ pair or op type)). Ops that only select or copy values "
              f"({', '.join(EXACT_OPS[:3])}, ...) are never named.", ""]
    lines += [f"- {n}" for n in c.notes]
    if c.notes:
        lines.append("")
    lines += ["## Largest error growth", "", "| module | tensor | added error | rel L2 |", "|---|---|---|---|"]
    lines += [f"| {r.module} | `{r.tensor}` | {r.growth:.3g} | {r.rel_l2:.3g} |" for r in c.worst_growth()]
    if fix:
        lines += ["", "## --fix", "", f"Budget {fix['budget']} mIoU points on the debug images: reference "
                  f"{fix['reference_miou']:.2f}, artifact {fix['artifact_miou']:.2f}, fixed "
                  f"{fix['fixed_miou']:.2f} ({'met' if fix['met'] else 'NOT met'}).",
                  f"Kept in {fix['float_dtype'].upper()}: {len(fix['kept'])} of {len(fix['candidates'])} candidate "
                  f"layers ({fix['method']}): " + (", ".join(f"`{k}`" for k in fix["kept"]) or "none"),
                  "", "| layers kept | mIoU |", "|---|---|"]
        lines += [f"| {t['k']} | {t['miou']:.2f} |" for t in fix["trials"]]
        if fix.get("out"):
            lines += ["", f"Fixed artifact: `{fix['out']}`"]
    lines += ["", "## Every tensor (graph order)", "",
              "| # | module | op | tensor | rel L2 | max abs | cosine | added |", "|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(c.rows):
        lines.append(f"| {i} | {r.module} | {r.op} | `{r.tensor}` | {r.rel_l2:.3g} | {r.max_abs:.3g} | "
                     f"{r.cosine:.6f} | {r.growth:.3g} |")
    mapped = [r for r in c.rows if r.mapping != "same name"]
    if mapped:
        lines += ["", "## Name mapping", "", f"{len(mapped)} artifact tensors were mapped to a reference tensor of "
                  "another name, e.g.:", ""]
        lines += [f"- {r.mapping}" for r in mapped[:5]]
    if c.unmatched:
        lines += ["", f"{len(c.unmatched)} artifact tensors have no float counterpart in the reference and were "
                  "left out (casts, INT8 Q outputs, dequantized weights, labels), e.g. "
                  + ", ".join(f"`{u}`" for u in c.unmatched[:4])]
    return "\n".join(lines) + "\n"


def error_plot(c: Comparison, path: Path) -> None:
    """Relative L2 (log scale) per compared tensor in graph order; Q/DQ pairs marked; first divergence in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = list(range(len(c.rows)))
    ys = [max(r.rel_l2, 1e-12) for r in c.rows]
    fig, ax = plt.subplots(figsize=(max(8.0, 0.09 * len(xs) + 3), 4.5))
    ax.plot(xs, ys, "-", color="0.6", lw=1)
    conv = [i for i, r in enumerate(c.rows) if r.op == "Conv"]
    qdq = [i for i, r in enumerate(c.rows) if " @ input Q/DQ of " in r.tensor]
    ax.scatter(conv, [ys[i] for i in conv], s=12, label="Conv", zorder=3)
    if qdq:
        ax.scatter(qdq, [ys[i] for i in qdq], s=12, marker="s", label="input Q/DQ", zorder=3)
    if c.first_divergence is not None:
        i = next(k for k, r in enumerate(c.rows) if r.tensor == c.first_divergence["tensor"])
        ax.scatter([i], [ys[i]], s=80, facecolors="none", edgecolors="red", lw=2, zorder=4,
                   label=f"first divergence: {c.first_divergence['module']}")
    ticks = [i for i, r in enumerate(c.rows) if r.op == "Conv"][:: max(1, len(conv) // 25)]
    ax.set_xticks(ticks)
    ax.set_xticklabels([c.rows[i].module for i in ticks], rotation=70, ha="right", fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("relative L2 error vs reference")
    ax.set_title(f"{Path(c.artifact).name} ({c.precision}) vs {Path(c.reference).name}, {len(c.images)} images")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def write_report(c: Comparison, folder: Path, fix: Optional[Dict[str, Any]] = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "debug.json", {**c.to_dict(), "fix": fix})
    with atomic_open(folder / "debug.md", "w") as f:
        f.write(markdown(c, fix))
    error_plot(c, folder / "error_per_layer.png")
    log.info("debug report: %s", folder / "debug.md")
