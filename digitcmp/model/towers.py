"""Tower builders, named by the registry (``digitcmp.archs``): ``(members, variant)`` → a ``Tower`` mapping digits
E×B×S×S (S: the variant's input side, 14 or 28) to digit logits E×B×10, built from the variant's channels, hidden
layers, activation, dropout rate and batch normalisation; or, for architectures that read both digits together, a
``JointTower``. Each builder places dropout and batch normalisation where its design has them."""

from __future__ import annotations

import torch
from torch import nn

from ..variant import Activation, Variant
from .layers import (
    ImagesToMaps,
    ImagesToVectors,
    MapsToVectors,
    MemberBatchNorm1d,
    MemberBatchNorm2d,
    MemberConv2d,
    MemberDropout,
    MemberLinear,
    PairsToMaps,
)

ACTIVATION_LAYERS: dict[Activation, type[nn.Module]] = {
    Activation.relu: nn.ReLU,
    Activation.tanh: nn.Tanh,
    Activation.sigmoid: nn.Sigmoid,
    Activation.selu: nn.SELU,
}
JOINT_HEAD_DROPOUT = 0.5  # the joint network's three heads drop half their hidden units (its report's design)


class Tower(nn.Sequential):
    """A digit tower: a feature trunk (its first ``split`` layers, ``feature_size`` wide) and the digit classifier
    after it. The comparison head may read either the digit logits or the features."""

    def __init__(self, *layers: nn.Module, split: int, feature_size: int) -> None:
        super().__init__(*layers)
        self.split, self.feature_size = split, feature_size

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for layer in list(self)[: self.split]:
            x = layer(x)
        return x

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        for layer in list(self)[self.split :]:
            features = layer(features)
        return features


