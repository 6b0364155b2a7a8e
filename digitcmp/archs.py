"""The architecture registry: one entry per architecture, from its name to its tower builder and defaults.

This module imports no torch, so that ``digitcmp list`` and the CLI's choices work in a predict-only install; the
builder is named by its function in ``digitcmp.model.towers`` and imported only when a model is built.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass

from .errors import DigitcmpError

TOWERS_MODULE = "digitcmp.model.towers"


@dataclass(frozen=True)
class ArchSpec:
    """A registered architecture: what it is, how to build its tower, and the variant options it defaults to."""

    name: str
    description: str
    builder: str  # function name in digitcmp.model.towers: (members, width) -> nn.Module
    default_width: int | None = None  # None: the architecture has no width option
    default_head: str = "mlp"
    default_tta: bool = False
    default_tta_warps: int = 0  # fixed elastic warps among the test-time views
    default_ensemble: int = 1
    params: tuple[int, int] = (0, 0)  # parameters at the defaults, with / without weight sharing (tests check)

    def build_tower(self) -> Callable:
        """The tower builder, imported on first use (it needs torch)."""
        return getattr(importlib.import_module(TOWERS_MODULE), self.builder)


ARCHS: dict[str, ArchSpec] = {
    spec.name: spec
    for spec in (
        ArchSpec("shallow-fc", "one hidden layer of 500 units (196-500-10)", "shallow_fc", params=(104_919, 208_429)),
        ArchSpec(
            "deep-fc", "four decreasing fully connected layers (196-256-128-64-10)", "deep_fc", params=(93_643, 185_877)
        ),
        ArchSpec(
            "lenet",
            "LeNet-style: two 3×3 conv + max-pool stages (32, 64 channels), then 256-200-10",
            "lenet",
            params=(73_635, 145_861),
        ),
        ArchSpec(
            "conv6",
            "six blocks of unpadded 3×3 conv, BatchNorm, ReLU, dropout 0.1 → width×2×2 → 10",
            "conv6",
            default_width=32,
            params=(49_643, 97_877),
        ),
        ArchSpec(
            "vgg4",
            "VGG-style: two stages of two padded 3×3 conv + BatchNorm + ReLU (width, 2·width), max-pool, dropout, "
            "→ 128 → 10",
            "vgg4",
            default_width=16,
            default_head="structured",
            default_tta=True,
            default_tta_warps=32,
            params=(54_842, 109_684),
        ),
    )
}


def get_arch(name: str) -> ArchSpec:
    """Look an architecture up, failing with the valid names and the closest match."""
    if name in ARCHS:
        return ARCHS[name]
    close = difflib.get_close_matches(name, ARCHS, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise DigitcmpError(f"unknown architecture '{name}'{hint}; choose from: {', '.join(ARCHS)}")
