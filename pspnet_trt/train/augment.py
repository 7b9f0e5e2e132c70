"""sssegmentation's training pipeline in numpy/OpenCV: Resize(0.5-2) -> RandomCrop(category ratio) ->
RandomFlip -> PhotoMetricDistortion -> Normalize -> centred Padding.

Randomness comes from a generator passed in by the caller, seeded by (seed, epoch, index), so an
epoch's augmentations are the same whether or not the run was interrupted and resumed.
"""

from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np

from ..preprocess import normalize
from ..zoo import IGNORE_INDEX, Normalization


def random_resize(image: np.ndarray, label: np.ndarray, base: Tuple[int, int], rng: np.random.Generator,
                  ratio_range: Tuple[float, float] = (0.5, 2.0)) -> Tuple[np.ndarray, np.ndarray]:
    """Resize(output_size=base (long, short), keep_ratio=True, scale_range): r ~ U(0.5, 2), fit into base*r."""
    r = rng.uniform(*ratio_range)
    long_, short = int(base[0] * r), int(base[1] * r)
    h, w = image.shape[:2]
    scale = min(long_ / max(h, w), short / min(h, w))
    size = (max(int(w * scale + 0.5), 1), max(int(h * scale + 0.5), 1))
    return (cv2.resize(image, size, interpolation=cv2.INTER_LINEAR),
            cv2.resize(label, size, interpolation=cv2.INTER_NEAREST))


def random_crop(image: np.ndarray, label: np.ndarray, crop: Tuple[int, int], rng: np.random.Generator,
                one_category_max_ratio: float = 0.75, tries: int = 10) -> Tuple[np.ndarray, np.ndarray]:
    """Crop of at most ``crop``; up to 10 tries to find one where no single class covers > 75 %."""
    ch, cw = crop
    h, w = image.shape[:2]
    box = (0, 0)
    for _ in range(tries):
        top, left = int(rng.integers(0, max(h - ch, 0) + 1)), int(rng.integers(0, max(w - cw, 0) + 1))
        box = (top, left)
        patch = label[top:top + ch, left:left + cw]
        counts = np.bincount(patch[patch != IGNORE_INDEX].ravel(), minlength=1)
        counts = counts[counts > 0]
        if len(counts) > 1 and counts.max() / counts.sum() < one_category_max_ratio:
            break
    top, left = box
    return image[top:top + ch, left:left + cw], label[top:top + ch, left:left + cw]


def photometric_distortion(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness +-32, contrast 0.5-1.5, saturation 0.5-1.5, hue +-18, each with p=0.5.

    sssegmentation converts with COLOR_RGB2HSV although the image is still BGR; we keep that quirk
    so that models trained here see the distribution sssegmentation's see.
    """
    img = image.astype(np.float32)
    if rng.random() < 0.5:
        img += rng.uniform(-32, 32)
    contrast_first = rng.random() < 0.5
    if contrast_first and rng.random() < 0.5:
        img *= rng.uniform(0.5, 1.5)
    img = np.clip(img, 0, 255).astype(np.uint8)
    hsv_sat, hsv_hue = rng.random() < 0.5, rng.random() < 0.5
    if hsv_sat or hsv_hue:
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.float32)
        if hsv_sat:
            hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.5, 1.5), 0, 255)
        if hsv_hue:
            hsv[..., 0] = (hsv[..., 0] + rng.integers(-18, 19)) % 180
        img = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
    if not contrast_first and rng.random() < 0.5:
        img = np.clip(img.astype(np.float32) * rng.uniform(0.5, 1.5), 0, 255).astype(np.uint8)
    return img


def pad_center(x: np.ndarray, label: np.ndarray, crop: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """Centred padding to ``crop``: image (normalised, CxHxW) with 0, label with the ignore index."""
    ch, cw = crop
    h, w = label.shape
    top, left = max(ch - h, 0) // 2, max(cw - w, 0) // 2
    bottom, right = max(ch - h, 0) - top, max(cw - w, 0) - left
    x = np.pad(x, ((0, 0), (top, bottom), (left, right)))
    label = np.pad(label, ((top, bottom), (left, right)), constant_values=IGNORE_INDEX)
    return x, label


AUGMENTATIONS = ("full", "light")


def train_transform(image: np.ndarray, label: np.ndarray, crop: Tuple[int, int], base: Tuple[int, int],
                    norm: Normalization, rng: np.random.Generator, kind: str = "full") -> Tuple[np.ndarray, np.ndarray]:
    """BGR uint8 image + label -> (3xHxW float32, HxW int64) of exactly ``crop`` size.

    ``kind="full"``: sssegmentation's pipeline; ``"light"``: the category-ratio crop and the flip only, at the
    native scale (no resize, no photometric distortion).
    """
    if kind not in AUGMENTATIONS:
        raise ValueError(f"augmentation {kind!r}: use one of {AUGMENTATIONS}")
    if kind == "full":
        image, label = random_resize(image, label, base, rng)
    image, label = random_crop(image, label, crop, rng)
    if rng.random() < 0.5:
        image, label = image[:, ::-1], label[:, ::-1]
    image = np.ascontiguousarray(image)
    if kind == "full":
        image = photometric_distortion(image, rng)
    x, label = pad_center(normalize(image, norm), np.ascontiguousarray(label), crop)
    return np.ascontiguousarray(x), label.astype(np.int64)
