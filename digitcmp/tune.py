"""Hyper-parameter selection the way the reports did it, without letting test pairs choose anything.

For each cell (architecture × technique), every configuration of the grid (or ``trials`` of them, sampled) is
scored by validation accuracy on tuning pairs drawn from the training digits apart from the evaluation rounds:
one held-out share, or k-fold cross-validation. The best configuration then trains on the evaluation rounds, and
its test accuracy (mean ± std) is what the cell reports.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from .bench import BenchConfig, Job, Outcome, expand, save_best, variant_record
from .data import DigitSource, RoundData, draw_rounds, draw_tuning_rounds
from .errors import DigitcmpError
from .report import write_results
from .train import environment, train_variant
from .variant import TECHNIQUES, technique

SCHEMA_VERSION = 1
SEARCHED = ("aux_weight", "channels", "hidden", "activation", "dropout", "batch_norm", "head_width", "lr",
            "batch_size", "weight_decay")  # fmt: skip


@dataclass(frozen=True)
class TuneConfig:
    """The cells, the grid searched in each, how configurations are scored, and the evaluation protocol."""

    archs: tuple[str, ...]
    techniques: tuple[str, ...] = tuple(TECHNIQUES)
    aux_weights: tuple[float, ...] = (1.0,)  # searched in the cells with the auxiliary loss
    tower_axes: dict = field(default_factory=dict)  # as BenchConfig.tower_axes
    lrs: tuple[float, ...] = ()
    batch_sizes: tuple[int, ...] = ()
    weight_decays: tuple[float, ...] = ()
    trials: int = 0  # configurations sampled per cell when the grid is larger (0: the whole grid)
    folds: int = 0  # k-fold cross-validation with k ≥ 2; else one held-out share of the tuning pairs
    holdout: float = 0.2  # share of the tuning pairs that scores configurations (without folds)
    tune_pairs: int = 1000  # pairs drawn for tuning, from the training digits
    rounds: int = 10  # evaluation rounds of each cell's selected configuration
    pairs: int = 1000
    test_pairs: int = 1000
    val_fraction: float = 0.1  # of each evaluation round's training pairs, for choosing best.pt
    seed: int = 0
    variant_options: dict = field(default_factory=dict)
    overrides: dict = field(default_factory=dict)  # TrainConfig fields set for every architecture

    def __post_init__(self) -> None:
        unknown = set(self.techniques) - set(TECHNIQUES)
        if unknown:
            raise DigitcmpError(f"unknown technique {sorted(unknown)[0]!r}; choose from: {', '.join(TECHNIQUES)}")
        if self.folds == 1 or self.folds < 0:
            raise DigitcmpError(f"--folds {self.folds}: cross-validation needs at least 2 folds (0: a held-out share)")


@dataclass
class Trial:
    """One configuration of a cell's grid and its validation accuracy on each tuning round."""

    job: Job
    settings: dict  # the searched hyper-parameters' values
    scores: list[float]

    @property
    def score(self) -> float:
        return statistics.fmean(self.scores)


@dataclass
class Cell:
    """A tuned cell: its trials, the selected configuration, and that configuration's evaluation."""

    arch: str
    technique: str
    trials: list[Trial]
    outcome: Outcome | None = None  # the selected configuration trained on the evaluation rounds

    @property
    def selected(self) -> Trial:
        return max(self.trials, key=lambda t: t.score)  # the first of equal scores, in grid order


def candidates(config: TuneConfig, arch: str, key: str) -> list[Trial]:
    """The configurations searched in one cell (a technique ``key``: none, ws, aux, both): the grid, or
    ``trials`` of it sampled with a seeded generator."""
    weight_sharing, aux = TECHNIQUES[key]
    grid = BenchConfig(
        archs=(arch,),
        weight_sharing=(weight_sharing,),
        aux_weights=config.aux_weights if aux else (0.0,),
        tower_axes=config.tower_axes,
        lrs=config.lrs,
        batch_sizes=config.batch_sizes,
        weight_decays=config.weight_decays,
        val_fraction=config.val_fraction,
        variant_options=config.variant_options,
        overrides={**config.overrides, "curves": False},  # tuning needs final scores only
    )
    jobs = expand(grid)
    if config.trials and len(jobs) > config.trials:
        chosen = sorted(random.Random(f"{config.seed}/{arch}/{key}").sample(range(len(jobs)), config.trials))
        jobs = [jobs[i] for i in chosen]
    given = {
        "aux_weight": aux,
        "lr": bool(config.lrs),
        "batch_size": bool(config.batch_sizes),
        "weight_decay": bool(config.weight_decays),
        **dict.fromkeys(config.tower_axes, True),
    }
    searched = [name for name in SEARCHED if given.get(name)]
    return [Trial(job, {name: job.key()[name] for name in searched}, []) for job in jobs]


