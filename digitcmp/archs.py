"""The architecture registry: one entry per architecture, from its name to its tower builder and defaults.

This module imports no torch, so that ``digitcmp list`` and the CLI's choices work in a predict-only install; the
builder is named by its function in ``digitcmp.model.towers`` and imported only when a model is built.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .errors import lookup

TOWERS_MODULE = "digitcmp.model.towers"


@dataclass(frozen=True)
class ArchSpec:
    """A registered architecture: what it is, how to build its tower, and the variant options it defaults to."""

    name: str
    description: str
    builder: str  # function name in digitcmp.model.towers: (members, variant) -> nn.Module
    channels: tuple[int, ...] = ()  # output channels of each convolution layer; () for fully connected towers
    hidden: tuple[int, ...] = ()  # widths of the hidden fully connected layers
    dropout: float = 0.0  # the towers' dropout rate (where the architecture places dropout: docs/models.md)
    batch_norm: bool = False  # batch normalisation (convolutions of conv towers, hidden layers of FC towers)
    head: str = "mlp"
    head_width: int = 64  # hidden units of a learned comparison head (0: a single linear layer)
    head_classes: int = 1  # its outputs: 1 logit, or 2 class scores whose difference is the logit
    joint: bool = False  # reads both digits as two channels of one image: no towers, so no weight sharing
    study: bool = True  # part of the study that bench runs by default (the others serve the reports' presets)
    tta: bool = False
    tta_warps: int = 0  # fixed elastic warps among the test-time views
    ensemble: int = 1
    params: tuple[int, int] = (0, 0)  # parameters at the defaults, with / without weight sharing (tests check);
    # a joint architecture has one network, so both are the same
    recipe: Mapping[str, object] = field(default_factory=dict)  # TrainConfig fields where they differ from the
    # reports' protocol
    quick_epochs: int | None = None  # bench --quick: the fewest epochs after which the architecture's row ranks the
    # techniques as the full study does (docs/bench.md); None: its full epochs

    def build_tower(self) -> Callable:
        """The tower builder, imported on first use (it needs torch)."""
        return getattr(importlib.import_module(TOWERS_MODULE), self.builder)

    def scaled_channels(self, first: int) -> tuple[int, ...]:
        """The default channels scaled so that the first layer has ``first``: ``--channels 8`` for vgg4 is
        8, 8, 16, 16."""
        return tuple(max(1, round(c * first / self.channels[0])) for c in self.channels)


ARCHS: dict[str, ArchSpec] = {
    spec.name: spec
    for spec in (
        ArchSpec(
            "shallow-fc",
            "one hidden layer of 500 units (196-500-10)",
            "fully_connected",
            hidden=(500,),
            params=(104_919, 208_429),
            quick_epochs=25,
        ),
        ArchSpec(
            "deep-fc",
            "three decreasing hidden layers (196-256-128-64-10)",
            "fully_connected",
            hidden=(256, 128, 64),
            params=(93_643, 185_877),
            quick_epochs=25,
        ),
        ArchSpec(
            "lenet",
            "LeNet-style: two 3×3 conv + max-pool stages (32, 64 channels), then 256-200-10",
            "lenet",
            channels=(32, 64),
            hidden=(200,),
            params=(73_635, 145_861),
            quick_epochs=25,
        ),
        ArchSpec(
            "conv6",
            "six blocks of unpadded 3×3 conv (32 channels), BatchNorm, ReLU, dropout 0.1 → 32×2×2 → 10",
            "conv6",
            channels=(32,) * 6,
            dropout=0.1,
            batch_norm=True,
            params=(49_643, 97_877),
            quick_epochs=10,
        ),
        ArchSpec(
            "vgg4",
            "VGG-style: two stages of two padded 3×3 conv + BatchNorm + ReLU (16, 32 channels) and a max-pool, "
            "dropout 0.3 → 128 → 10",
            "vgg4",
            channels=(16, 16, 32, 32),
            hidden=(128,),
            dropout=0.3,
            batch_norm=True,
            head="structured",
            tta=True,
            tta_warps=32,
            params=(54_842, 109_684),
            # chosen on the bundled-only protocol, never on the MNIST test set (docs/results.md)
            recipe={
                "epochs": 60,
                "lr": 5e-3,
                "optimizer": "adamw",
                "weight_decay": 5e-4,
                "schedule": "onecycle",
                "shift": 2,
                "elastic": 0.5,
                "swap": True,
            },
            quick_epochs=3,
        ),
        ArchSpec(
            "strided-cnn",
            "two 3×3 conv with stride 2 and padding 2 (64, 96 channels), each with a 3×3 max-pool of stride 2, "
            "→ 150 → 10; comparison 20 → 20 → 2 classes",
            "strided_cnn",
            study=False,
            channels=(64, 96),
            hidden=(150,),
            head_width=20,
            head_classes=2,
            params=(72_554, 144_646),
        ),
        ArchSpec(
            "convnet3",
            "three unpadded conv (3×3, 3×3, 2×2; 32, 64, 32 channels), max-pools after the first two, → 32 "
            "features; digits 32 → 128 → 10; comparison on both digits' features 64 → 512 → 1",
            "convnet3",
            study=False,
            channels=(32, 64, 32),
            hidden=(128,),
            head="features",
            head_width=512,
            params=(66_347, 98_901),
        ),
        ArchSpec(
            "joint-conv6",
            "no towers: six blocks of unpadded 3×3 conv, BatchNorm, ReLU, dropout 0.1 on both digits as two "
            "channels (32 each), then three heads 128 → 20 → dropout 0.5 → comparison, first digit, second digit",
            "joint_conv6",
            study=False,
            channels=(32,) * 6,
            hidden=(20,),
            dropout=0.1,
            batch_norm=True,
            head="features",
            joint=True,
            params=(55_413, 55_413),
        ),
    )
}


STUDY = tuple(name for name, spec in ARCHS.items() if spec.study)


def get_arch(name: str) -> ArchSpec:
    """Look an architecture up, failing with the valid names and the closest match."""
    return lookup(ARCHS, name, "architecture")
