"""The house rules of architecture.md that a parser can check: size parsing is core, no private imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted([*(ROOT / "pspnet_trt").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")])


def imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                yield node.module or "", node.level, alias.name


def test_size_parsing_is_a_core_helper():
    from pspnet_trt.sizes import parse_size

    assert parse_size("512x1024") == (512, 1024)
    importers = [str(p.relative_to(ROOT)) for p in SOURCES for module, _, name in imports(p)
                 if name == "parse_size" and not module.endswith("sizes")]
    assert importers == [], f"parse_size imported from elsewhere than pspnet_trt.sizes: {importers}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_imports_another_modules_private_names(path):
    private = [f"{module}.{name}" for module, _, name in imports(path)
               if name.startswith("_") and not name.startswith("__")]
    assert private == [], f"{path.relative_to(ROOT)} imports private names {private}: make them public or move them"
