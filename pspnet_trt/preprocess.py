"""Image in, model input out, and back: numpy + OpenCV only (the runtime needs no torch).

Every backend (PyTorch, ONNX Runtime, TensorRT) and the validator use these functions, so they
all see the same pixels.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence, Tuple

import cv2
import numpy as np

from .files import atomic_open
from .zoo import Normalization

if TYPE_CHECKING:
    from .deploy import DeployInfo

log = logging.getLogger(__name__)


def check_image(image: np.ndarray, what: str = "image") -> np.ndarray:
    """A BGR uint8 HxWx3 array, or a ValueError that says what is wrong."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{what} must be a numpy array (BGR uint8 HxWx3, as cv2.imread returns), got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{what} must be BGR uint8 with shape HxWx3, got dtype {image.dtype} shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{what} is empty: shape {image.shape}")
    return image


def read_image(path: str) -> np.ndarray:
    """``cv2.imread`` in colour, or an error naming the file."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"cannot read image {path}: missing, unreadable or not an image")
    return image


def normalize(image_bgr: np.ndarray, norm: Normalization) -> np.ndarray:
    """HxWx3 BGR uint8 -> 3xHxW float32, in the model's channel order, ``(x - mean) / std``."""
    x = image_bgr[..., ::-1] if norm.channel_order == "rgb" else image_bgr
    x = (x.astype(np.float32) - np.asarray(norm.mean, np.float32)) / np.asarray(norm.std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def resize_image(image: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Bilinear resize to (H, W), as sssegmentation's Resize (cv2 INTER_LINEAR)."""
    h, w = size
    if image.shape[:2] == (h, w):
        return image
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)


def resize_labels(labels: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a label map to (H, W)."""
    h, w = size
    if labels.shape[:2] == (h, w):
        return labels
    return cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)


def keep_ratio_size(hw: Tuple[int, int], fit: Optional[Tuple[int, int]]) -> Tuple[int, int]:
    """sssegmentation's test Resize(keep_ratio=True): scale so the image fits ``fit`` = (long, short).

    ``None`` keeps the size. E.g. VOC 375x500 with (2048, 512) -> 512x683; Cityscapes 1024x2048 stays.
    """
    if fit is None:
        return hw
    h, w = hw
    scale = min(max(fit) / max(h, w), min(fit) / min(h, w))
    return int(h * scale + 0.5), int(w * scale + 0.5)


RESIZE_MODES = ("stretch", "keep_ratio")


def fit_size(hw: Tuple[int, int], box: Tuple[int, int]) -> Tuple[int, int]:
    """Largest (H, W) with the aspect ratio of ``hw`` that fits in ``box`` (keep-ratio letterbox)."""
    scale = min(box[0] / hw[0], box[1] / hw[1])
    return max(1, min(box[0], int(hw[0] * scale + 0.5))), max(1, min(box[1], int(hw[1] * scale + 0.5)))


def mean_bgr(norm: Normalization) -> Tuple[int, int, int]:
    """The normalisation mean as a BGR uint8 colour: letterbox padding that normalises to ~0 (as sssegmentation
    pads normalised images with 0)."""
    mean = [int(round(v)) for v in norm.mean]
    b, g, r = (mean[::-1] if norm.channel_order == "rgb" else mean)
    return b, g, r


def letterbox(image: np.ndarray, box: Tuple[int, int], fill: Tuple[int, int, int],
              out: Optional[np.ndarray] = None) -> Tuple[np.ndarray, Tuple[int, int]]:
    """``image`` resized keeping its ratio (cv2 INTER_LINEAR) into the top-left of a ``box``-sized canvas filled
    with ``fill``; returns the canvas (``out`` when given) and the (H, W) of the image inside it."""
    inner = fit_size(image.shape[:2], box)
    if out is None:
        out = np.empty((*box, 3), np.uint8)
    out[...] = fill
    out[:inner[0], :inner[1]] = resize_image(image, inner)
    return out, inner


def make_batch(images: Sequence[np.ndarray], size: Tuple[int, int], norm: Normalization) -> np.ndarray:
    """BGR uint8 images of any size -> Nx3xHxW float32 at the artifact's static input size."""
    return np.stack([normalize(resize_image(check_image(im), size), norm) for im in images])


def fill_frame(dst: np.ndarray, image: np.ndarray) -> None:
    """Write BGR ``image`` into the HxWx3 uint8 slot ``dst`` of a raw-frame batch: one copy when the sizes
    match, else one ``cv2.resize`` straight into ``dst`` (with one debug line)."""
    h, w = dst.shape[:2]
    if image.shape[:2] == (h, w):
        np.copyto(dst, image)
        return
    log.debug("frame %dx%d resized on the host to the artifact's frame size %dx%d", *image.shape[:2], h, w)
    cv2.resize(image, (w, h), dst=dst, interpolation=cv2.INTER_LINEAR)


def frames_batch(images: Sequence[np.ndarray], frame_size: Tuple[int, int], out: Optional[np.ndarray] = None) -> np.ndarray:
    """BGR uint8 images -> NxHxWx3 uint8 at ``frame_size``, written into ``out`` when given (a backend's own
    input buffer, so the frame is copied once). Images of another size are resized on the host first."""
    if out is None:
        out = np.empty((len(images), *frame_size, 3), np.uint8)
    for i, image in enumerate(images):
        fill_frame(out[i], check_image(image, f"image {i}"))
    return out


def pixels_batch(images: Sequence[np.ndarray], size: Tuple[int, int], norm: Normalization) -> np.ndarray:
    """BGR uint8 images -> Nx3xHxW float32 0..255 in the model's channel order (``--input-format pixels``)."""
    out = []
    for im in images:
        x = resize_image(check_image(im), size)
        x = x[..., ::-1] if norm.channel_order == "rgb" else x
        out.append(x.transpose(2, 0, 1).astype(np.float32))
    return np.stack(out)


def input_batch(images: Sequence[np.ndarray], info: DeployInfo) -> np.ndarray:
    """BGR uint8 images -> the input tensor of an artifact described by ``info`` (any input format)."""
    if info.input_format == "bgr8":
        assert info.frame_size is not None
        return frames_batch(images, info.frame_size)
    if info.input_format == "pixels":
        return pixels_batch(images, info.input_size, info.normalization)
    return make_batch(images, info.input_size, info.normalization)


def logits_to_labels(logits: np.ndarray, size: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """CxH'xW' logits -> HxW uint8 labels: bilinear resize of each class map to ``size``, then argmax."""
    if size is not None and logits.shape[1:] != tuple(size):
        h, w = size
        logits = np.stack([cv2.resize(c, (w, h), interpolation=cv2.INTER_LINEAR) for c in logits.astype(np.float32)])
    return logits.argmax(0).astype(np.uint8)


def colorize(labels: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """HxW labels -> HxWx3 BGR image; labels outside the palette (e.g. 255) are black."""
    lut = np.zeros((256, 3), np.uint8)
    lut[: len(palette)] = np.asarray(palette, np.uint8)[:, ::-1]
    return lut[labels]


def overlay(image_bgr: np.ndarray, labels: np.ndarray, palette: Sequence[Sequence[int]], alpha: float = 0.5) -> np.ndarray:
    """Blend the colour label map over the image (labels are resized to the image if needed)."""
    check_image(image_bgr)
    labels = resize_labels(labels, image_bgr.shape[:2])
    return cv2.addWeighted(image_bgr, 1.0 - alpha, colorize(labels, palette), alpha, 0.0)


def write_image(path: str | Path, image: np.ndarray) -> Path:
    """Encode by the file's suffix (``.png``, ``.jpg``) and write atomically."""
    path = Path(path)
    ok, data = cv2.imencode(path.suffix or ".png", image)
    if not ok:
        raise OSError(f"cannot encode an image of shape {image.shape} as {path.suffix}")
    with atomic_open(path, "wb") as f:
        f.write(data.tobytes())
    return path
