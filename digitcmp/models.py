"""Architectures for the digit-comparison task, one registry, and the variant that names a model everywhere.

Every layer here holds ``members`` independent copies of its parameters along a leading axis, so that the R rounds
of a variant can be trained as one computation (grouped convolutions, batched matrix products) while computing
exactly what R separate models would. A model with ``members=1`` is an ordinary model and is what gets exported.
A variant with an ensemble of K networks has K such copies per member, trained independently and averaged.

Shapes: a model takes pairs E×B×2×14×14 (E members, B pairs each) of pooled digits in [0, 1] and returns the
comparison logit E×B and the digit logits E×B×2×10 (``single_view`` works on all E·K networks instead). Towers
use two layouts: "maps" B×(E·C)×H×W for convolutions and "vectors" E×B×F for fully connected layers.
"""

from __future__ import annotations

import difflib
import itertools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .augment import TTA_SHIFTS, take_views, tta_views
from .errors import DigitcmpError
from .files import atomic_write
from .preprocess import INPUT_SIZE, MNIST_MEAN, MNIST_STD

HEADS = ("mlp", "structured")
MAX_TTA_WARPS = 64


class MemberLinear(nn.Module):
    """A fully connected layer per member: E×B×F_in → E×B×F_out."""

    def __init__(self, members: int, fan_in: int, fan_out: int) -> None:
        super().__init__()
        bound = 1 / math.sqrt(fan_in)  # torch's default nn.Linear initialisation
        self.weight = nn.Parameter(torch.empty(members, fan_in, fan_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(members, 1, fan_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class MemberConv2d(nn.Module):
    """A square convolution per member, as one grouped convolution over maps B×(E·C)×H×W."""

    def __init__(self, members: int, channels_in: int, channels_out: int, kernel: int = 3, padding: int = 0):
        super().__init__()
        bound = 1 / math.sqrt(channels_in * kernel * kernel)  # torch's default nn.Conv2d initialisation
        self.weight = nn.Parameter(
            torch.empty(members, channels_out, channels_in, kernel, kernel).uniform_(-bound, bound)
        )
        self.bias = nn.Parameter(torch.empty(members, channels_out).uniform_(-bound, bound))
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        members = self.weight.shape[0]
        return F.conv2d(x, self.weight.flatten(0, 1), self.bias.flatten(), padding=self.padding, groups=members)


class MemberBatchNorm2d(nn.Module):
    """Batch normalisation per member and channel over maps B×(E·C)×H×W; statistics never mix members."""

    def __init__(self, members: int, channels: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(members, channels))
        self.bias = nn.Parameter(torch.zeros(members, channels))
        self.register_buffer("running_mean", torch.zeros(members, channels))
        self.register_buffer("running_var", torch.ones(members, channels))
        self.momentum, self.eps = momentum, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The flattened buffers are views, so batch_norm's in-place update of running statistics lands here.
        return F.batch_norm(
            x,
            self.running_mean.view(-1),
            self.running_var.view(-1),
            self.weight.flatten(),
            self.bias.flatten(),
            self.training,
            self.momentum,
            self.eps,
        )


class ImagesToMaps(nn.Module):
    """Digits E×B×14×14 → maps B×E×14×14 (one channel per member), channels-last.

    Channels-last lets the CPU's convolution and pooling kernels vectorise over the E·C channels: on 2 cores it
    more than halves lenet's step time (docs/performance.md).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(0, 1).contiguous(memory_format=torch.channels_last)


class ImagesToVectors(nn.Module):
    """Digits E×B×14×14 → vectors E×B×196."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2)


class MapsToVectors(nn.Module):
    """Maps B×(E·C)×H×W → vectors E×B×(C·H·W)."""

    def __init__(self, members: int) -> None:
        super().__init__()
        self.members = members

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(1, (self.members, -1)).flatten(2).transpose(0, 1)


@dataclass(frozen=True)
class ArchSpec:
    """A registered architecture: its tower builder, what it is, and its default options."""

    name: str
    build_tower: Callable[..., nn.Module]
    description: str
    default_width: int | None = None  # None: the architecture has no width option
    default_head: str = "mlp"
    default_tta: bool = False
    default_tta_warps: int = 0  # fixed elastic warps among the test-time views (augment.tta_views)
    default_ensemble: int = 1  # independently trained networks whose probabilities a model averages
    recipe: tuple[tuple[str, object], ...] = ()  # training defaults (TrainConfig fields) that differ from the reports'


ARCHS: dict[str, ArchSpec] = {}


def register(
    description: str,
    default_width: int | None = None,
    default_head: str = "mlp",
    default_tta: bool = False,
    default_tta_warps: int = 0,
    default_ensemble: int = 1,
    **recipe: object,
) -> Callable:
    """Decorator adding a tower builder ``(members, width) -> nn.Module`` to the registry under its name.

    ``recipe`` holds the architecture's own training defaults (``TrainConfig`` field names).
    """

    def add(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = builder.__name__.replace("_", "-")
        spec = ArchSpec(
            name,
            builder,
            description,
            default_width,
            default_head,
            default_tta,
            default_tta_warps,
            default_ensemble,
            tuple(recipe.items()),
        )
        ARCHS[name] = spec
        return builder

    return add


def get_arch(name: str) -> ArchSpec:
    """Look an architecture up, failing with the valid names and the closest match."""
    if name in ARCHS:
        return ARCHS[name]
    close = difflib.get_close_matches(name, ARCHS, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise DigitcmpError(f"unknown architecture '{name}'{hint}; choose from: {', '.join(ARCHS)}")


@register("one hidden layer of 500 units (196-500-10)")
def shallow_fc(members: int, width: int | None = None) -> nn.Module:
    return nn.Sequential(ImagesToVectors(), MemberLinear(members, 196, 500), nn.ReLU(), MemberLinear(members, 500, 10))


@register("four decreasing fully connected layers (196-256-128-64-10)")
def deep_fc(members: int, width: int | None = None) -> nn.Module:
    sizes = (196, 256, 128, 64)
    layers: list[nn.Module] = [ImagesToVectors()]
    for fan_in, fan_out in itertools.pairwise(sizes):
        layers += [MemberLinear(members, fan_in, fan_out), nn.ReLU()]
    return nn.Sequential(*layers, MemberLinear(members, sizes[-1], 10))


@register("LeNet-style: two 3×3 conv + max-pool stages (32, 64 channels), then 256-200-10")
def lenet(members: int, width: int | None = None) -> nn.Module:
    return nn.Sequential(
        ImagesToMaps(),
        MemberConv2d(members, 1, 32),
        nn.MaxPool2d(2),
        nn.ReLU(),
        MemberConv2d(members, 32, 64),
        nn.MaxPool2d(2),
        nn.ReLU(),
        MapsToVectors(members),
        MemberLinear(members, 256, 200),
        nn.ReLU(),
        MemberLinear(members, 200, 10),
    )


@register("six blocks of unpadded 3×3 conv, BatchNorm, ReLU, dropout 0.1 → width×2×2 → 10", default_width=32)
def conv6(members: int, width: int | None = 32) -> nn.Module:
    width = width or 32
    layers: list[nn.Module] = [ImagesToMaps()]
    for block in range(6):
        layers += [
            MemberConv2d(members, 1 if block == 0 else width, width),
            MemberBatchNorm2d(members, width),
            nn.ReLU(),
            nn.Dropout(0.1),
        ]
    return nn.Sequential(*layers, MapsToVectors(members), MemberLinear(members, width * 4, 10))


@register(
    "VGG-style: two stages of two padded 3×3 conv + BatchNorm + ReLU (width, 2·width), max-pool, dropout, → 10",
    default_width=16,
    default_head="structured",
    default_tta=True,
    default_tta_warps=32,
    epochs=60,
    lr=5e-3,
    optimizer="adamw",
    weight_decay=5e-4,
    schedule="onecycle",
    shift=2,
    elastic=0.5,
    swap=True,
)
def vgg4(members: int, width: int | None = 16) -> nn.Module:
    width = width or 16
    layers: list[nn.Module] = [ImagesToMaps()]
    for channels_in, channels_out in ((1, width), (width, width), (width, 2 * width), (2 * width, 2 * width)):
        layers += [
            MemberConv2d(members, channels_in, channels_out, padding=1),
            MemberBatchNorm2d(members, channels_out),
            nn.ReLU(),
        ]
        if channels_in == channels_out:  # end of a stage: 14 → 7 → 3
            layers.append(nn.MaxPool2d(2))
    return nn.Sequential(
        *layers,
        MapsToVectors(members),
        nn.Dropout(0.3),
        MemberLinear(members, 2 * width * 9, 128),
        nn.ReLU(),
        nn.Dropout(0.3),
        MemberLinear(members, 128, 10),
    )


@dataclass(frozen=True)
class Variant:
    """What names a model everywhere (CLI flags, JSON results, checkpoints, ONNX metadata).

    ``width`` and ``head`` are None until ``resolved()`` fills in the architecture's defaults.
    """

    arch: str
    weight_sharing: bool
    aux_weight: float
    width: int | None = None
    head: str | None = None
    tta: bool | None = None  # test-time augmentation: average over 1-pixel shifts (and warps) in eval mode
    ensemble: int | None = None  # networks trained independently per model, probabilities averaged
    tta_warps: int | None = None  # fixed elastic warps added to the test-time views (0 without tta)

    def resolved(self) -> Variant:
        """Check the variant and fill in the architecture's defaults."""
        spec = get_arch(self.arch)
        if self.aux_weight < 0 or not math.isfinite(self.aux_weight):
            raise DigitcmpError(f"--aux-weight must be a finite number ≥ 0, got {self.aux_weight}")
        if self.width is not None and spec.default_width is None:
            raise DigitcmpError(f"architecture '{self.arch}' has no width; drop --width")
        if self.width is not None and self.width < 1:
            raise DigitcmpError(f"--width must be a positive number of channels, got {self.width}")
        head = self.head or spec.default_head
        if head not in HEADS:
            raise DigitcmpError(f"unknown head '{head}'; choose from: {', '.join(HEADS)}")
        if self.ensemble is not None and not 1 <= self.ensemble <= 16:
            raise DigitcmpError(f"--ensemble must be between 1 and 16 networks, got {self.ensemble}")
        tta = spec.default_tta if self.tta is None else self.tta
        if self.tta_warps is not None and not 0 <= self.tta_warps <= MAX_TTA_WARPS:
            raise DigitcmpError(f"--tta-warps must be between 0 and {MAX_TTA_WARPS}, got {self.tta_warps}")
        if self.tta_warps and not tta:
            raise DigitcmpError("--tta-warps needs test-time averaging; add --tta or drop --tta-warps")
        warps = (spec.default_tta_warps if self.tta_warps is None else self.tta_warps) if tta else 0
        ensemble = self.ensemble or spec.default_ensemble
        return replace(
            self,
            width=self.width or spec.default_width,
            head=head,
            tta=tta,
            ensemble=ensemble,
            tta_warps=warps,
            aux_weight=float(self.aux_weight),
        )

    @property
    def name(self) -> str:
        """A short, file-name-safe label such as ``lenet-ws-aux1``."""
        parts = [self.arch + (f"-w{self.width}" if self.width and get_arch(self.arch).default_width else "")]
        parts.append("ws" if self.weight_sharing else "sep")
        parts.append(f"aux{self.aux_weight:g}" if self.aux_weight else "noaux")
        if self.head and self.head != get_arch(self.arch).default_head:
            parts.append(self.head)
        if self.tta is not None and self.tta != get_arch(self.arch).default_tta:
            parts.append("tta" if self.tta else "notta")
        if self.ensemble is not None and self.ensemble != get_arch(self.arch).default_ensemble:
            parts.append(f"x{self.ensemble}")
        if self.tta and self.tta_warps is not None and self.tta_warps != get_arch(self.arch).default_tta_warps:
            parts.append(f"tw{self.tta_warps}")
        return "-".join(parts)

    @property
    def technique(self) -> str:
        """The column of the study's table: none, weight sharing, auxiliary loss, or both."""
        return {(False, False): "none", (True, False): "weight sharing", (False, True): "auxiliary loss"}.get(
            (self.weight_sharing, self.aux_weight > 0), "both"
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Variant:
        fields = ("arch", "weight_sharing", "aux_weight", "width", "head", "tta")
        # Files written before ensembles (or test-time warps) existed hold one network per model (and no warps).
        return cls(
            **{key: data.get(key) for key in fields},
            ensemble=data.get("ensemble", 1),
            tta_warps=data.get("tta_warps", 0),
        ).resolved()


# The variant users get when they name none: the best the project has measured (docs/results.md).
DEFAULT_VARIANT = Variant("vgg4", weight_sharing=True, aux_weight=1.0)


class ComparisonNet(nn.Module):
    """Two digit towers (one shared tower with weight sharing) and a head comparing their 10-way outputs.

    The input is normalised inside the model, so exported graphs take raw pooled digits in [0, 1]. Each of the
    ``members`` models is an ensemble of ``variant.ensemble`` networks (usually one), stored member-major.
    """

    def __init__(self, variant: Variant, members: int = 1) -> None:
        super().__init__()
        self.variant = variant = variant.resolved()
        self.members = members
        self.networks = networks = members * variant.ensemble
        spec = get_arch(variant.arch)
        self.tower_a = spec.build_tower(networks, variant.width)
        # Weight sharing is the same module object, so its parameters exist (and are counted) once.
        self.tower_b = self.tower_a if variant.weight_sharing else spec.build_tower(networks, variant.width)
        if variant.head == "mlp":
            self.head: nn.Module = nn.Sequential(
                MemberLinear(networks, 20, 64), nn.ReLU(), MemberLinear(networks, 64, 1)
            )
        else:
            self.head = StructuredHead()
        # Derived from the variant, not learned: rebuilt with the model, never saved in checkpoints.
        view_index, view_weight = tta_views(variant.tta_warps)
        self.register_buffer("view_index", view_index, persistent=False)
        self.register_buffer("view_weight", view_weight, persistent=False)

    def forward(self, pairs: torch.Tensor, tta: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Pairs E×B×2×14×14 → (comparison logit E×B, digit logits E×B×2×10), one model per member.

        The probabilities are averaged (in log space; the logits returned are those of the averaged
        probabilities) over the ensemble's networks and, with test-time augmentation in eval mode, over the pair,
        its four 1-pixel shifts and the variant's fixed warps. ``tta`` overrides the variant's setting.
        """
        views = self.views(tta)
        if views > 1:  # E×B×2×14×14 → E×(V·B)×2×14×14, view-major: one gather makes every view
            pairs = take_views(pairs.flatten(-2), self.view_index, self.view_weight)
            pairs = pairs.unflatten(-1, (views, INPUT_SIZE, INPUT_SIZE))
            pairs = pairs.movedim(3, 1).flatten(1, 2)  # E×B×2×V×… → E×V×B×2×…
        ensemble = self.variant.ensemble
        logits, digits = self.single_view(pairs.repeat_interleave(ensemble, dim=0) if ensemble > 1 else pairs)
        if views * ensemble == 1:
            return logits, digits

        def log_mean(log_p: torch.Tensor) -> torch.Tensor:
            """Networks×(views·B)×… → members×B×…: the log of the mean probability over networks and views."""
            grouped = log_p.unflatten(1, (views, -1)).unflatten(0, (-1, ensemble)).flatten(1, 2)
            return torch.logsumexp(grouped, dim=1) - math.log(views * ensemble)

        log_le, log_gt = log_mean(F.logsigmoid(logits)), log_mean(F.logsigmoid(-logits))
        return log_le - log_gt, log_mean(F.log_softmax(digits, dim=-1))

    def views(self, tta: bool | None = None) -> int:
        """How many views of each pair ``forward`` averages: 5 + warps with test-time averaging in eval mode, else 1."""
        on = self.variant.tta if tta is None else tta
        return len(TTA_SHIFTS) + self.variant.tta_warps if on and not self.training else 1

    def single_view(self, pairs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every network's own outputs for its own pairs (E·K networks × B pairs), no averaging."""
        x = (pairs - MNIST_MEAN) / MNIST_STD
        first, second = x[:, :, 0], x[:, :, 1]
        if self.variant.weight_sharing:
            both = self.tower_a(torch.cat([first, second], dim=1))
            digits_a, digits_b = both.chunk(2, dim=1)
        else:
            digits_a, digits_b = self.tower_a(first), self.tower_b(second)
        digits = torch.stack([digits_a, digits_b], dim=2)
        if isinstance(self.head, StructuredHead):
            return self.head(digits), digits
        return self.head(digits.flatten(2)).squeeze(-1), digits


class StructuredHead(nn.Module):
    """Exact comparison from the digit distributions: logit of P(first ≤ second) = Σ_{i≤j} p₁(i)·p₂(j).

    Computed in log space (log-sum-exp over the 55 cells i ≤ j and the 45 cells i > j) so it stays finite
    when the towers are confident.
    """

    def __init__(self) -> None:
        super().__init__()
        upper = torch.ones(10, 10).triu().bool()
        self.register_buffer("mask_le", torch.where(upper, 0.0, -math.inf).flatten(), persistent=False)
        self.register_buffer("mask_gt", torch.where(upper, -math.inf, 0.0).flatten(), persistent=False)

    def forward(self, digits: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(digits, dim=-1)
        joint = (log_p[..., 0, :, None] + log_p[..., 1, None, :]).flatten(-2)
        return torch.logsumexp(joint + self.mask_le, -1) - torch.logsumexp(joint + self.mask_gt, -1)


def count_parameters(model: ComparisonNet) -> int:
    """Trainable parameters of one member, all its ensemble's networks (shared towers counted once)."""
    return sum(p.numel() for p in model.parameters()) // model.members


def all_pairs_logits(digits: torch.Tensor) -> torch.Tensor:
    """Digit logits E×N×10 → the structured head's comparison logit for every ordered pair, E×N×N: entry (i, j)
    is the logit of P(digit i ≤ digit j) = Σ_a p_i(a)·P(digit j ≥ a), in log space like ``StructuredHead``.

    The same quantity as ``StructuredHead`` (tests/test_models.py checks it pair by pair), summed through the
    cumulative distribution instead of the 10×10 joint table: over the (2B)² pairs of a training batch that table
    would be 10× larger and sit in every step's backward pass. The head keeps its table form, which the exported
    graphs are built from."""
    log_p = F.log_softmax(digits, dim=-1)
    log_ge = log_p.flip(-1).logcumsumexp(-1).flip(-1)  # log P(d ≥ a)
    log_lt = F.pad(log_p.logcumsumexp(-1)[..., :-1], (1, 0), value=-math.inf)  # log P(d < a); P(d < 0) = 0
    log_le = (log_p[:, :, None] + log_ge[:, None]).logsumexp(-1)
    log_gt = (log_p[:, :, None] + log_lt[:, None]).logsumexp(-1)
    return log_le - log_gt


def comparison_loss(
    logits: torch.Tensor,
    digits: torch.Tensor,
    targets: torch.Tensor,
    classes: torch.Tensor,
    aux_weight: float,
    label_smoothing: float = 0.0,
    all_pairs: bool = False,
) -> torch.Tensor:
    """Per-member loss E: (main + w·aux) / (1 + w), main = BCE on the comparison logit, aux = CE(digit 1) + CE(digit 2).

    Dividing by 1 + w keeps the loss scale comparable across auxiliary weights. ``label_smoothing`` softens the
    digit targets only (it reads digits better but miscalibrates the structured head: docs/results.md).
    ``all_pairs`` takes the main BCE over every ordered pair of the batch's 2B digits (the structured head's
    logit, targets from the digit classes), not only the B drawn pairs: each digit meets the whole batch, so the
    loss weighs each digit's confusions by how many comparisons they would flip (docs/results.md, session 10).
    """
    if all_pairs:
        codes = classes.expand(digits.shape[:3]).flatten(1)  # E×2B
        pair_logits = all_pairs_logits(digits.flatten(1, 2))
        pair_targets = (codes[:, :, None] <= codes[:, None, :]).to(pair_logits.dtype)
        bce = F.binary_cross_entropy_with_logits(pair_logits, pair_targets, reduction="none")
        n = codes.shape[1]
        main = (bce.sum((1, 2)) - bce.diagonal(dim1=1, dim2=2).sum(-1)) / (n * (n - 1))  # a digit is no pair
    else:
        main = F.binary_cross_entropy_with_logits(logits, targets.expand_as(logits), reduction="none").mean(-1)
    if aux_weight == 0:
        return main
    aux = F.cross_entropy(
        digits.flatten(0, 2),
        classes.expand(digits.shape[:3]).flatten(),
        reduction="none",
        label_smoothing=label_smoothing,
    )
    aux = aux.view(digits.shape[:3]).mean(1).sum(-1)
    return (main + aux_weight * aux) / (1 + aux_weight)


def member_state(model: ComparisonNet, member: int) -> dict[str, torch.Tensor]:
    """The state dict of one member (its ensemble's networks), loadable into a ``members=1`` model of the same
    variant."""
    k = model.variant.ensemble
    return {key: value[member * k : (member + 1) * k].clone() for key, value in model.state_dict().items()}


CHECKPOINT_FORMAT = "digitcmp-checkpoint/1"


def save_checkpoint(path: Path, state: dict[str, torch.Tensor], variant: Variant, meta: dict) -> Path:
    """Save one model's weights with everything needed to rebuild it without the CLI (atomically)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "variant": variant.to_dict(),
        "state_dict": {key: value.detach().cpu() for key, value in state.items()},
        "meta": meta,
    }
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: Path) -> tuple[ComparisonNet, dict]:
    """Rebuild the model saved by ``save_checkpoint`` (no arbitrary unpickling: ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise DigitcmpError(f"checkpoint {path} does not exist; train one with 'digitcmp train' or 'digitcmp bench'")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError... for damaged files
        raise DigitcmpError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}); it is damaged or not one"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise DigitcmpError(f"{path} is not a digitcmp checkpoint (expected format {CHECKPOINT_FORMAT})")
    model = ComparisonNet(Variant.from_dict(payload["variant"]))
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError:
        raise DigitcmpError(f"checkpoint {path} holds weights that do not fit its variant; it is damaged") from None
    return model.eval(), payload["meta"]
