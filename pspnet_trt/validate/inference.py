"""Whole-image and sliding-window inference of one backend on one image (numpy + OpenCV only).

whole: the runtime's one door (:func:`pspnet_trt.runtime.inference.predict_images`): the image is
    stretched to the artifact's static input in its input format (normalised, pixels or a raw frame), run
    once, and the output is brought back to the label size: logits bilinearly then argmax (as
    sssegmentation's test.py does), a labels output by nearest neighbour.
slide: sssegmentation's ``slide`` mode with the artifact's input size as the crop. The image is
    first resized keeping its ratio (the zoo entry's ``eval_resize``, sssegmentation's test Resize),
    normalised, padded at the bottom/right with zeros (= the mean) when smaller than one crop, and
    covered by crops every ``stride`` pixels, the last crop flush with the border; the logits of
    overlapping crops are averaged, the padding is cut off, and the result is brought back to the
    label size bilinearly, then argmax. Needs a logits output.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Hashable, List, Optional, Tuple

import numpy as np

from ..errors import UserError
from ..preprocess import check_image, keep_ratio_size, logits_to_labels, normalize, resize_image
from ..runtime.backend import Backend
from ..runtime.inference import predict_images

MODES = ("whole", "slide")


class ValidationError(UserError):
    """Backends that cannot be compared or run as asked (class count, input size, normalisation, outputs)."""


def describe(backend: Backend) -> str:
    """How error messages name a backend: its file when it has one."""
    path = getattr(backend, "path", None)
    return str(path) if path else f"the {backend.name} backend"


def check_mode(backend: Backend, mode: str) -> None:
    """Refuse a mode the backend cannot run, naming the backend and the fix."""
    if mode not in MODES:
        raise ValidationError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "slide" and backend.info.input_format != "normalized":
        raise ValidationError(f"{describe(backend)} takes {backend.info.input_format} input; sliding-window inference "
                              "feeds normalised crops: use --mode whole, or validate the normalized export")
    if mode == "slide" and "logits" not in backend.info.output_names:
        raise ValidationError(f"{describe(backend)} outputs labels only; sliding-window inference averages logits "
                              "over overlapping crops: export it with --output logits (or both), or use --mode whole")


def run_batch(backend: Backend, batch: np.ndarray) -> Dict[str, np.ndarray]:
    """``backend.run`` on a 1-image batch (a slide crop), repeated to the artifact's static batch size if it has one."""
    n = backend.info.batch
    if n is not None and n > 1:
        batch = np.repeat(batch, n, axis=0)
    return backend.run(np.ascontiguousarray(batch))


def predict_whole(backend: Backend, image: np.ndarray, label_hw: Tuple[int, int],
                  shared: Optional[Dict[Hashable, Any]] = None) -> np.ndarray:
    """HxW uint8 prediction at ``label_hw`` from one whole-image run, through the runtime's one door
    (:func:`pspnet_trt.runtime.inference.predict_images`: the image stretched to the artifact's input in its own
    input format). ``shared``: one dict per image, so that backends of one input format preprocess it once."""
    return predict_images(backend, [image], "stretch", sizes=[label_hw], shared=shared)[0]


def default_stride(crop: Tuple[int, int]) -> Tuple[int, int]:
    """2/3 of the crop, rounded up (the usual PSPNet sliding-window stride)."""
    return math.ceil(crop[0] * 2 / 3), math.ceil(crop[1] * 2 / 3)


def slide_windows(size: int, crop: int, stride: int) -> List[int]:
    """Window starts covering [0, size) with windows of ``crop`` every ``stride``, the last one flush with the end."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if size <= crop:
        return [0]
    starts = list(range(0, size - crop, stride)) + [size - crop]
    return sorted(set(starts))


def slide_image(image: np.ndarray, fit: Optional[Tuple[int, int]], backend: Backend) -> np.ndarray:
    """The normalised 3xHxW input of slide mode: ``image`` resized keeping its ratio to ``fit`` (None: as is)."""
    image = resize_image(check_image(image), keep_ratio_size(image.shape[:2], fit))
    return normalize(image, backend.info.normalization)


def slide_logits(backend: Backend, x: np.ndarray, stride: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """CxHxW logits of a normalised 3xHxW image from crops of the backend's input size, averaged over overlaps."""
    check_mode(backend, "slide")
    ch, cw = backend.info.input_size
    sh, sw = stride or default_stride((ch, cw))
    if sh < 1 or sw < 1 or sh > ch or sw > cw:
        raise ValidationError(f"slide stride {sh}x{sw} must be between 1x1 and the crop {ch}x{cw}, or crops leave gaps")
    h, w = x.shape[1:]
    ph, pw = max(h, ch), max(w, cw)
    if (ph, pw) != (h, w):
        x = np.pad(x, ((0, 0), (0, ph - h), (0, pw - w)))
    total = np.zeros((backend.info.num_classes, ph, pw), np.float32)
    count = np.zeros((ph, pw), np.float32)
    for top in slide_windows(ph, ch, sh):
        for left in slide_windows(pw, cw, sw):
            crop = x[None, :, top:top + ch, left:left + cw]
            total[:, top:top + ch, left:left + cw] += run_batch(backend, crop)["logits"][0]
            count[top:top + ch, left:left + cw] += 1
    return (total / count)[:, :h, :w]


def predict_slide(backend: Backend, image: np.ndarray, label_hw: Tuple[int, int],
                  fit: Optional[Tuple[int, int]] = None, stride: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """HxW uint8 prediction at ``label_hw`` by sliding-window inference (see the module docstring).

    ``fit`` is the keep-ratio test resize (long, short) of the zoo entry (None: native size);
    ``stride`` (H, W) defaults to 2/3 of the crop.
    """
    check_mode(backend, "slide")
    return logits_to_labels(slide_logits(backend, slide_image(image, fit, backend), stride), label_hw)


def predict(backend: Backend, image: np.ndarray, label_hw: Tuple[int, int], mode: str = "whole",
            fit: Optional[Tuple[int, int]] = None, stride: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """:func:`predict_whole` or :func:`predict_slide` by ``mode``."""
    if mode == "whole":
        return predict_whole(backend, image, label_hw)
    check_mode(backend, mode)
    return predict_slide(backend, image, label_hw, fit, stride)
