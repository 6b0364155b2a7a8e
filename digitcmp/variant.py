"""The variant: what names a model everywhere (CLI flags, JSON results, checkpoints, ONNX metadata).

A ``Variant`` is always complete and valid: ``create_variant`` fills every option left unset from the project's
default variant and the architecture's registry entry, once, and the dataclass checks its own fields. Nothing
downstream re-resolves it. No torch here: predict reads variants from ONNX metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

from .archs import get_arch
from .errors import DigitcmpError
from .preprocess import INPUT_SIZE
from .settings import Choice, check_fields, declared, plain, setting

MAX_TTA_WARPS = 64
MAX_ENSEMBLE = 16


class Activation(Choice):
    relu = "relu"
    tanh = "tanh"
    sigmoid = "sigmoid"
    selu = "selu"


class Head(Choice):
    """Comparison heads: learned on both digits' logits (mlp), their softmax probabilities (probs) or the towers'
    features (features), or the exact rule from the digit distributions (structured)."""

    mlp = "mlp"
    probs = "probs"
    features = "features"
    structured = "structured"


class Resolution(Choice):
    """Which digits a model reads: the study's 2×2 average pool of the 28×28 digit, or the 28×28 digit itself, whose
    strokes pooling can merge."""

    pooled = "pooled"
    full = "full"

    @property
    def size(self) -> int:
        """Pixels a side of the digits the model reads: the pooled side, or twice it (MNIST's own 28)."""
        return INPUT_SIZE if self is Resolution.pooled else 2 * INPUT_SIZE


class Technique(Choice):
    """The study's four techniques, the columns of its table: (weight sharing, auxiliary loss)."""

    none = "none"
    ws = "ws"
    aux = "aux"
    both = "both"

    @property
    def label(self) -> str:
        """As the reports' tables and digitcmp's results name it."""
        return {"none": "none", "ws": "weight sharing", "aux": "auxiliary loss", "both": "both"}[self.value]

    @property
    def weight_sharing(self) -> bool:
        return self in (Technique.ws, Technique.both)

    @property
    def has_aux(self) -> bool:
        return self in (Technique.aux, Technique.both)

    @classmethod
    def of(cls, weight_sharing: bool, aux_weight: float) -> Technique:
        return next(t for t in cls if (t.weight_sharing, t.has_aux) == (weight_sharing, aux_weight > 0))


@dataclass(frozen=True)
class Variant:
    """A resolved variant: every field set. Build one with ``create_variant``. The options declared as settings
    are offered by train (one value) and, where ``grid``, by bench and tune as grid axes (comma lists)."""

    arch: str
    weight_sharing: bool  # one tower for both digits
    aux_weight: float = setting("Weight of the auxiliary digit loss, 0 = off.", low=0, panel=None, shown="1")
    channels: tuple[int, ...] = setting(
        "Channels of each convolution layer, a comma list; one number scales the architecture's default.",
        grid=True, grid_help="Channel lists of the convolution layers, separated by / (8/16/32: three values; "
        "16,32/32,64: two).",
    )  # fmt: skip
    hidden: tuple[int, ...] = setting(
        "Widths of the tower's hidden fully connected layers, a comma list ('' for none).", grid=True,
        grid_help="Hidden layer lists of the towers, separated by / (128,64,32/256,128: two values).",
    )  # fmt: skip
    activation: Activation = setting("Activation function of the towers and the mlp head.", grid=True, shown="relu")
    dropout: float = setting("The towers' dropout rate.", low=0, high=1, high_open=True, grid=True)
    batch_norm: bool = setting("Batch normalisation in the towers.", grid=True)
    head: Head = setting("Comparison head: learned on the digits' logits, probabilities or features (mlp, probs, "
                         "features) or the exact rule (structured).")  # fmt: skip
    head_width: int | None = setting("Hidden units of a learned comparison head (0: one linear layer).", low=0,
                                     grid=True, shown="64")  # fmt: skip
    head_classes: int  # a learned head's outputs: 1 logit, or 2 class scores (a softmax classifier)
    tta: bool = setting("Average predictions over 1-pixel shifts and fixed warps.", switch="--tta/--no-tta")
    tta_warps: int = setting("Fixed elastic warps among the test-time views.", low=0, high=MAX_TTA_WARPS,
                             unit="warps")  # fmt: skip
    ensemble: int = setting("Networks per model, trained independently, probabilities averaged.", low=1,
                            high=MAX_ENSEMBLE, unit="networks", shown="1")  # fmt: skip
    resolution: Resolution = setting("Digits the model reads: pooled (14×14, the study's 2×2 average pool) or full "
                                     "(MNIST's 28×28 digits).", Resolution.pooled, shown="pooled")  # fmt: skip

    def __post_init__(self) -> None:
        check_fields(self)
        spec = get_arch(self.arch)
        if not spec.channels and self.channels:
            raise DigitcmpError(f"architecture '{self.arch}' has no convolution layers; drop --channels")
        if spec.channels and len(self.channels) != len(spec.channels):
            raise DigitcmpError(
                f"--channels: {self.arch} has {len(spec.channels)} convolution layers; give {len(spec.channels)} "
                "channel counts, or one to scale its default"
            )
        if any(size < 1 for size in (*self.channels, *self.hidden)):
            raise DigitcmpError("--channels and --hidden take positive layer sizes")
        if spec.joint and (self.weight_sharing or self.head != "features"):
            raise DigitcmpError(
                f"architecture '{self.arch}' reads both digits together: it has no towers to share and its own head; "
                "use --no-weight-sharing and drop --head"
            )
        learned = self.head != "structured" and not spec.joint
        if learned != (self.head_width is not None):
            raise DigitcmpError("--head-width applies to a learned head only; drop it or choose --head mlp")
        if self.head_classes not in (1, 2) or (self.head == "structured" and self.head_classes != 1):
            raise DigitcmpError(
                f"head_classes {self.head_classes}: a comparison head has 1 or 2 classes, and the structured head 1"
            )
        if self.tta_warps and not self.tta:
            raise DigitcmpError("--tta-warps needs test-time averaging; add --tta or drop --tta-warps")

    @property
    def name(self) -> str:
        """A short, file-name-safe label such as ``lenet-ws-aux1``; options at their defaults are left out."""
        spec = get_arch(self.arch)
        tower = [self.arch]
        if self.channels != spec.channels:
            scaled = self.channels == spec.scaled_channels(self.channels[0])
            tower.append(f"c{self.channels[0]}" if scaled else "c" + ".".join(map(str, self.channels)))
        if self.hidden != spec.hidden:
            tower.append("h" + ".".join(map(str, self.hidden)) if self.hidden else "nohidden")
        if self.activation != "relu":
            tower.append(self.activation)
        if self.dropout != spec.dropout:
            tower.append(f"do{self.dropout:g}")
        if self.batch_norm != spec.batch_norm:
            tower.append("bn" if self.batch_norm else "nobn")
        if self.resolution != Resolution.pooled:
            tower.append(self.resolution.value)
        parts = [*tower, "ws" if self.weight_sharing else "sep"]
        parts.append(f"aux{self.aux_weight:g}" if self.aux_weight else "noaux")
        if self.head != spec.head:
            parts.append(self.head)
        if self.head_width not in (None, spec.head_width):
            parts.append(f"hw{self.head_width}")
        if self.head_classes != spec.head_classes:
            parts.append(f"{self.head_classes}class")
        if self.tta != spec.tta:
            parts.append("tta" if self.tta else "notta")
        if self.ensemble != spec.ensemble:
            parts.append(f"x{self.ensemble}")
        if self.tta and self.tta_warps != spec.tta_warps:
            parts.append(f"tw{self.tta_warps}")
        return "-".join(parts)

    @property
    def names_digits(self) -> bool:
        """Whether training teaches the digit head the digits' names: the auxiliary loss does, and so does the
        structured head, whose exact rule only works on correctly named digits. Otherwise that head is untrained
        and its accuracy is noise, so none is reported."""
        return self.aux_weight > 0 or self.head == "structured"

    @property
    def technique(self) -> str:
        """The column of the study's table, as results name it: none, weight sharing, auxiliary loss, or both."""
        return Technique.of(self.weight_sharing, self.aux_weight).label

    def to_dict(self) -> dict:
        """JSON-ready: layer sizes as lists."""
        return plain(self)

    @classmethod
    def from_dict(cls, data: dict) -> Variant:
        """Read a variant from a results file, checkpoint or ONNX metadata. Files from before an option existed
        read as what they were made with: one network, no test-time warps, and the conv towers' ``width`` as the
        first layer's channels."""
        known = {f.name for f in fields(cls)} - {"ensemble", "tta_warps"}
        options = {key: data[key] for key in known if data.get(key) is not None}
        if data.get("width") and "channels" not in data:
            options["channels"] = (data["width"],)
        return create_variant(**options, ensemble=data.get("ensemble", 1), tta_warps=data.get("tta_warps", 0))


def digit_size(options: dict) -> int:
    """The input side of the variants ``create_variant`` makes with these options: bench's and tune's cells share
    one resolution, and so one set of drawn pairs."""
    return Resolution(options.get("resolution") or Resolution.pooled).size


# The variant users get when they name none: the best the project has measured (docs/results.md).
DEFAULT_ARCH, DEFAULT_WEIGHT_SHARING, DEFAULT_AUX_WEIGHT = "vgg4", True, 1.0
# What create_variant accepts besides the architecture, weight sharing and auxiliary weight (bench grid axes too).
TOWER_OPTIONS = ("channels", "hidden", "activation", "dropout", "batch_norm", "head_width", "head_classes")
# The variant options a grid's cells share (the others are axes): bench and tune take one value of each.
SHARED_OPTIONS = tuple(
    name for name, (knob, _, _) in declared(Variant).items() if not knob.grid and name != "aux_weight"
)


def create_variant(
    arch: str | None = None,
    weight_sharing: bool | None = None,
    aux_weight: float | None = None,
    *,
    channels: Sequence[int] | None = None,
    hidden: Sequence[int] | None = None,
    activation: str | None = None,
    dropout: float | None = None,
    batch_norm: bool | None = None,
    head: str | None = None,
    head_width: int | None = None,
    head_classes: int | None = None,
    tta: bool | None = None,
    ensemble: int | None = None,
    tta_warps: int | None = None,
    resolution: str | None = None,
) -> Variant:
    """The one place a variant is resolved: options left as None take the default variant's values (architecture,
    weight sharing, auxiliary weight), then the architecture's own. One channel count scales the architecture's
    default channels."""
    spec = get_arch(arch or DEFAULT_ARCH)
    if channels is not None and len(channels) == 1 and len(spec.channels) > 1 and channels[0] >= 1:
        channels = spec.scaled_channels(channels[0])
    head = head or spec.head
    learned = head != "structured" and not spec.joint
    tta = spec.tta if tta is None else tta
    return Variant(
        arch=spec.name,
        weight_sharing=(not spec.joint and DEFAULT_WEIGHT_SHARING) if weight_sharing is None else weight_sharing,
        aux_weight=float(DEFAULT_AUX_WEIGHT if aux_weight is None else aux_weight),
        channels=spec.channels if channels is None else tuple(channels),
        hidden=spec.hidden if hidden is None else tuple(hidden),
        activation=activation or "relu",
        dropout=float(spec.dropout if dropout is None else dropout),
        batch_norm=spec.batch_norm if batch_norm is None else batch_norm,
        head=head,
        head_width=(spec.head_width if head_width is None else head_width) if learned else head_width,
        head_classes=spec.head_classes if head_classes is None else head_classes,
        tta=tta,
        ensemble=spec.ensemble if ensemble is None else ensemble,
        tta_warps=(spec.tta_warps if tta else 0) if tta_warps is None else tta_warps,
        resolution=resolution or Resolution.pooled,
    )
