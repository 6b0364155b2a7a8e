"""The comparison network: two digit towers (one shared tower with weight sharing) and a comparison head.

Shapes: a model takes pairs E×B×2×14×14 (E members, B pairs each) of pooled digits in [0, 1] and returns the
comparison logit E×B and the digit logits E×B×2×10 (``single_view`` works on all E·K networks of an ensemble of K
instead). Every variant has this one signature; the auxiliary loss changes only the training loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..archs import get_arch
from ..augment import TTA_SHIFTS, take_views, tta_views
from ..preprocess import MNIST_MEAN, MNIST_STD
from ..variant import Variant
from .layers import MemberConv2d, MemberDropout, MemberLinear
from .towers import JointTower, activation


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


class ComparisonNet(nn.Module):
    """Two digit towers and a head comparing their 10-way outputs, for ``members`` models at once.

    The input is normalised inside the model, so exported graphs take raw pooled digits in [0, 1]. Each member is
    an ensemble of ``variant.ensemble`` networks (usually one), stored member-major.
    """

    def __init__(self, variant: Variant, members: int = 1, generators: list[torch.Generator] | None = None) -> None:
        """``generators``: one per network (members × ensemble), for its initial parameters; torch's global
        generator without them."""
        super().__init__()
        self.variant = variant
        self.members = members
        self.networks = networks = members * variant.ensemble
        spec = get_arch(variant.arch)
        build_tower = spec.build_tower()
        self.tower_a = build_tower(networks, variant)
        # Weight sharing is the same module object, so its parameters exist (and are counted) once; an architecture
        # that reads both digits together has one network and no towers to share.
        self.tower_b = self.tower_a if variant.weight_sharing or spec.joint else build_tower(networks, variant)
        if spec.joint or variant.head == "structured":
            self.head: nn.Module | None = None if spec.joint else StructuredHead()
        else:  # a learned head on both digits' logits, probabilities or features → hidden layer → class scores
            inputs = 2 * self.tower_a.feature_size if variant.head == "features" else 20
            width, classes = variant.head_width, variant.head_classes
            layers = [MemberLinear(networks, inputs, width), activation(variant)] if width else []
            self.head = nn.Sequential(*layers, MemberLinear(networks, width or inputs, classes))
        self.initialise(generators or [torch.default_generator] * networks)
        # Derived from the variant, not learned: rebuilt with the model, never saved in checkpoints.
        view_index, view_weight = tta_views(variant.tta_warps, variant.resolution.size)
        self.register_buffer("view_index", view_index, persistent=False)
        self.register_buffer("view_weight", view_weight, persistent=False)

    def initialise(self, generators: list[torch.Generator]) -> None:
        """Draw every network's initial parameters from its own generator, layer by layer in a fixed order."""
        for module in self.modules():
            if isinstance(module, (MemberLinear, MemberConv2d)):
                module.initialise(generators)

    def use_dropout_generators(self, generators: list[torch.Generator] | None) -> None:
        """Make every dropout layer draw each network's masks from that network's generator."""
        for module in self.modules():
            if isinstance(module, MemberDropout):
                module.generators = generators

    def forward(self, pairs: torch.Tensor, tta: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Pairs E×B×2×S×S → (comparison logit E×B, digit logits E×B×2×10), one model per member.

        The probabilities are averaged (in log space; the logits returned are those of the averaged
        probabilities) over the ensemble's networks and, with test-time augmentation in eval mode, over the pair,
        its four 1-pixel shifts and the variant's fixed warps. ``tta`` overrides the variant's setting.
        """
        views = self.views(tta)
        if views > 1:  # E×B×2×S×S → E×(V·B)×2×S×S, view-major: one gather makes every view
            pairs = take_views(pairs.flatten(-2), self.view_index, self.view_weight)
            pairs = pairs.unflatten(-1, (views, self.size, self.size))
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

    @property
    def size(self) -> int:
        """The side of the digits it reads: 14 (pooled) or 28 (full resolution)."""
        return self.variant.resolution.size

    def views(self, tta: bool | None = None) -> int:
        """How many views of each pair ``forward`` averages: 5 + warps with test-time averaging in eval mode, else 1."""
        on = self.variant.tta if tta is None else tta
        return len(TTA_SHIFTS) + self.variant.tta_warps if on and not self.training else 1

    def single_view(self, pairs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every network's own outputs for its own pairs (E·K networks × B pairs), no averaging."""
        x = (pairs - MNIST_MEAN) / MNIST_STD
        if isinstance(self.tower_a, JointTower):
            scores, digits = self.tower_a(x)
            return comparison_logit(scores), digits
        first, second = x[:, :, 0], x[:, :, 1]
        if self.variant.weight_sharing:  # both digits through the one tower as one batch
            features = self.tower_a.features(torch.cat([first, second], dim=1))
            digits_a, digits_b = self.tower_a.classify(features).chunk(2, dim=1)
            features_a, features_b = features.chunk(2, dim=1)
        else:
            features_a, features_b = self.tower_a.features(first), self.tower_b.features(second)
            digits_a, digits_b = self.tower_a.classify(features_a), self.tower_b.classify(features_b)
        digits = torch.stack([digits_a, digits_b], dim=2)
        if isinstance(self.head, StructuredHead):
            return self.head(digits), digits
        inputs = {
            "mlp": lambda: digits.flatten(2),
            "probs": lambda: digits.softmax(-1).flatten(2),
            "features": lambda: torch.cat([features_a, features_b], dim=-1),
        }[self.variant.head]()
        return comparison_logit(self.head(inputs)), digits


def comparison_logit(scores: torch.Tensor) -> torch.Tensor:
    """A head's outputs …×1 (the logit) or …×2 (two class scores, as a softmax classifier: their difference is the
    logit of 'first ≤ second', so the binary cross-entropy on it is the two-class cross-entropy) → the logit."""
    return scores[..., 0] if scores.shape[-1] == 1 else scores[..., 1] - scores[..., 0]


def count_parameters(model: ComparisonNet) -> int:
    """Trainable parameters of one member, all its ensemble's networks (shared towers counted once)."""
    return sum(p.numel() for p in model.parameters()) // model.members


def member_state(model: ComparisonNet, member: int) -> dict[str, torch.Tensor]:
    """The state dict of one member (its ensemble's networks), loadable into a ``members=1`` model of the same
    variant."""
    k = model.variant.ensemble
    return {key: value[member * k : (member + 1) * k].clone() for key, value in model.state_dict().items()}
