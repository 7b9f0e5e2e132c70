"""Training settings: sssegmentation's recipe by default, a CPU-sized override for the demo model."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from ..zoo import ModelSpec, get_spec

# CPU-sized schedule for r18_os8_camvid (from scratch: no ImageNet weights can be downloaded here).
# Measured on 2 cores: 240x320 crops, batch 8 take ~3.3 s an iteration (2.4 images/s), so 22 epochs
# (990 iterations) fit in ~55 minutes; 360x480 crops would allow only ~9 epochs.
CPU_OVERRIDES: Dict[str, Dict[str, Any]] = {
    "r18_os8_camvid": {"crop": (240, 320), "batch_size": 8, "epochs": 22, "lr": 0.01},
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
    limit_images: Optional[int] = None  # first N training images
    eval_every: int = 10  # epochs; 0 = only at the end
    eval_limit: Optional[int] = None  # evaluation images
    eval_split: Optional[str] = None
    threads: Optional[int] = None  # torch threads per process
    momentum: float = 0.9
    weight_decay: float = 5e-4
    power: float = 0.9
    aux_weight: float = 0.4
    ppm_channels: Optional[int] = None  # width overrides (experiments, tests)
    aux_channels: Optional[int] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> ModelSpec:
        return get_spec(self.model)

    def resolved(self) -> TrainConfig:
        """Fill every 0 from sssegmentation's recipe (zoo entry), then the CPU override if any."""
        from ..errors import UserError

        spec = self.spec
        if self.lr is not None and not (self.lr >= 0 and math.isfinite(self.lr)):
            raise UserError(f"--lr {self.lr}: the learning rate must be a finite number >= 0")
        if self.budget_mode not in BUDGET_MODES:
            raise UserError(f"budget mode {self.budget_mode!r}: use one of {', '.join(BUDGET_MODES)}")
        if self.keep < 0:
            raise UserError(f"--keep {self.keep}: keep N >= 1 epoch checkpoints (0 keeps all)")
        recipe: Dict[str, Any] = {"epochs": spec.epochs, "batch_size": spec.batch_size, "lr": spec.lr,
                                  "crop": spec.crop_size}
        recipe.update(CPU_OVERRIDES.get(spec.name, {}))
        return replace(
            self,
            data=Path(self.data), work_dir=Path(self.work_dir),
            epochs=self.epochs or recipe["epochs"], batch_size=self.batch_size or recipe["batch_size"],
            lr=recipe["lr"] if self.lr is None else float(self.lr), crop=tuple(self.crop) if self.crop[0] else tuple(recipe["crop"]),  # type: ignore[arg-type]
            eval_split=self.eval_split or spec.eval_split,
            pretrained=self.pretrained or ("auto" if spec.config else "none"),
        )

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
        return d
