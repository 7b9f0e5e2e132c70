"""Training settings: sssegmentation's recipe by default, a CPU-sized override for the demo model."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from ..zoo import ModelSpec, get_spec

# The CPU recipe of r18_os8_camvid (our demo model, trained from scratch on 2 cores); every published entry keeps
# sssegmentation's recipe (crop, batch 16, lr 0.01 poly, the full augmentation, FP32; ImageNet backbone).
#
# Why it differs (issue 18; benchmarks/train_speed.py, 2 shared cores, batch 8, medians of one run,
# results/train_speed_*.json):
# - crop 256x256 instead of 240x320: sssegmentation's own R18-D8 code reached 43.0 test mIoU in 45 min with
#   it (793 iterations); 15 % fewer pixels per image than 240x320, so more iterations fit in a budget.
# - augment "light" (category-ratio crop + flip at the native scale): what that run used. The full pipeline's
#   0.5-2x resize and photometric distortion regularise long GPU schedules, but in ~800 iterations from scratch
#   they make the task harder than the test images (our 549-iteration run with them: 36.2); they also cost
#   ~15 ms an image against ~10 ms for the light one (decoding a CamVid PNG pair: ~19 ms).
# - bf16 autocast (on CPUs with avx512_bf16 / AMX only; elsewhere FP32): an SGD step of batch 8 at 240x320 took
#   ~26 s against 38-48 s in FP32 on the loaded machine (x1.5-1.8); channels_last gained less and nothing on
#   top of bf16, so it stays off.
# - together: 11.8 s an iteration against 20.7 s for the previous recipe (240x320, full, FP32), side by side
#   (x1.74; results/train_recipe_speed_*.json).
# - 30 epochs (1350 iterations) when no --max-minutes budget is given; with one, the poly decay is fitted into it.
# The 45-minute run from scratch beats sssegmentation's 43.0 (benchmarks/train_budget.py; the figures are in
# results/train_budget_*_45min.json and the README, Training).
#
# mv2_os8_camvid (MobileNetV2-D8, the same narrow head: PPM 128, auxiliary 64) takes the same recipe: crop 256x256,
# batch 8, lr 0.01 poly, light augmentation, bf16. Its SGD step at that size measured 7.9-13.7 s in bf16 against
# 9.5-42 s in FP32 and 4.8-6.6 s for r18 (2 shared cores under a load of 5-9, 4 steps each; channels_last: no
# gain); the dilated 960-channel expansions of its last two stages at 1/8 cost more on this CPU than their FLOPs
# say; an interleaved re-measure: bf16 14.7/15.7/43.0 s against FP32 33.1/19.2/30.3 s (load 9-12). Batch 8 keeps
# BatchNorm's statistics over 8 crops (its 52 BN layers train from scratch); lr 0.01 is sssegmentation's for its
# MobileNetV2 configs as for the ResNets. The shipped checkpoint (samples/README.md): 42 min of this recipe (521
# iterations, the machine loaded), then --load-from at --lr 0.005 for 8 min (589 iterations) and at --lr 0.007 for
# 30 epochs (1350 iterations, 19 min, 9.4 images/s on the idle machine): 43.68 test mIoU from scratch.
CPU_OVERRIDES: Dict[str, Dict[str, Any]] = {
    "r18_os8_camvid": {"crop": (256, 256), "batch_size": 8, "epochs": 30, "lr": 0.01, "augment": "light",
                       "bf16": True},
    "mv2_os8_camvid": {"crop": (256, 256), "batch_size": 8, "epochs": 30, "lr": 0.01, "augment": "light",
                       "bf16": True},
}

BUDGET_MODES = ("fit", "stop")


@dataclass
class TrainConfig:
    model: str
    data: Path
    work_dir: Path
    epochs: int = 0  # 0 = from the recipe
    iters: Optional[int] = None  # total iterations; overrides epochs
    batch_size: int = 0  # total over all processes; 0 = from the recipe
    lr: Optional[float] = None  # None = from the recipe; any other value is used as given (0 included)
    crop: Tuple[int, int] = (0, 0)  # (0, 0) = from the recipe
    workers: int = 2
    seed: int = 0
    resume: bool = False
    max_minutes: Optional[float] = None  # stop cleanly after this wall time (checkpoint written)
    # "fit": the poly decay ends at the budget when that comes first (counted across --resume; not
    # bit-reproducible); "stop": the budget only stops this invocation, the schedule stays by iterations,
    # and --resume continues bit-exactly (a job time limit).
    budget_mode: str = "fit"
    keep: int = 3  # epoch checkpoints kept (plus latest and best); 0 = all
    pretrained: Optional[str] = None  # "auto" | "none" | PATH | URL; None = auto for published entries, else none
    augment: str = ""  # "full" (sssegmentation's) | "light" (crop + flip); "" = from the recipe
    bf16: Optional[bool] = None  # bfloat16 autocast on CPUs with native bf16; None = from the recipe
    channels_last: Optional[bool] = None  # None = on for CUDA, else the recipe's (see resolved)
    limit_images: Optional[int] = None  # first N training images
    eval_every: int = 10  # epochs; 0 = only at the end
    eval_limit: Optional[int] = None  # evaluation images
    eval_split: Optional[str] = None  # None = the recipe's (a folder data set: val)
    threads: Optional[int] = None  # torch threads per process
    momentum: float = 0.9
    weight_decay: float = 5e-4
    power: float = 0.9
    aux_weight: float = 0.4
    ppm_channels: Optional[int] = None  # width overrides (experiments, tests)
    aux_channels: Optional[int] = None
    # start from these weights (strict load, fp16 cast to fp32); the optimizer and iteration count start fresh
    load_from: Optional[Path] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> ModelSpec:
        return get_spec(self.model)

    def resolved(self, device: str = "cpu") -> TrainConfig:
        """Fill every 0 from sssegmentation's recipe (zoo entry), then the CPU override if any.

        ``device`` ("cpu" | "cuda"): where the run trains. ``channels_last`` defaults to on for CUDA (issue 27,
        an H200: r18_os8_camvid at 360x480, batch 16, float16 autocast: 713.0 images/s a step against 348.9 in
        NCHW; r50_os8_cityscapes at 512x1024: x3.06) and to the recipe's choice on CPUs (off: measured no gain
        there, see CPU_OVERRIDES)."""
        from ..data import default_split
        from ..errors import UserError

        spec = self.spec
        if self.lr is not None and not (self.lr >= 0 and math.isfinite(self.lr)):
            raise UserError(f"--lr {self.lr}: the learning rate must be a finite number >= 0")
        if self.budget_mode not in BUDGET_MODES:
            raise UserError(f"budget mode {self.budget_mode!r}: use one of {', '.join(BUDGET_MODES)}")
        if self.keep < 0:
            raise UserError(f"--keep {self.keep}: keep N >= 1 epoch checkpoints (0 keeps all)")
        recipe: Dict[str, Any] = {"epochs": spec.epochs, "batch_size": spec.batch_size, "lr": spec.lr,
                                  "crop": spec.crop_size, "augment": "full", "bf16": False, "channels_last": False}
        recipe.update(CPU_OVERRIDES.get(spec.name, {}))
        return replace(
            self,
            data=Path(self.data), work_dir=Path(self.work_dir),
            epochs=self.epochs or recipe["epochs"], batch_size=self.batch_size or recipe["batch_size"],
            lr=recipe["lr"] if self.lr is None else float(self.lr), crop=tuple(self.crop) if self.crop[0] else tuple(recipe["crop"]),  # type: ignore[arg-type]
            eval_split=self.eval_split or default_split(spec, self.data),
            pretrained=self.pretrained or ("auto" if spec.config else "none"),
            augment=self.augment or recipe["augment"],
            bf16=recipe["bf16"] if self.bf16 is None else self.bf16,
            channels_last=(device == "cuda" or recipe["channels_last"]) if self.channels_last is None else self.channels_last,
        )

    @property
    def base_lr(self) -> float:
        """The learning rate of a resolved config."""
        if self.lr is None:
            raise ValueError("TrainConfig.lr is unset: call resolved() first")
        return self.lr

    def resize_base(self) -> Tuple[int, int]:
        """(long, short) of sssegmentation's train Resize at ratio 1."""
        spec = self.spec
        if spec.eval_resize:
            return spec.eval_resize
        h, w = spec.deploy_size
        return max(h, w), min(h, w)

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["data"], d["work_dir"] = str(self.data), str(self.work_dir)
        d["crop"] = list(self.crop)
        d["load_from"] = str(self.load_from) if self.load_from else None
        return d
