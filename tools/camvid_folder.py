"""Relay CamVid (SegNet layout) as a folder data set of your own, with 6 classes of its own.

    python tools/camvid_folder.py --camvid $CAMVID_ROOT --out roads6 --train 40 --val 12

writes ``roads6/classes.json`` (6 classes: flat, construction, nature, sky, vehicle, human; a palette;
``ignore_color`` black), ``roads6/images/{train,val}/frame_NNNN.jpg`` (JPEG, renamed) and
``roads6/masks/{train,val}/frame_NNNN.png``: class-id masks for ``train``, RGB masks in the palette for
``val``; no ``test`` split. CamVid's void (11) becomes not labelled (255 / black). What the tests and the
worked example of docs/own-data.md train on.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional, Tuple

import cv2
import numpy as np

CLASSES = ["flat", "construction", "nature", "sky", "vehicle", "human"]
PALETTE = [[128, 64, 128], [70, 70, 70], [107, 142, 35], [70, 130, 180], [0, 0, 142], [220, 20, 60]]
IGNORE_COLOR = [0, 0, 0]
# CamVid's 11 classes (sky, building, pole, road, pavement, tree, sign, fence, car, pedestrian, bicyclist; 11 = void)
# onto the 6 above; void -> 255.
CAMVID_TO_6 = {0: 3, 1: 1, 2: 1, 3: 0, 4: 0, 5: 2, 6: 1, 7: 1, 8: 4, 9: 5, 10: 4}


def to_six(camvid_label: np.ndarray) -> np.ndarray:
    lut = np.full(256, 255, np.uint8)
    for k, v in CAMVID_TO_6.items():
        lut[k] = v
    return lut[camvid_label]


def colour_mask(ids: np.ndarray) -> np.ndarray:
    """Class ids -> a BGR image in the palette (not labelled: ``IGNORE_COLOR``), for cv2.imwrite."""
    table = np.array([*PALETTE, *([IGNORE_COLOR] * (256 - len(PALETTE)))], np.uint8)[:, ::-1]
    return table[ids]


def make(camvid: Path, out: Path, train: int = 40, val: int = 12, val_from: str = "val",
         size: Optional[Tuple[int, int]] = None, name: str = "roads6") -> Path:
    """Write the folder data set; ``val_from``: the CamVid split the val images come from; ``size`` (H, W): resize
    (small test data), else CamVid's own 360x480."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "classes.json").write_text(json.dumps({"name": name, "classes": CLASSES, "palette": PALETTE,
                                                  "ignore_index": 255, "ignore_color": IGNORE_COLOR}, indent=1))
    n = 0
    for split, source, count in (("train", "train", train), ("val", val_from, val)):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "masks" / split).mkdir(parents=True, exist_ok=True)
        files = sorted(p for p in (camvid / source).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        if len(files) < count:
            raise SystemExit(f"{camvid / source} has {len(files)} images, {count} asked for")
        for f in files[:count]:
            image = cv2.imread(str(f), cv2.IMREAD_COLOR)
            label = cv2.imread(str(camvid / f"{source}annot" / f"{f.stem}.png"), cv2.IMREAD_UNCHANGED)
            if size:
                image = cv2.resize(image, size[::-1], interpolation=cv2.INTER_AREA)
                label = cv2.resize(label, size[::-1], interpolation=cv2.INTER_NEAREST)
            ids = to_six(label)
            n += 1
            stem = f"frame_{n:04d}"
            cv2.imwrite(str(out / "images" / split / f"{stem}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(str(out / "masks" / split / f"{stem}.png"), ids if split == "train" else colour_mask(ids))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--camvid", required=True, help="CamVid in the SegNet layout (train/, trainannot/, val/, ...)")
    p.add_argument("--out", required=True)
    p.add_argument("--train", type=int, default=40)
    p.add_argument("--val", type=int, default=12)
    p.add_argument("--val-from", default="val", help="the CamVid split the val images come from")
    args = p.parse_args()
    print(make(Path(args.camvid), Path(args.out), args.train, args.val, args.val_from))


if __name__ == "__main__":
    main()
