"""The bench's plots (matplotlib, drawn off-screen): learning curves, accuracy per variant and the effects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # no pyplot: files only, no window, no global state (servers, CI)
from matplotlib.patches import Rectangle

from .config import LIGHT_CURVE_PAIRS
from .summary import counted
from .variant import Technique


def plot_curves(records: list[dict], rounds: int, path: Path) -> None:
    """Learning curves: mean ± std band of train and test error per epoch, one panel per variant."""
    variants = [v for v in records if v.get("status") == "ok"]
    columns = min(4, max(1, len(variants)))
    rows = max(1, -(-len(variants) // columns))
    fig = Figure(figsize=(4 * columns, 3 * rows))
    axes = fig.subplots(rows, columns, squeeze=False, sharey=True)
    for ax, v in zip(axes.flat, variants, strict=False):
        for key, colour, label in (("train_error", "tab:blue", "train"), ("test_error", "tab:red", "test")):
            curves = np.array([r["curves"][key] for r in v["rounds"] if r["curves"].get(key)], dtype=float)
            if curves.size == 0:
                continue
            epochs = np.arange(1, curves.shape[1] + 1)
            mean, std = curves.mean(0), curves.std(0)
            ax.plot(epochs, 100 * mean, color=colour, label=label)
            ax.fill_between(epochs, 100 * (mean - std), 100 * (mean + std), color=colour, alpha=0.2)
        ax.set_title(v["name"], fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("error (%)")
    for ax in list(axes.flat)[len(variants) :]:
        ax.axis("off")
    if variants and axes.flat[0].get_lines():
        axes.flat[0].legend()
    light = any(v.get("train_config", {}).get("curves") == "light" for v in variants)
    sample = f"; test error on a fixed sample of {LIGHT_CURVE_PAIRS} test pairs each epoch" if light else ""
    fig.suptitle(f"Learning curves, mean ± std over {counted(rounds, 'round')}{sample}")
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")


def plot_accuracy(records: list[dict], rounds: int, path: Path) -> None:
    """Bar chart of mean test accuracy per variant with ± std error bars."""
    variants = [v for v in records if v.get("status") == "ok"]
    fig = Figure(figsize=(max(6, 0.5 * len(variants) + 2), 4.5))
    ax = fig.subplots()
    colours = dict(zip((t.label for t in Technique), ("tab:gray", "tab:blue", "tab:orange", "tab:green"), strict=True))
    positions = range(len(variants))
    ax.bar(
        positions,
        [100 * v["test_accuracy_mean"] for v in variants],
        yerr=[100 * v["test_accuracy_std"] for v in variants],
        color=[colours[v["technique"]] for v in variants],
        capsize=3,
    )
    ax.set_xticks(list(positions), [v["name"] for v in variants], rotation=60, ha="right", fontsize=8)
    low = min((100 * (v["test_accuracy_mean"] - v["test_accuracy_std"]) for v in variants), default=50)
    ax.set_ylim(max(0, low - 5), 100)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Test accuracy, mean ± std over {counted(rounds, 'round')}")
    handles = [Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
    ax.legend(handles, list(colours), fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")


def plot_effects(effects: list[dict], path: Path) -> None:
    """Each effect's paired difference with its 95% interval, one panel per architecture (row of the table)."""
    rows = list(dict.fromkeys(e["row"] for e in effects))
    fig = Figure(figsize=(7, 0.6 + 1.6 * max(1, len(rows))))
    axes = fig.subplots(max(1, len(rows)), 1, squeeze=False, sharex=True)[:, 0]
    colours = {"helps": "tab:green", "hurts": "tab:red"}
    for ax, row in zip(axes, rows, strict=False):
        mine = [e for e in effects if e["row"] == row]
        for y, e in enumerate(mine):
            # Few rounds can give intervals past ±100 points: drawn only as far as a difference can go.
            low, high = (max(min(v, 1.0), -1.0) for v in (e["low"], e["high"]))
            ax.errorbar(100 * e["mean"], y, xerr=[[100 * (e["mean"] - low)], [100 * (high - e["mean"])]], fmt="o",
                        color=colours.get(e["verdict"], "tab:gray"), capsize=3)  # fmt: skip
        ax.set_yticks(range(len(mine)), [e["effect"] for e in mine], fontsize=8)
        ax.set_ylim(len(mine) - 0.3, -0.7)  # the first effect on top
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(row, fontsize=9, loc="left")
        ax.grid(axis="x", alpha=0.3)
    axes[-1].set_xlabel("difference in test accuracy (points), paired over rounds, with 95% interval")
    fig.suptitle("Effects: green helps, red hurts, grey unclear")
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
