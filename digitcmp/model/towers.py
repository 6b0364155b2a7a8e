"""Tower builders, named by the registry (``digitcmp.archs``): ``(members, variant)`` → a module mapping digits
E×B×14×14 to digit logits E×B×10, built from the variant's channels, hidden layers, activation, dropout rate and
batch normalisation. Each builder places dropout and batch normalisation where its design has them."""

from __future__ import annotations

from torch import nn

from ..variant import Variant
from .layers import (
    ImagesToMaps,
    ImagesToVectors,
    MapsToVectors,
    MemberBatchNorm1d,
    MemberBatchNorm2d,
    MemberConv2d,
    MemberDropout,
    MemberLinear,
)

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "selu": nn.SELU}


def activation(variant: Variant) -> nn.Module:
    return ACTIVATIONS[variant.activation]()


def dense(members: int, fan_in: int, variant: Variant, *, norm: bool, dropout_from: int | None) -> list[nn.Module]:
    """The hidden layers (linear, batch norm if ``norm``, activation) and the 10-way output layer; dropout before
    every linear layer from index ``dropout_from`` on (None: no dropout here)."""
    layers: list[nn.Module] = []
    for index, fan_out in enumerate((*variant.hidden, 10)):
        if dropout_from is not None and index >= dropout_from and variant.dropout:
            layers.append(MemberDropout(members, variant.dropout, maps=False))
        layers.append(MemberLinear(members, fan_in, fan_out))
        if index < len(variant.hidden):
            layers += [MemberBatchNorm1d(members, fan_out)] if norm else []
            layers.append(activation(variant))
        fan_in = fan_out
    return layers


def fully_connected(members: int, variant: Variant) -> nn.Module:
    """shallow-fc and deep-fc: 196 pixels → hidden layers (batch norm before the activation, dropout after it)."""
    return nn.Sequential(ImagesToVectors(), *dense(members, 196, variant, norm=variant.batch_norm, dropout_from=1))


def lenet(members: int, variant: Variant) -> nn.Module:
    """Two stages of unpadded 3×3 convolution (batch norm), 2×2 max-pool and activation: 14 → 12 → 6 → 4 → 2;
    dropout before the fully connected layers."""
    layers: list[nn.Module] = [ImagesToMaps()]
    for channels_in, channels_out in zip((1, *variant.channels), variant.channels, strict=False):
        layers.append(MemberConv2d(members, channels_in, channels_out))
        layers += [MemberBatchNorm2d(members, channels_out)] if variant.batch_norm else []
        layers += [nn.MaxPool2d(2), activation(variant)]
    features = variant.channels[-1] * 2 * 2
    return nn.Sequential(
        *layers, MapsToVectors(members), *dense(members, features, variant, norm=False, dropout_from=0)
    )


def conv6(members: int, variant: Variant) -> nn.Module:
    """Six blocks of unpadded 3×3 convolution, batch norm, activation and dropout: 14 → 2."""
    layers: list[nn.Module] = [ImagesToMaps()]
    for channels_in, channels_out in zip((1, *variant.channels), variant.channels, strict=False):
        layers.append(MemberConv2d(members, channels_in, channels_out))
        layers += [MemberBatchNorm2d(members, channels_out)] if variant.batch_norm else []
        layers.append(activation(variant))
        layers += [MemberDropout(members, variant.dropout, maps=True)] if variant.dropout else []
    features = variant.channels[-1] * 2 * 2
    return nn.Sequential(
        *layers, MapsToVectors(members), *dense(members, features, variant, norm=False, dropout_from=None)
    )


def vgg4(members: int, variant: Variant) -> nn.Module:
    """Two stages of two padded 3×3 convolutions (batch norm, activation) and a 2×2 max-pool: 14 → 7 → 3;
    dropout before the fully connected layers."""
    layers: list[nn.Module] = [ImagesToMaps()]
    for index, (channels_in, channels_out) in enumerate(zip((1, *variant.channels), variant.channels, strict=False)):
        layers.append(MemberConv2d(members, channels_in, channels_out, padding=1))
        layers += [MemberBatchNorm2d(members, channels_out)] if variant.batch_norm else []
        layers.append(activation(variant))
        if index % 2 == 1:  # end of a stage
            layers.append(nn.MaxPool2d(2))
    features = variant.channels[-1] * 3 * 3
    return nn.Sequential(
        *layers, MapsToVectors(members), *dense(members, features, variant, norm=False, dropout_from=0)
    )
