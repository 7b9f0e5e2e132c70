"""Calibration image lists: deterministic, class-balanced as far as cheap, from the TRAINING split.

A common tool calibrates on the val images it then reports mIoU on; we refuse the evaluation split
unless forced. The list is a reviewable text file in ``calibration/``: a header of ``#`` lines
(how it was made, the data root, the deploy input size if one was given) and one image path per
line, relative to that root. Images are preprocessed at quantize time from the ONNX's own metadata
(size, mean/std, colour order), exactly as the runtime does; a list made for another input size
is refused there.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Tuple, Union

import numpy as np

from ..data import SegDataset, dataset_for_spec
from ..deploy import DeployInfo
from ..errors import UserError
from ..files import atomic_open
from ..preprocess import input_batch, read_image
from ..zoo import get_spec

log = logging.getLogger(__name__)
CALIBRATION_DIR = Path("calibration")


@dataclass
class CalibrationList:
    root: Path
    images: List[Path]  # absolute
    input_size: Optional[Tuple[int, int]] = None  # deploy size it was made for (H, W), if stated

    @classmethod
    def read(cls, path: Union[str, Path], root: Optional[Union[str, Path]] = None) -> CalibrationList:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"calibration list {path} does not exist; make one with `pspnet-trt calibrate`")
        header_root, rel, size = None, [], None
        for line in path.read_text().splitlines():
            if line.startswith("# root:"):
                header_root = line.split(":", 1)[1].strip()
            elif line.startswith("# input-size:"):
                try:
                    h, w = line.split(":", 1)[1].strip().split("x")
                    size = (int(h), int(w))
                except ValueError:
                    raise UserError(f"{path}: bad header line {line!r} (expected '# input-size: HxW')") from None
            elif line.strip() and not line.startswith("#"):
                rel.append(line.strip())
        base = Path(root or header_root or path.parent)
        images = [p if p.is_absolute() else base / p for p in map(Path, rel)]
        missing = [str(p) for p in images if not p.is_file()]
        if missing:
            raise UserError(f"{path}: {len(missing)} images are missing, e.g. {missing[0]} "
                            "(pass the dataset root with --data if it moved)")
        if not images:
            raise UserError(f"calibration list {path} lists no images")
        return cls(base, images, size)

    def check_input_size(self, size: Tuple[int, int], onnx_path: Union[str, Path]) -> None:
        """Refuse an ONNX whose input size differs from the one this list was made for."""
        if self.input_size is not None and tuple(size) != tuple(self.input_size):
            made, want = "x".join(map(str, self.input_size)), "x".join(map(str, size))
            raise UserError(f"the calibration list was made for input size {made} but {onnx_path} takes {want}: "
                            f"run `pspnet-trt calibrate ... --input-size {want}` or quantize the {made} export")

    def batches(self, info: DeployInfo) -> Iterator[np.ndarray]:
        """Each image as the artifact takes it at deploy time (its own metadata: a raw-frame artifact gets the
        uint8 frame at its frame size, and its graph does the rest)."""
        for p in self.images:
            yield input_batch([read_image(str(p))], info)


def select_balanced(dataset: SegDataset, n: int, seed: int, num_classes: int) -> List[int]:
    """Greedy pick of ``n`` images that covers rare classes first; ties broken by a seeded shuffle.

    Reads only the label maps (small PNGs). Each step takes the image with the most
    not-yet-covered pixels of classes weighted by 1 / their frequency in the split.
    """
    if n > len(dataset):
        raise UserError(f"asked for {n} calibration images but the split has only {len(dataset)}")
    hist = np.zeros((len(dataset), num_classes), np.float64)
    for i in range(len(dataset)):
        label = dataset.read_label(i)
        counts = np.bincount(label.ravel(), minlength=256)[:num_classes]
        hist[i] = counts / max(counts.sum(), 1)
    weight = 1.0 / np.maximum(hist.sum(0), 1e-6)
    order = np.random.default_rng(seed).permutation(len(dataset))
    covered = np.zeros(num_classes)
    chosen: List[int] = []
    for _ in range(n):
        gain = (np.maximum(hist[order] - covered, 0) * weight).sum(1)
        gain[np.isin(order, chosen)] = -1
        best = int(order[int(np.argmax(gain))])
        chosen.append(best)
        covered = np.maximum(covered, hist[best] * 0.5)  # diminishing returns, not exclusion
    return chosen


def make_calibration_list(model: str, data: Union[str, Path], split: str = "train", num_images: int = 64,
                          seed: int = 0, out: Optional[Union[str, Path]] = None, force: bool = False,
                          input_size: Optional[Tuple[int, int]] = None) -> Path:
    """Select, then write ``calibration/<model>_<split>_n<N>_s<seed>.txt``; returns its path.

    ``input_size`` (H, W): the deploy size the list is for; recorded, and checked when quantizing."""
    spec = get_spec(model)
    if split == spec.eval_split and not force:
        raise UserError(f"refusing to calibrate on {split!r}, the split {model} is evaluated on: its mIoU would be "
                        "optimistic. Use the training split (--split train), or --force if you really mean it")
    dataset = dataset_for_spec(spec, data, split)
    chosen = select_balanced(dataset, num_images, seed, spec.num_classes)
    root = Path(os.path.abspath(data))  # not resolve(): split folders may be symlinks to another disk
    out = Path(out) if out else CALIBRATION_DIR / f"{model}_{split}_n{num_images}_s{seed}.txt"
    with atomic_open(out, "w") as f:
        f.write(f"# pspnet-trt calibration list: {model}, split {split}, {num_images} images, seed {seed}\n")
        f.write("# selection: greedy class-balanced (rare classes first), training split only\n")
        f.write(f"# root: {root}\n")
        if input_size:
            f.write(f"# input-size: {input_size[0]}x{input_size[1]}\n")
        for i in chosen:
            image = Path(os.path.abspath(dataset.items[i][0]))
            f.write(f"{image.relative_to(root) if root in image.parents else image}\n")  # outside the root: absolute
    log.info("wrote %s (%d images)", out, len(chosen))
    return out

