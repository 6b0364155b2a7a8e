"""Training configuration: the hyper-parameters of a run, each declared once (no torch here)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from .archs import get_arch
from .settings import Choice, check_fields, plain, setting
from .variant import Variant

DATA_ENV = "DIGITCMP_DATA"  # environment variable naming the MNIST folder, like --data-dir


class Optimizer(Choice):
    adam = "adam"
    adamw = "adamw"
    sgd = "sgd"  # with momentum 0.9


class LossKind(Choice):
    average = "average"  # (main + w·aux) / (1 + w): one scale whatever the auxiliary weight
    sum = "sum"  # main + w·aux


class Curves(Choice):
    light = "light"  # every epoch, test error on a fixed sample of the test pairs
    full = "full"  # every epoch, on every validation and test pair (best-epoch figures need it)
    off = "off"

    @classmethod
    def legacy(cls) -> dict[object, Choice]:
        return {True: cls.full, False: cls.off}  # 0.2 recorded curves on or off


LIGHT_CURVE_PAIRS = 100  # the light curves' sample of test pairs, the same every epoch


class Schedule(Choice):
    constant = "constant"
    onecycle = "onecycle"


IMITATE = "Imitate pictures: "


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters; the defaults are the reports' protocol, and each field is declared once here
    (help, range, panel) for both the validation below and the command line's options."""

    epochs: int = setting("Passes over the training pairs.", 25, low=1, panel=None)
    batch_size: int = setting("Pairs per step.", 100, low=1, grid=True)
    lr: float = setting("Learning rate (peak of onecycle).", 1e-3, low=0, low_open=True, grid=True)
    optimizer: Optimizer = setting("Optimiser (sgd with --momentum).", Optimizer.adam)
    weight_decay: float = setting("Weight decay (L2; decoupled with adamw).", 0.0, low=0, grid=True)
    momentum: float = setting("SGD's momentum (0: plain SGD).", 0.9, low=0, high=1, high_open=True, shown="0.9")
    schedule: Schedule = setting("Learning-rate schedule.", Schedule.constant)
    val_fraction: float = setting("Share of training pairs held out for model selection.", 0.1, low=0, high=1,
                                  high_open=True, shown="0.1")  # fmt: skip
    shift: int = setting("Shift training digits by up to N px.", 0, low=0, high=4, unit="pixels")
    elastic: float = setting("Elastic warp of training digits, displacement std in px.", 0.0, low=0, high=2,
                             unit="pixels")  # fmt: skip
    swap: bool = setting("Add each training pair swapped (equal digits stay 1 both ways).", False)
    rotate: float = setting("Rotate training digits within ± this many degrees.", 0.0, low=0, high=45, unit="degrees")
    shear: float = setting("Shear training digits horizontally within ± this much.", 0.0, low=0, high=1)
    thickness: float = setting(IMITATE + "stroke width towards dilation/erosion, ± this.", 0.0, low=0, high=1)
    blur: float = setting(IMITATE + "Gaussian blur of up to this many px.", 0.0, low=0, high=2, unit="pixels")
    contrast: float = setting(IMITATE + "ink fainter by up to this share.", 0.0, low=0, high=1, high_open=True)
    noise: float = setting(IMITATE + "pixel noise of up to this standard deviation.", 0.0, low=0, high=0.5)
    label_smoothing: float = setting("Smoothing of the auxiliary digit targets.", 0.0, low=0, high=1, high_open=True)
    loss: LossKind = setting("average: (main + w·aux)/(1 + w); sum: main + w·aux.", LossKind.average,
                             shown="average")  # fmt: skip
    nondigits: float = setting("Weight of a loss that teaches the digit head to spread its probability over the "
                               "digits for generated non-digits (letters, symbols, shapes), so that predict can "
                               "refuse them; auxiliary loss only; 0: off.", 0.0, low=0, high=10)  # fmt: skip
    all_pairs: bool = setting("Comparison loss over every pair of digits in a batch (structured head and auxiliary "
                              "loss only).", False, switch="--all-pairs/--drawn-pairs")  # fmt: skip
    rounds_together: int = 0  # rounds trained at once as one batched model (0 = all on CUDA, chunks on the CPU)
    curves: Curves = setting("Learning curves after every epoch (single view): light, test error on a fixed "
                             f"sample of {LIGHT_CURVE_PAIRS} test pairs; full, validation and test error on every "
                             "pair (needed for best-epoch figures); off. Final figures always use every pair.",
                             Curves.light, shown="light")  # fmt: skip

    def __post_init__(self) -> None:
        check_fields(self)

    @classmethod
    def for_arch(cls, arch: str, **overrides: object) -> TrainConfig:
        """The architecture's recipe, with every override that is not None on top."""
        settings = dict(get_arch(arch).recipe)
        settings.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**settings)

    def to_dict(self) -> dict:
        """JSON- and checkpoint-ready: choices as their values."""
        return plain(self)

    @property
    def imitates_pictures(self) -> bool:
        return bool(self.thickness or self.blur or self.contrast or self.noise)

    def fitted(self, variant: Variant) -> TrainConfig:
        """The config as it applies to ``variant``: the all-pairs loss needs the structured head (which scores any
        two digits) and the auxiliary loss (whose digit classes give every pair's target), else the drawn pairs
        are the only ones there are."""
        applies = variant.head == "structured" and variant.aux_weight > 0
        return self if applies or not self.all_pairs else replace(self, all_pairs=False)
