"""Calibration image lists, the file format: read by ``pspnet-trt quantize`` (quant/) and by the implicit
INT8 calibrator of ``pspnet-trt build --calibration`` (trt/), so it lives in core; quant/ makes the lists.

A list is a reviewable text file: a header of ``#`` lines (how it was made, the deploy input size if
one was given) and one image path per line, relative to the dataset root given when it is read
(``--data``), so a committed list carries no machine's paths. Images are
preprocessed from the artifact's own metadata (size, mean/std, colour order), exactly as at deploy time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Tuple, Union

import numpy as np

from .deploy import DeployInfo
from .errors import UserError
from .preprocess import input_batch, read_image


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
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            raise UserError(f"{path} is not a calibration list (a text file of image paths; this one is binary): "
                            "pass the list `pspnet-trt calibrate` wrote") from None
        for line in text.splitlines():
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
        paths = [Path(p) for p in rel]
        if root is None and header_root is None and not all(p.is_absolute() for p in paths):
            raise UserError(f"{path} lists image paths relative to the dataset root: pass the root with --data ROOT "
                            "(API: CalibrationList.read(path, root))")
        base = Path(root or header_root or path.parent)  # "# root:" header: lists written by older versions
        images = [p if p.is_absolute() else base / p for p in paths]
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
