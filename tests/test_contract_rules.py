"""The structure issue 24 asks for, checked by parsing the code: one module owns the artifact contract, the
runtime imports nothing above it, and the import layers stay few and free of circles."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pspnet_trt"
SOURCES = sorted(PACKAGE.rglob("*.py"))
TOOL = ROOT.parent / "shared" / "tools" / "import_layers.py"
ARTIFACT_SUFFIX = re.compile(r"""suffix[^\n]*(==|!=|\bin\b)[^\n]*("\.onnx"|"\.engine"|"\.plan"|"\.trt"|ENGINE_SUFFIXES)""")
METADATA_READERS = ("read_onnx_metadata(", "custom_metadata_map", "get_modelmeta(")


def rel(p: Path) -> str:
    return str(p.relative_to(ROOT))


def test_only_artifacts_tests_an_artifact_suffix_or_reads_onnx_metadata():
    offenders = []
    for path in SOURCES:
        if path.name == "artifacts.py" and path.parent == PACKAGE:
            continue
        text = path.read_text()
        offenders += [f"{rel(path)}: {m.group(0)}" for m in ARTIFACT_SUFFIX.finditer(text)]
        offenders += [f"{rel(path)}: {r}" for r in METADATA_READERS if r in text]
    assert offenders == [], "ask pspnet_trt.artifacts (kind, read_info, read_manifest) instead:\n" + "\n".join(offenders)


def imported_packages(path: Path):
    """The pspnet_trt sub-packages/modules ``path`` imports (relative imports resolved), TYPE_CHECKING ones too."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    here = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = here[: len(here) - (node.level - 1)] if node.level > 1 else list(here)
            target = base + (node.module.split(".") if node.module else [])
            yield target[0] if target else (node.names[0].name if not node.module else "")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pspnet_trt."):
            yield node.module.split(".")[1]


@pytest.mark.parametrize("path", sorted((PACKAGE / "runtime").glob("*.py")), ids=rel)
def test_the_runtime_imports_no_stage(path):
    """Apps embed the runtime: it must not pull in the build layer or any stage (architecture.md)."""
    stages = {"trt", "export", "quant", "validate", "debug", "serving", "train", "demo", "engine", "bench"}
    assert sorted(set(imported_packages(path)) & stages) == []


def test_import_layers_at_most_9_and_no_circle():
    if not TOOL.is_file():
        pytest.skip(f"{TOOL} is not here (it lives in the workplace's shared/ folder beside the checkout)")
    out = subprocess.run([sys.executable, str(TOOL), str(PACKAGE)], capture_output=True, text=True, check=True)
    layers, files = (json.loads(line) for line in out.stdout.splitlines()[:2])
    assert layers["layers"] <= 9 and layers["circles"] == 0, layers
    assert files["file_circles"] == 0, files
