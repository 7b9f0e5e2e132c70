"""The one door into an artifact: BGR images in, uint8 label maps at each image's size out.

Everything is decided from the backend's :class:`~pspnet_trt.deploy.DeployInfo` alone, so every consumer
(Segmenter, validate, the engine's check, debug's runners, sensitivity search, training's evaluation, the
demo, bench, the Triton client) feeds an artifact the same way:

* input (:func:`prepare`): ``normalized`` -> resize to the input size and ``(x - mean) / std``, NCHW float32;
  ``pixels`` -> resize, 0..255 NCHW float32 in the model's channel order; ``bgr8`` -> the uint8 frame at the
  artifact's frame size (copied once, into the backend's own buffer; resized on the host only if it differs),
  or as it is for a backend that takes any frame size. ``resize``: ``stretch`` or ``keep_ratio`` (letterbox).
* batch (:func:`chunks`): a static batch of n runs n images at a time, the last chunk padded with its last
  image; a dynamic batch runs up to the backend's ``max_batch`` (all at once when unknown).
* output (:func:`to_labels`): logits (preferred when both exist) bilinearly to the image size then argmax
  (sssegmentation's way); labels by nearest neighbour; uint8 whatever the backend's label type.

numpy + OpenCV only.
"""

from __future__ import annotations

import contextlib
import logging
from typing import ContextManager, Dict, Hashable, List, Optional, Sequence, Tuple

import numpy as np

from ..deploy import DeployInfo
from ..errors import UserError
from ..preprocess import (
    RESIZE_MODES,
    check_image,
    fill_frame,
    input_batch,
    letterbox,
    logits_to_labels,
    mean_bgr,
    resize_image,
    resize_labels,
)
from .backend import Backend, as_uint8_labels

log = logging.getLogger(__name__)
Size = Tuple[int, int]


def check_resize(resize: str) -> str:
    if resize not in RESIZE_MODES:
        raise UserError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    return resize


def prepare(images: Sequence[np.ndarray], info: DeployInfo, resize: str = "stretch", batch: Optional[int] = None,
            out: Optional[np.ndarray] = None, any_frame_size: bool = False) -> Tuple[np.ndarray, List[Size]]:
    """The artifact's input for ``images`` (BGR uint8, checked) and, per image, the (H, W) of the output that
    belongs to it (all of it unless letterboxed). ``batch`` (>= len(images)): pad with the last image to that
    many rows (a static batch). ``out``: the backend's own input buffer for a bgr8 artifact (one copy per frame).
    ``any_frame_size``: a bgr8 backend that takes one frame of any size (``images`` must then be one image)."""
    n = batch or len(images)
    if n < len(images) or not images:
        raise ValueError(f"cannot fit {len(images)} images into a batch of {n}")
    keep = check_resize(resize) == "keep_ratio"
    if info.raw_frames and any_frame_size:
        if len(images) != 1 or n != 1:
            raise ValueError("a backend that takes frames of any size runs one frame per call")
        return np.ascontiguousarray(images[0][None]), [images[0].shape[:2]]
    if info.raw_frames:
        box = info.frame_size
        assert box is not None
        frames = out if out is not None else np.empty((n, *box, 3), np.uint8)
        inner: List[Size] = []
        for i, image in enumerate(images):
            if keep and image.shape[:2] != box:
                log.debug("frame %dx%d letterboxed on the host into the artifact's frame size %dx%d",
                          *image.shape[:2], *box)
                inner.append(letterbox(image, box, mean_bgr(info.normalization), out=frames[i])[1])
            else:
                fill_frame(frames[i], image)
                inner.append(box)
        frames[len(images):n] = frames[len(images) - 1]
        return frames, inner
    box = info.input_size
    if keep:
        boxed = [letterbox(im, box, mean_bgr(info.normalization)) for im in images]
        images, inner = [b[0] for b in boxed], [b[1] for b in boxed]
    else:
        inner = [box] * len(images)
    x = input_batch(images, info)
    if len(images) < n:
        x = np.concatenate([x, np.repeat(x[-1:], n - len(images), axis=0)])
    return x, inner


def at_frame_size(images: Sequence[np.ndarray], info: DeployInfo) -> List[np.ndarray]:
    """``images`` as a bgr8 artifact's graph receives them: resized (cv2 INTER_LINEAR) to its frame size; other
    artifacts: unchanged. Comparing a raw-frame artifact with another artifact or PyTorch on these images compares
    numerics, not two resize paths (an image of another size reaches a bgr8 graph through two resizes)."""
    if info.frame_size is None:
        return list(images)
    return [resize_image(check_image(im), info.frame_size) for im in images]


def to_labels(outputs: Dict[str, np.ndarray], sizes: Sequence[Size], inner: Sequence[Size]) -> List[np.ndarray]:
    """The first ``len(sizes)`` images of a backend's outputs -> uint8 HxW label maps at ``sizes``: logits
    bilinearly then argmax (preferred when both exist), labels by nearest neighbour; ``inner`` is each image's
    part of the output."""
    results = []
    for i, (size, (h, w)) in enumerate(zip(sizes, inner)):
        if "logits" in outputs:
            results.append(logits_to_labels(outputs["logits"][i][:, :h, :w], size))
        else:
            results.append(resize_labels(as_uint8_labels(outputs["labels"][i][:h, :w]), size))
    return results


def chunks(count: int, static: Optional[int], max_batch: Optional[int]) -> List[Tuple[int, int]]:
    """(start, stop) of the calls that run ``count`` images: ``static`` images a call (a static batch), else up
    to ``max_batch`` (None: all in one call)."""
    step = static or max_batch or max(count, 1)
    if step < 1:
        raise UserError(f"batch size must be at least 1, got {step}")
    return [(start, min(start + step, count)) for start in range(0, count, step)]


def predict_images(backend: Backend, images: Sequence[np.ndarray], resize: str = "stretch",
                   sizes: Optional[Sequence[Size]] = None, lock: Optional[ContextManager] = None,
                   shared: Optional[Dict[Hashable, Tuple[np.ndarray, List[Size]]]] = None) -> List[np.ndarray]:
    """One uint8 label map per image, at ``sizes`` (default: each image's own size).

    ``lock``: held around each backend call (Segmenter's thread lock). ``shared``: a dict the caller keeps
    for one set of images, so that backends of one input format and size preprocess it once (validate).
    """
    images = [check_image(im, f"image {i}") for i, im in enumerate(images)]
    sizes = list(sizes) if sizes is not None else [im.shape[:2] for im in images]
    if len(sizes) != len(images):
        raise ValueError(f"{len(sizes)} output sizes for {len(images)} images")
    info = backend.info
    any_size = info.raw_frames and backend.any_frame_size
    max_batch = 1 if any_size else backend.max_batch
    results: List[np.ndarray] = []
    for start, stop in chunks(len(images), info.batch, max_batch):
        chunk = images[start:stop]
        n = info.batch or len(chunk)
        key = (info.input_format, info.input_size, info.frame_size, info.normalization, resize, n, any_size)
        if shared is not None and key in shared and len(chunk) == len(images):
            batch, inner = shared[key]
        else:
            own = backend.input_buffer(n) if info.raw_frames and not any_size else None
            batch, inner = prepare(chunk, info, resize, n, own, any_size)
            if shared is not None and len(chunk) == len(images):
                shared[key] = batch, inner
        with lock or contextlib.nullcontext():
            out = backend.run(batch)
        results += to_labels(out, sizes[start:stop], inner)
    return results