def run_tune(
    config: TuneConfig,
    source: DigitSource,
    device: torch.device,
    on_epoch: Callable[[int], None] | None = None,
    on_done: Callable[[Cell], None] | None = None,
) -> tuple[list[Cell], bool]:
    """Tune and evaluate every cell; returns the cells that finished and whether Ctrl-C stopped the run."""
    tuning = draw_tuning_rounds(source, config.tune_pairs, config.seed, config.holdout, config.folds)
    evaluation = draw_rounds(source, config.rounds, config.pairs, config.test_pairs, config.val_fraction, config.seed)
    cells: list[Cell] = []
    try:
        for arch in config.archs:
            for key in config.techniques:
                cell = Cell(arch, key, candidates(config, arch, key))
                tune_cell(cell, tuning, evaluation, device, config.seed, on_epoch)
                cells.append(cell)
                if on_done is not None:
                    on_done(cell)
    except KeyboardInterrupt:
        return cells, True
    return cells, False


def tune_cell(
    cell: Cell,
    tuning: list[RoundData],
    evaluation: list[RoundData],
    device: torch.device,
    seed: int,
    on_epoch: Callable[[int], None] | None,
) -> None:
    """Score every trial on the tuning rounds, then train the best on the evaluation rounds. A failure (say, out
    of memory) marks the cell failed; the others go on."""
    try:
        for trial in cell.trials:
            result = train_variant(trial.job.variant, tuning, trial.job.config, device, seed, on_epoch)
            trial.scores = [r.val_accuracy for r in result.rounds]
        job = cell.selected.job
        final = replace(job.config, curves=True)
        result = train_variant(job.variant, evaluation, final, device, seed, on_epoch)
        cell.outcome = Outcome(Job(job.variant, final), result)
    except (DigitcmpError, RuntimeError) as exc:
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        cell.outcome = Outcome(cell.trials[0].job, None, error)


def cell_record(cell: Cell) -> dict:
    """One cell's entry in results.json: bench's record of the selected configuration's evaluation, plus what
    the search tried and chose."""
    record = variant_record(cell.outcome) if cell.outcome is not None else {"status": "failed"}
    trials = [
        {"name": t.job.variant.name, "settings": t.settings, "val_accuracy": round(t.score, 6) if t.scores else None,
         "fold_val_accuracies": t.scores}
        for t in cell.trials
    ]  # fmt: skip
    scored = [t for t in cell.trials if t.scores]
    selected = cell.selected if scored else None
    return {
        **record,
        "arch": cell.arch,
        "technique": technique(*TECHNIQUES[cell.technique]),
        "selected": selected.settings if selected else None,
        "selected_val_accuracy": round(selected.score, 6) if selected else None,
        "trials": trials,
    }


def tune_document(config: TuneConfig, cells: list[Cell], device: torch.device, data: str) -> dict:
    """The whole of tune's results.json (schema ``SCHEMA_VERSION``; docs/tune.md describes it)."""
    env = environment(str(device))
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "tune",
        "digitcmp_version": env["digitcmp_version"],
        "created": env["created"],
        "device": env["device"],
        "environment": env,
        "data": data,
        "config": asdict(config),
        "cells": [cell_record(cell) for cell in cells],
        "best": None,
    }


@dataclass
class TuneRun:
    document: dict
    interrupted: bool


def run_and_save(
    config: TuneConfig,
    source: DigitSource,
    device: torch.device,
    folder: Path,
    on_epoch: Callable[[int], None] | None = None,
    on_done: Callable[[Cell], None] | None = None,
) -> TuneRun:
    """Tune every cell and write results.json, results.csv, summary.md, the plots and best.pt for those that
    finished (all of them unless Ctrl-C stopped the run)."""
    cells, interrupted = run_tune(config, source, device, on_epoch, on_done)
    document = tune_document(config, cells, device, source.describe())
    outcomes = [cell.outcome for cell in cells if cell.outcome is not None]
    save_best(outcomes, document, folder / "best.pt", seed=config.seed, records=document["cells"])
    write_results(folder, document)
    return TuneRun(document, interrupted)


def total_epochs(config: TuneConfig) -> int:
    """Network-epochs the whole run trains, for the progress bar: every trial on every tuning round, then each
    cell's selection on every evaluation round."""
    tuning_rounds = max(config.folds, 1)
    total = 0
    for arch in config.archs:
        for key in config.techniques:
            trials = candidates(config, arch, key)
            total += sum(t.job.config.epochs for t in trials) * tuning_rounds
            total += max(t.job.config.epochs for t in trials) * config.rounds
    return total