class JointTower(nn.Module):
    """A network without towers: one trunk reads both digits as the two channels of one image, and three heads on
    its features give the comparison logit(s) and each digit's logits."""

    def __init__(self, trunk: nn.Module, comparison: nn.Module, first: nn.Module, second: nn.Module) -> None:
        super().__init__()
        self.trunk, self.comparison, self.first, self.second = trunk, comparison, first, second

    def forward(self, pairs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pairs E×B×2×14×14 → (comparison outputs E×B×classes, digit logits E×B×2×10)."""
        features = self.trunk(pairs)
        return self.comparison(features), torch.stack([self.first(features), self.second(features)], dim=2)


def activation(variant: Variant) -> nn.Module:
    return ACTIVATION_LAYERS[variant.activation]()


def dense(
    members: int,
    fan_in: int,
    variant: Variant,
    *,
    norm: bool,
    dropout_from: int | None,
    hidden: tuple[int, ...] | None = None,
    outputs: int = 10,
    dropout: float | None = None,
) -> list[nn.Module]:
    """Hidden layers (linear, batch norm if ``norm``, activation) and an output layer (10 digit logits by default);
    dropout before every linear layer from index ``dropout_from`` on (None: no dropout here)."""
    hidden = variant.hidden if hidden is None else hidden
    rate = variant.dropout if dropout is None else dropout
    layers: list[nn.Module] = []
    for index, fan_out in enumerate((*hidden, outputs)):
        if dropout_from is not None and index >= dropout_from and rate:
            layers.append(MemberDropout(members, rate, maps=False))
        layers.append(MemberLinear(members, fan_in, fan_out))
        if index < len(hidden):
            layers += [MemberBatchNorm1d(members, fan_out)] if norm else []
            layers.append(activation(variant))
        fan_in = fan_out
    return layers


def flat_features(trunk: list[nn.Module], example: torch.Tensor) -> int:
    """Features per network at the end of a trunk that ends in ``MapsToVectors``, found by passing a zero input
    of the variant's side through it (in eval mode, so batch norm needs no batch): each tower's sizes (14 → 7 → 3,
    28 → 14 → 7, …) follow from its layers, never written out twice."""
    probe = nn.Sequential(*trunk).eval()
    with torch.no_grad():
        features = probe(example).shape[-1]
    probe.train()
    return features


def with_classifier(members: int, trunk: list[nn.Module], variant: Variant, **dense_options) -> Tower:
    """A conv tower: its trunk up to the flattened maps, then the fully connected digit classifier."""
    trunk = [*trunk, MapsToVectors(members)]
    size = variant.resolution.size
    features = flat_features(trunk, torch.zeros(members, 1, size, size))
    return Tower(*trunk, *dense(members, features, variant, **dense_options), split=len(trunk), feature_size=features)


def fully_connected(members: int, variant: Variant) -> Tower:
    """shallow-fc and deep-fc: the pixels (196 at 14×14) → hidden layers (batch norm before the activation, dropout
    after it). Their features are the last hidden layer's activations (the pixels themselves without hidden layers)."""
    pixels = variant.resolution.size**2
    layers = [ImagesToVectors(), *dense(members, pixels, variant, norm=variant.batch_norm, dropout_from=1)]
    split = len(layers) - (2 if variant.dropout and variant.hidden else 1)  # before the last dropout and linear
    return Tower(*layers, split=split, feature_size=variant.hidden[-1] if variant.hidden else pixels)


def lenet(members: int, variant: Variant) -> Tower:
    """Two stages of unpadded 3×3 convolution (batch norm), 2×2 max-pool and activation: 14 → 12 → 6 → 4 → 2;
    dropout before the fully connected layers."""
    layers: list[nn.Module] = [ImagesToMaps()]
    for channels_in, channels_out in zip((1, *variant.channels), variant.channels, strict=False):
        layers.append(MemberConv2d(members, channels_in, channels_out))
        layers += [MemberBatchNorm2d(members, channels_out)] if variant.batch_norm else []
        layers += [nn.MaxPool2d(2), activation(variant)]
    return with_classifier(members, layers, variant, norm=False, dropout_from=0)


def conv_blocks(members: int, variant: Variant, channels_in: int) -> list[nn.Module]:
    """conv6's blocks: unpadded 3×3 convolution, batch norm, activation and dropout on the maps, 14 → 2."""
    layers: list[nn.Module] = []
    for previous, channels_out in zip((channels_in, *variant.channels), variant.channels, strict=False):
        layers.append(MemberConv2d(members, previous, channels_out))
        layers += [MemberBatchNorm2d(members, channels_out)] if variant.batch_norm else []
        layers.append(activation(variant))
        layers += [MemberDropout(members, variant.dropout, maps=True)] if variant.dropout else []
    return layers


def conv6(members: int, variant: Variant) -> Tower:
    """Six blocks of unpadded 3×3 convolution, batch norm, activation and dropout: 14 → 2."""
    layers = [ImagesToMaps(), *conv_blocks(members, variant, 1)]
    return with_classifier(members, layers, variant, norm=False, dropout_from=None)


def vgg4(members: int, variant: Variant) -> Tower:
    """Two stages of two padded 3×3 convolutions (batch norm, activation) and a 2×2 max-pool: 14 → 7 → 3;
    dropout before the fully connected layers."""
    layers: list[nn.Module] = [ImagesToMaps()]
    for index, (channels_in, channels_out) in enumerate(zip((1, *variant.channels), variant.channels, strict=False)):
        layers.append(MemberConv2d(members, channels_in, channels_out, padding=1))
        layers += [MemberBatchNorm2d(members, channels_out)] if variant.batch_norm else []
        layers.append(activation(variant))
        if index % 2 == 1:  # end of a stage
            layers.append(nn.MaxPool2d(2))
    return with_classifier(members, layers, variant, norm=False, dropout_from=0)


def strided_cnn(members: int, variant: Variant) -> Tower:
    """Two stages of a 3×3 convolution with stride 2 and padding 2, activation and a 3×3 max-pool with stride 2:
    14 → 8 → 3 → 3 → 1; then the fully connected layers."""
    layers: list[nn.Module] = [ImagesToMaps()]
    for channels_in, channels_out in zip((1, *variant.channels), variant.channels, strict=False):
        layers.append(MemberConv2d(members, channels_in, channels_out, padding=2, stride=2))
        layers += [MemberBatchNorm2d(members, channels_out)] if variant.batch_norm else []
        layers += [activation(variant), nn.MaxPool2d(3, 2)]
    return with_classifier(members, layers, variant, norm=False, dropout_from=0)


def convnet3(members: int, variant: Variant) -> Tower:
    """Three unpadded convolutions (3×3, 3×3, 2×2), the first two followed by activation and a 2×2 max-pool:
    14 → 12 → 6 → 4 → 2 → 1; the features are the last convolution's channels."""
    layers: list[nn.Module] = [ImagesToMaps()]
    pairs = zip((1, *variant.channels), variant.channels, (3, 3, 2), strict=False)
    for index, (channels_in, channels_out, kernel) in enumerate(pairs):
        layers.append(MemberConv2d(members, channels_in, channels_out, kernel=kernel))
        layers += [MemberBatchNorm2d(members, channels_out)] if variant.batch_norm else []
        layers.append(activation(variant))
        layers += [nn.MaxPool2d(2)] if index < 2 else []
    return with_classifier(members, layers, variant, norm=False, dropout_from=0)


def joint_conv6(members: int, variant: Variant) -> JointTower:
    """conv6's blocks on both digits at once (two input channels), then three heads on the shared features, each
    a hidden layer (activation, dropout of 0.5) and an output: the comparison, the first digit, the second."""
    layers = [PairsToMaps(), *conv_blocks(members, variant, 2), MapsToVectors(members)]
    size = variant.resolution.size
    features = flat_features(layers, torch.zeros(members, 1, 2, size, size))
    trunk = nn.Sequential(*layers)

    def head(outputs: int) -> nn.Sequential:
        layers = dense(members, features, variant, norm=False, dropout_from=1, outputs=outputs,
                       dropout=JOINT_HEAD_DROPOUT)  # fmt: skip
        return nn.Sequential(*layers)

    return JointTower(trunk, head(variant.head_classes), head(10), head(10))
