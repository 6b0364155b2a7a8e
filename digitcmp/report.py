"""Presenting results: rich tables for people, JSON for machines."""

from __future__ import annotations

import platform
import sys
from datetime import datetime, timezone

from rich.console import Console
from rich.table import Table

from . import __version__
from .train import RunResult


def percent(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f}%"


def mean_std(mean: float, std: float) -> str:
    return f"{100 * mean:.1f} ± {100 * std:.1f}%"


def environment(device: str) -> dict[str, str]:
    """What every figure needs beside it to be comparable."""
    import torch

    return {
        "digitcmp_version": __version__,
        "torch_version": str(torch.__version__),
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
        "torch_threads": str(torch.get_num_threads()),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def rounds_table(result: RunResult) -> Table:
    """One row per round and a mean ± std row: what 'digitcmp train' shows at the end."""
    v = result.variant
    table = Table(
        title=f"{v.name}: {v.arch}, weight sharing {'on' if v.weight_sharing else 'off'}, "
        f"aux weight {v.aux_weight:g}, head {v.head} — {result.params:,} parameters",
        title_justify="left",
    )
    for column in ("round", "train acc", "val acc", "test acc", "digit acc", "seconds"):
        table.add_column(column, justify="right")
    for r in result.rounds:
        table.add_row(
            str(r.round),
            percent(r.train_accuracy),
            percent(r.val_accuracy),
            percent(r.test_accuracy),
            percent(r.digit_accuracy),
            f"{r.seconds:.1f}",
        )
    summary = result.summary()
    table.add_section()
    table.add_row(
        "mean ± std",
        percent(summary["train_accuracy_mean"]),
        percent(summary["val_accuracy_mean"]),
        mean_std(*result.mean_std("test_accuracy")),
        percent(summary["digit_accuracy_mean"]),
        f"{summary['seconds_per_round']:.1f}",
        style="bold",
    )
    return table


def stdout_console() -> Console:
    return Console(file=sys.stdout)


def stderr_console(quiet: bool = False) -> Console:
    return Console(stderr=True, quiet=quiet)
