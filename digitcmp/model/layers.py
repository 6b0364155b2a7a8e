"""Batched layers: each holds ``members`` independent copies of its parameters along a leading axis.

Towers use two layouts: "maps" B×(E·C)×H×W for convolutions (one grouped convolution computes every member) and
"vectors" E×B×F for fully connected layers (one batched matrix product). Member m of a layer computes exactly
what a lone layer with member m's parameters would, and draws its initial parameters and dropout masks from its
own generator, so a member is the same whichever others share the model (digitcmp.rng).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def uniform_per_member(parameters: tuple[nn.Parameter, ...], bound: float, generators: list[torch.Generator]) -> None:
    """Fill each member's slice of the parameters from its own generator (member by member, parameter by
    parameter), with torch's default initialisation U(−bound, bound) for linear and convolution layers."""
    for member, generator in enumerate(generators):
        for parameter in parameters:
            parameter[member].uniform_(-bound, bound, generator=generator)


class MemberLinear(nn.Module):
    """A fully connected layer per member: E×B×F_in → E×B×F_out."""

    def __init__(self, members: int, fan_in: int, fan_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, fan_in, fan_out))
        self.bias = nn.Parameter(torch.empty(members, 1, fan_out))

    def initialise(self, generators: list[torch.Generator]) -> None:
        uniform_per_member((self.weight, self.bias), 1 / math.sqrt(self.weight.shape[1]), generators)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class MemberConv2d(nn.Module):
    """A square convolution per member, as one grouped convolution over maps B×(E·C)×H×W."""

    def __init__(
        self, members: int, channels_in: int, channels_out: int, kernel: int = 3, padding: int = 0, stride: int = 1
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, channels_out, channels_in, kernel, kernel))
        self.bias = nn.Parameter(torch.empty(members, channels_out))
        self.padding, self.stride = padding, stride

    def initialise(self, generators: list[torch.Generator]) -> None:
        fan_in = self.weight[0, 0].numel()  # channels_in × kernel²
        uniform_per_member((self.weight, self.bias), 1 / math.sqrt(fan_in), generators)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        members = self.weight.shape[0]
        weight, bias = self.weight.flatten(0, 1), self.bias.flatten()
        return F.conv2d(x, weight, bias, stride=self.stride, padding=self.padding, groups=members)


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


class MemberBatchNorm1d(MemberBatchNorm2d):
    """Batch normalisation per member and feature over vectors E×B×F (statistics over each member's B rows)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        members, batch, features = x.shape
        maps = x.transpose(0, 1).reshape(batch, members * features)  # B×(E·F): one "channel" per member feature
        return super().forward(maps).view(batch, members, features).transpose(0, 1)


class MemberDropout(nn.Module):
    """Dropout whose masks each member draws from its own generator (set by the network for training; without
    one, torch's global generator), on maps B×(E·C)×H×W or vectors E×B×F."""

    def __init__(self, members: int, p: float, maps: bool) -> None:
        super().__init__()
        self.members, self.p, self.maps = members, p, maps
        self.generators: list[torch.Generator] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        generators = self.generators or [None] * self.members
        if self.maps:  # per member B×H×W×C, side by side along channels: a channels-last view of B×(E·C)×H×W
            batch, channels, height, width = x.shape
            shape = (batch, height, width, channels // self.members)
            masks = [torch.empty(shape).bernoulli_(1 - self.p, generator=g) for g in generators]
            mask = torch.cat(masks, dim=-1).permute(0, 3, 1, 2)
        else:
            mask = torch.stack([torch.empty(x.shape[1:]).bernoulli_(1 - self.p, generator=g) for g in generators])
        return x * mask.to(x.device, x.dtype) / (1 - self.p)


class ImagesToMaps(nn.Module):
    """Digits E×B×14×14 → maps B×E×14×14 (one channel per member), channels-last.

    Channels-last lets the CPU's convolution and pooling kernels vectorise over the E·C channels: on 2 cores it
    more than halves lenet's step time (docs/performance.md).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(0, 1).contiguous(memory_format=torch.channels_last)


class PairsToMaps(nn.Module):
    """Pairs E×B×2×14×14 → maps B×(E·2)×14×14 (each member's two digits as two channels of one image),
    channels-last: for networks that read both digits together."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(0, 1).flatten(1, 2).contiguous(memory_format=torch.channels_last)


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
