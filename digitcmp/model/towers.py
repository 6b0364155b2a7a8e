"""Tower builders, one per registered architecture (``digitcmp.archs`` names them): ``(members, width)`` → a
module mapping digits E×B×14×14 to digit logits E×B×10."""

from __future__ import annotations

import itertools

from torch import nn

from .layers import (
    ImagesToMaps,
    ImagesToVectors,
    MapsToVectors,
    MemberBatchNorm2d,
    MemberConv2d,
    MemberDropout,
    MemberLinear,
)


def shallow_fc(members: int, width: int | None = None) -> nn.Module:
    return nn.Sequential(ImagesToVectors(), MemberLinear(members, 196, 500), nn.ReLU(), MemberLinear(members, 500, 10))


def deep_fc(members: int, width: int | None = None) -> nn.Module:
    sizes = (196, 256, 128, 64)
    layers: list[nn.Module] = [ImagesToVectors()]
    for fan_in, fan_out in itertools.pairwise(sizes):
        layers += [MemberLinear(members, fan_in, fan_out), nn.ReLU()]
    return nn.Sequential(*layers, MemberLinear(members, sizes[-1], 10))


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


def conv6(members: int, width: int) -> nn.Module:
    layers: list[nn.Module] = [ImagesToMaps()]
    for block in range(6):
        layers += [
            MemberConv2d(members, 1 if block == 0 else width, width),
            MemberBatchNorm2d(members, width),
            nn.ReLU(),
            MemberDropout(members, 0.1, maps=True),
        ]
    return nn.Sequential(*layers, MapsToVectors(members), MemberLinear(members, width * 4, 10))


def vgg4(members: int, width: int) -> nn.Module:
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
        MemberDropout(members, 0.3, maps=False),
        MemberLinear(members, 2 * width * 9, 128),
        nn.ReLU(),
        MemberDropout(members, 0.3, maps=False),
        MemberLinear(members, 128, 10),
    )
