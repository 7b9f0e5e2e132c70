"""The one markdown-table helper and the one plot helper every report uses (core: numpy-free, matplotlib lazily).

    print(markdown_table(["name", "mIoU %"], [["fp16", fmt(36.2, ".2f")], ["int8", fmt(None, ".2f")]]))
    plt = pyplot()                       # matplotlib with the Agg backend (ImportError without matplotlib)
    fig, ax = plt.subplots()
    save_png(fig, "out/plot.png")        # written atomically, figure closed
"""

from __future__ import annotations

from typing import Any, Sequence

from .files import PathLike, atomic_path


def fmt(value: Any, spec: str) -> str:
    """``format(value, spec)``; ``-`` for None and NaN (missing numbers in a table)."""
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return format(value, spec)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table (no trailing newline); cells are ``str()``-ed, ``|`` inside a cell is escaped."""
    def line(cells: Sequence[Any]) -> str:
        if len(cells) != len(headers):
            raise ValueError(f"row of {len(cells)} cells for {len(headers)} columns: {list(cells)}")
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(headers), "|" + "---|" * len(headers), *(line(r) for r in rows)])


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (raises ImportError without matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig: Any, path: PathLike, dpi: int = 100) -> None:
    """Write ``fig`` to ``path`` as PNG atomically, then close it."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    finally:
        plt.close(fig)
