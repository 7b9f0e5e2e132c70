"""Where a benchmark writes its JSON: ``--out`` when given, else
``benchmarks/results/<name>_<host>_<date><suffix>.json`` (one file per machine and day)."""

from __future__ import annotations

import datetime
import socket
from pathlib import Path
from typing import Optional, Union

RESULTS = Path(__file__).resolve().parent / "results"


def results_path(name: str, out: Optional[Union[str, Path]] = None, suffix: str = "") -> Path:
    if out:
        return Path(out)
    return RESULTS / f"{name}_{socket.gethostname()}_{datetime.date.today().isoformat()}{suffix}.json"
