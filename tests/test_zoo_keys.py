"""Every state-dict key, shape and dtype of sssegmentation's PSPNet equals ours, for all 15 published zoo
configs (12 ResNet, 3 MobileNetV2) and the R-18 CamVid demo layout, so their checkpoints load with ``strict=True``.

Reference lists: ``../shared/reference/keys/keys_<config>.json`` (sssegmentation eb1878c1, dumped from
its own ``BuildSegmentor(...).state_dict()``; override the folder with $PSPNET_TRT_REFERENCE). Compared
as dicts, not ordered lists: ``load_state_dict`` matches by name, and sssegmentation changed the order
(``downsample`` before ``conv1`` since v1.6) without changing a name. Models are built on the ``meta``
device: shapes and dtypes without allocating or initialising 70 M parameters.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Tuple

import pytest
import torch

from pspnet_trt.models import build_model
from pspnet_trt.zoo import ZOO, ModelSpec

REPO = Path(__file__).resolve().parents[1]
KEYS = Path(os.environ.get("PSPNET_TRT_REFERENCE", REPO.parent / "shared" / "reference")) / "keys"
Layout = Dict[str, Tuple[Tuple[int, ...], str]]


def reference_file(spec: ModelSpec) -> Path:
    return KEYS / (f"keys_{spec.config}.json" if spec.config else f"keys_{spec.name}.json")


def load_reference(spec: ModelSpec) -> Tuple[Layout, dict]:
    path = reference_file(spec)
    if not path.is_file():
        pytest.skip(f"reference key list {path} not found (../shared/reference beside the repo, "
                    "or set $PSPNET_TRT_REFERENCE)")
    data = json.loads(path.read_text())
    # dtypes as "float32" (the ResNet lists) or "torch.float32" (the MobileNetV2 ones)
    layout = {key: (tuple(shape), dtype.replace("torch.", "")) for key, shape, dtype in data["state_dict"]}
    assert len(layout) == len(data["state_dict"]), f"{path}: duplicate keys"
    return layout, data


def ours(name: str) -> torch.nn.Module:
    with torch.device("meta"):
        return build_model(name)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_state_dict_matches_sssegmentation(name: str) -> None:
    ref, data = load_reference(ZOO[name])
    model = ours(name)
    state = model.state_dict()
    mine = {key: (tuple(value.shape), str(value.dtype).replace("torch.", "")) for key, value in state.items()}
    missing, unexpected = sorted(set(ref) - set(mine)), sorted(set(mine) - set(ref))
    assert not missing and not unexpected, f"missing {missing[:5]}, unexpected {unexpected[:5]}"
    differ = {key: (ref[key], mine[key]) for key in ref if ref[key] != mine[key]}
    assert not differ, f"{len(differ)} (shape, dtype) differ (reference, ours): {list(differ.items())[:5]}"
    # the totals sssegmentation recorded
    assert len(state) == data["num_state_dict_entries"]
    assert sum(p.numel() for p in model.parameters()) == data["num_parameters"]
    if "num_state_dict_elements" in data:
        assert sum(v.numel() for v in state.values()) == data["num_state_dict_elements"]
    for child, count in data.get("parameters_per_top_level_module", {}).items():
        assert sum(p.numel() for p in getattr(model, child).parameters()) == count, child


def test_every_reference_list_is_a_zoo_entry() -> None:
    files = sorted(KEYS.glob("keys_*.json"))
    if not files:
        pytest.skip(f"no reference key lists in {KEYS}")
    covered = {reference_file(spec).name for spec in ZOO.values()}
    lists = {f.name for f in files if f.name != "keys_summary.json"}
    assert lists <= covered, f"reference lists without a zoo entry: {sorted(lists - covered)}"
    assert len(lists) == 16


def test_summary_agrees_with_the_zoo() -> None:
    """num_classes, backbone depth and output stride of each published ResNet config (keys_summary.json, which
    lists those) match the zoo."""
    path = KEYS / "keys_summary.json"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    summary = json.loads(path.read_text())
    published = {spec.config: spec for spec in ZOO.values() if spec.config and spec.backbone.startswith("resnet")}
    assert set(summary) == set(published)
    for config, entry in summary.items():
        spec = published[config]
        assert (entry["num_classes"], f"resnet{entry['backbone']['depth']}", entry["backbone"]["outstride"]) == (
            spec.num_classes, spec.backbone, spec.output_stride), config
