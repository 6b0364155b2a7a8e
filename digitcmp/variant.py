"""The variant: what names a model everywhere (CLI flags, JSON results, checkpoints, ONNX metadata).

A ``Variant`` is always complete and valid: ``create_variant`` fills every option left unset from the project's
default variant and the architecture's registry entry, once, and the dataclass checks its own fields. Nothing
downstream re-resolves it. No torch here: predict reads variants from ONNX metadata.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .archs import get_arch
from .errors import DigitcmpError

HEADS = ("mlp", "structured")
MAX_TTA_WARPS = 64
MAX_ENSEMBLE = 16


@dataclass(frozen=True)
class Variant:
    """A resolved variant: every field set. Build one with ``create_variant``."""

    arch: str
    weight_sharing: bool  # one tower for both digits
    aux_weight: float  # weight of the auxiliary digit loss (0 = off)
    width: int | None  # channels of the architectures that have a width, else None
    head: str  # mlp (learned) | structured (exact rule from the digit distributions)
    tta: bool  # test-time averaging over 1-pixel shifts (and warps) in eval mode
    ensemble: int  # networks trained independently per model, probabilities averaged
    tta_warps: int  # fixed elastic warps among the test-time views (0 without tta)

    def __post_init__(self) -> None:
        spec = get_arch(self.arch)
        if not (self.aux_weight >= 0 and math.isfinite(self.aux_weight)):
            raise DigitcmpError(f"--aux-weight must be a finite number ≥ 0, got {self.aux_weight}")
        if spec.default_width is None and self.width is not None:
            raise DigitcmpError(f"architecture '{self.arch}' has no width; drop --width")
        if spec.default_width is not None and (self.width is None or self.width < 1):
            raise DigitcmpError(f"--width must be a positive number of channels, got {self.width}")
        if self.head not in HEADS:
            raise DigitcmpError(f"unknown head '{self.head}'; choose from: {', '.join(HEADS)}")
        if not 1 <= self.ensemble <= MAX_ENSEMBLE:
            raise DigitcmpError(f"--ensemble must be between 1 and {MAX_ENSEMBLE} networks, got {self.ensemble}")
        if not 0 <= self.tta_warps <= MAX_TTA_WARPS:
            raise DigitcmpError(f"--tta-warps must be between 0 and {MAX_TTA_WARPS}, got {self.tta_warps}")
        if self.tta_warps and not self.tta:
            raise DigitcmpError("--tta-warps needs test-time averaging; add --tta or drop --tta-warps")

    @property
    def name(self) -> str:
        """A short, file-name-safe label such as ``lenet-ws-aux1``; options at their defaults are left out."""
        spec = get_arch(self.arch)
        parts = [self.arch + (f"-w{self.width}" if self.width else "")]
        parts.append("ws" if self.weight_sharing else "sep")
        parts.append(f"aux{self.aux_weight:g}" if self.aux_weight else "noaux")
        if self.head != spec.default_head:
            parts.append(self.head)
        if self.tta != spec.default_tta:
            parts.append("tta" if self.tta else "notta")
        if self.ensemble != spec.default_ensemble:
            parts.append(f"x{self.ensemble}")
        if self.tta and self.tta_warps != spec.default_tta_warps:
            parts.append(f"tw{self.tta_warps}")
        return "-".join(parts)

    @property
    def technique(self) -> str:
        """The column of the study's table: none, weight sharing, auxiliary loss, or both."""
        return technique(self.weight_sharing, self.aux_weight)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Variant:
        """Read a variant from a results file, checkpoint or ONNX metadata. Files written before ensembles or
        test-time warps existed hold one network per model and no warps."""
        known = ("arch", "weight_sharing", "aux_weight", "width", "head", "tta")
        return create_variant(
            **{key: data.get(key) for key in known},
            ensemble=data.get("ensemble", 1),
            tta_warps=data.get("tta_warps", 0),
        )


def technique(weight_sharing: bool, aux_weight: float) -> str:
    """The name of a (weight sharing, auxiliary loss) combination, as the reports' tables label it."""
    return {(False, False): "none", (True, False): "weight sharing", (False, True): "auxiliary loss"}.get(
        (weight_sharing, aux_weight > 0), "both"
    )


# The variant users get when they name none: the best the project has measured (docs/results.md).
DEFAULT_ARCH, DEFAULT_WEIGHT_SHARING, DEFAULT_AUX_WEIGHT = "vgg4", True, 1.0


def create_variant(
    arch: str | None = None,
    weight_sharing: bool | None = None,
    aux_weight: float | None = None,
    width: int | None = None,
    head: str | None = None,
    tta: bool | None = None,
    ensemble: int | None = None,
    tta_warps: int | None = None,
) -> Variant:
    """The one place a variant is resolved: options left as None take the default variant's values (architecture,
    weight sharing, auxiliary weight), then the architecture's own (width, head, test-time views, ensemble)."""
    spec = get_arch(arch or DEFAULT_ARCH)
    tta = spec.default_tta if tta is None else tta
    if tta_warps is None:
        tta_warps = spec.default_tta_warps if tta else 0
    return Variant(
        arch=spec.name,
        weight_sharing=DEFAULT_WEIGHT_SHARING if weight_sharing is None else weight_sharing,
        aux_weight=float(DEFAULT_AUX_WEIGHT if aux_weight is None else aux_weight),
        width=width if width is not None or spec.default_width is None else spec.default_width,
        head=head or spec.default_head,
        tta=tta,
        ensemble=spec.default_ensemble if ensemble is None else ensemble,
        tta_warps=tta_warps,
    )


DEFAULT_VARIANT = create_variant()
