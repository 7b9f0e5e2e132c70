"""Datasets in their usual on-disk layouts, read with OpenCV (numpy only, no torch).

Every dataset yields :class:`Sample` objects: a BGR uint8 image, a uint8 label map whose void
pixels are :data:`~pspnet_trt.zoo.IGNORE_INDEX` (255), and a name.
"""

from __future__ import annotations

from .datasets import (
    LAYOUTS,
    DatasetError,
    Sample,
    SegDataset,
    check_classes,
    dataset_for_spec,
    default_split,
    is_folder_dataset,
    open_dataset,
    read_classes,
)

__all__ = ["LAYOUTS", "DatasetError", "Sample", "SegDataset", "check_classes", "dataset_for_spec", "default_split",
           "is_folder_dataset", "open_dataset", "read_classes"]
