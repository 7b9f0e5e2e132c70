"""Every state-dict key, shape and dtype of all 12 sssegmentation PSPNet configs (and the R-18 CamVid
layout) equals ours: checkpoints load unchanged. Reference lists: ../shared/reference/keys/."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pspnet_trt.models import build_model
from pspnet_trt.zoo import ZOO

REPO = Path(__file__).resolve().parents[1]
KEYS = Path(os.environ.get("PSPNET_TRT_REFERENCE", REPO.parent / "shared" / "reference")) / "keys"


def reference(name: str):
    spec = ZOO[name]
    path = KEYS / (f"keys_{spec.config}.json" if spec.config else f"keys_{name}.json")
    if not path.is_file():
        pytest.skip(f"reference key list {path} not found (../shared/reference beside the repo)")
    data = json.loads(path.read_text())
    entries = data["state_dict"] if isinstance(data, dict) else data
    return {k: (tuple(shape), dtype) for k, shape, dtype in entries}, data


@pytest.mark.parametrize("name", sorted(ZOO))
def test_state_dict_matches_sssegmentation(name):
    ref, data = reference(name)
    ours = {k: (tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in build_model(name).state_dict().items()}
    missing, extra = sorted(set(ref) - set(ours)), sorted(set(ours) - set(ref))
    assert not missing and not extra, f"missing {missing[:5]}, unexpected {extra[:5]}"
    diff = {k: (ref[k], ours[k]) for k in ref if ref[k] != ours[k]}
    assert not diff, list(diff.items())[:5]
    if isinstance(data, dict) and "num_parameters" in data:
        assert sum(p.numel() for p in build_model(name).parameters()) == data["num_parameters"]
