"""The structure issue 24 asks for, checked by parsing the code: one module owns the artifact contract, the
runtime imports nothing above it, and the import layers stay few and free of circles."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pspnet_trt"
SOURCES = sorted(PACKAGE.rglob("*.py"))
TOOL = ROOT.parent / "shared" / "tools" / "import_layers.py"
ARTIFACT_SUFFIXES = {".onnx", ".engine", ".plan", ".trt"}
SUFFIX_NAMES = {"ONNX_SUFFIX", "ENGINE_SUFFIXES"}  # pspnet_trt.artifacts' own constants
METADATA_READERS = ("read_onnx_metadata(", "custom_metadata_map", "get_modelmeta(")


def rel(p: Path) -> str:
    return str(p.relative_to(ROOT))


def names_a_suffix(node: ast.AST) -> bool:
    """``node`` is an artifact suffix (".onnx", ".ENGINE", ...), artifacts' suffix constants, or a tuple / list /
    set holding one."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.lower() in ARTIFACT_SUFFIXES
    if isinstance(node, (ast.Name, ast.Attribute)):
        return (node.id if isinstance(node, ast.Name) else node.attr) in SUFFIX_NAMES
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(names_a_suffix(e) for e in node.elts)
    return False


def suffix_tests(source: str, filename: str = "<source>"):
    """Lines of ``source`` that test a name against an artifact suffix, however written: a comparison (==, !=,
    in, not in; ``p.suffix == ".onnx"``, ``ext in (".onnx", ".engine")``, ``splitext(p)[1] != ".trt"``), an
    ``endswith`` call (``str(p).endswith(".onnx")``, ``name.lower().endswith((".plan", ".trt"))``), or a dict
    keyed by suffixes (a lookup by suffix)."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Compare) and any(isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn))
                                                 for op in node.ops):
            hit = any(names_a_suffix(n) for n in (node.left, *node.comparators))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "endswith":
            hit = any(names_a_suffix(a) for a in node.args)
        elif isinstance(node, ast.Dict):
            hit = any(k is not None and names_a_suffix(k) for k in node.keys)
        else:
            continue
        if hit:
            found.append(f"{filename}:{node.lineno}: {ast.get_source_segment(source, node)}")
    return found


def test_only_artifacts_tests_an_artifact_suffix_or_reads_onnx_metadata():
    offenders = []
    for path in SOURCES:
        if path.name == "artifacts.py" and path.parent == PACKAGE:
            continue
        text = path.read_text()
        offenders += suffix_tests(text, rel(path))
        offenders += [f"{rel(path)}: {r}" for r in METADATA_READERS if r in text]
    assert offenders == [], "ask pspnet_trt.artifacts (kind, read_info, read_manifest) instead:\n" + "\n".join(offenders)


@pytest.mark.parametrize("written", ['str(p).endswith(".onnx")', 'p.suffix == ".onnx"', 'Path(p).suffix.lower() != ".ONNX"',
                                     'Path(p).suffix in (".onnx", ".engine")', 'os.path.splitext(p)[1] in [".onnx"]',
                                     'str(p).lower().endswith((".plan", ONNX_SUFFIX))', '{".onnx": 1}.get(p.suffix)'])
def test_a_suffix_test_in_validate_is_caught_however_written(written):
    """validate/core.py asks ``is_onnx(p)``; the same file with that call replaced by a suffix test written any
    way is an offender (the old line-regex check passed ``str(p).endswith(".onnx")``)."""
    path = PACKAGE / "validate" / "core.py"
    source = path.read_text()
    assert "is_onnx(p)" in source and suffix_tests(source) == []
    mutated = source.replace("is_onnx(p)", written)
    assert len(suffix_tests(mutated, rel(path))) == source.count("is_onnx(p)")


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
