"""Training configuration: the hyper-parameters of a run and each architecture's recipe (no torch here)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import Enum

from .errors import DigitcmpError
from .variant import Variant

DATA_ENV = "DIGITCMP_DATA"  # environment variable naming the MNIST folder, like --data-dir


class Optimizer(str, Enum):
    adam = "adam"
    adamw = "adamw"
    sgd = "sgd"  # with momentum 0.9


class LossKind(str, Enum):
    average = "average"  # (main + w·aux) / (1 + w): one scale whatever the auxiliary weight
    sum = "sum"  # main + w·aux


class Schedule(str, Enum):
    constant = "constant"
    onecycle = "onecycle"


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters; the defaults are the reports' protocol."""

    epochs: int = 25  # passes over each round's training pairs
    batch_size: int = 100  # pairs per optimisation step, per round
    lr: float = 1e-3  # learning rate (the peak rate with the one-cycle schedule)
    optimizer: str = "adam"  # adam | adamw | sgd (momentum 0.9)
    weight_decay: float = 0.0  # L2 (adam, sgd) or decoupled (adamw) weight decay
    momentum: float = 0.9  # sgd's momentum (0: plain stochastic gradient descent)
    schedule: str = "constant"  # constant | onecycle
    val_fraction: float = 0.1  # share of the training pairs held out for model selection
    shift: int = 0  # augmentation: random shift of each digit by up to this many pixels (0 = off)
    elastic: float = 0.0  # augmentation: smooth random warp of each digit, displacement std in pixels (0 = off)
    swap: bool = False  # augmentation: add every training pair swapped (equal digits stay 1 both ways)
    rotate: float = 0.0  # augmentation: random rotation of each digit within ± this many degrees
    shear: float = 0.0  # augmentation: random horizontal shear of each digit within ± this much
    thickness: float = 0.0  # imitating pictures: stroke width blended towards dilation or erosion, within ± this
    blur: float = 0.0  # imitating pictures: Gaussian blur of up to this many pixels (σ)
    contrast: float = 0.0  # imitating pictures: ink fainter by up to this share of full white
    noise: float = 0.0  # imitating pictures: Gaussian pixel noise of up to this standard deviation
    label_smoothing: float = 0.0  # share of the auxiliary digit target spread over all ten classes
    loss: str = "average"  # average: (main + w·aux) / (1 + w) | sum: main + w·aux
    all_pairs: bool = False  # main loss over every ordered pair of a batch's digits (structured head, aux loss)
    rounds_together: int = 0  # rounds trained at once as one batched model (0 = all on CUDA, chunks on the CPU)
    curves: bool = True  # evaluate validation and test error after every epoch (single view, for learning curves)

    @classmethod
    def for_arch(cls, arch: str, **overrides: object) -> TrainConfig:
        """The architecture's recipe, with every override that is not None on top."""
        settings = dict(RECIPES.get(arch, {}))
        settings.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**settings).check()

    @property
    def imitates_pictures(self) -> bool:
        return bool(self.thickness or self.blur or self.contrast or self.noise)

    def fitted(self, variant: Variant) -> TrainConfig:
        """The config as it applies to ``variant``: the all-pairs loss needs the structured head (which scores any
        two digits) and the auxiliary loss (whose digit classes give every pair's target), else the drawn pairs
        are the only ones there are."""
        applies = variant.head == "structured" and variant.aux_weight > 0
        return self if applies or not self.all_pairs else replace(self, all_pairs=False)

    def check(self) -> TrainConfig:
        """Fail on values no training can use, naming the flag."""
        problems = {  # flag: (out of range?, the range it must be in)
            "--epochs": (self.epochs < 1, "≥ 1"),
            "--batch-size": (self.batch_size < 1, "≥ 1"),
            "--lr": (not (self.lr > 0 and math.isfinite(self.lr)), "a finite number > 0"),
            "--weight-decay": (
                not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)),
                "a finite number ≥ 0",
            ),
            "--val-fraction": (not 0 <= self.val_fraction < 1, "0 ≤ value < 1"),
            "--shift": (not 0 <= self.shift <= 4, "0 to 4 pixels"),
            "--elastic": (not 0 <= self.elastic <= 2, "0 to 2 pixels"),
            "--label-smoothing": (not 0 <= self.label_smoothing < 1, "0 ≤ value < 1"),
            "--momentum": (not 0 <= self.momentum < 1, "0 ≤ value < 1"),
            "--rotate": (not 0 <= self.rotate <= 45, "0 to 45 degrees"),
            "--shear": (not 0 <= self.shear <= 1, "0 to 1"),
            "--thickness": (not 0 <= self.thickness <= 1, "0 to 1"),
            "--blur": (not 0 <= self.blur <= 2, "0 to 2 pixels"),
            "--contrast": (not 0 <= self.contrast < 1, "0 ≤ value < 1"),
            "--noise": (not 0 <= self.noise <= 0.5, "0 to 0.5"),
        }
        for flag, (bad, valid) in problems.items():
            if bad:
                value = getattr(self, flag[2:].replace("-", "_"))
                raise DigitcmpError(f"{flag} {value} is out of range; use {valid}")
        enums = (("--optimizer", self.optimizer, Optimizer), ("--schedule", self.schedule, Schedule),
                 ("--loss", self.loss, LossKind))  # fmt: skip
        for flag, value, kind in enums:
            if value not in {member.value for member in kind}:
                choices = ", ".join(member.value for member in kind)
                raise DigitcmpError(f"unknown {flag[2:]} '{value}'; choose from: {choices}")
        return self


# Each architecture's training defaults (TrainConfig fields) where they differ from the reports' protocol. vgg4's
# recipe was chosen on the bundled-only protocol, never on the MNIST test set (docs/results.md).
RECIPES: dict[str, dict[str, object]] = {
    "vgg4": {
        "epochs": 60,
        "lr": 5e-3,
        "optimizer": "adamw",
        "weight_decay": 5e-4,
        "schedule": "onecycle",
        "shift": 2,
        "elastic": 0.5,
        "swap": True,
    },
}
