"""Hyper-parameter selection the way the reports did it, without letting test pairs choose anything.

For each cell (architecture × technique), every configuration of the grid (or ``trials`` of them, sampled) is
scored by validation accuracy on tuning pairs drawn from the training digits apart from the evaluation rounds:
one held-out share, or k-fold cross-validation. The best configuration then trains on the evaluation rounds, and
its test accuracy (mean ± std) is what the cell reports.
"""

from __future__ import annotations

import json
import random
import statistics
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from .bench import BenchConfig, Job, Outcome, expand, finish_run, variant_record
from .config import TrainConfig
from .data import DigitSource, RoundData, draw_rounds, draw_tuning_rounds
from .errors import DigitcmpError
from .executor import ExecutorConfig, node_name, run_cells
from .presets import PresetCell, get_preset
from .runs import RunFolder, cell_id
from .schema import SCHEMA_VERSION
from .train import RunResult, environment, train_variant
from .variant import Technique

SEARCHED = ("aux_weight", "channels", "hidden", "activation", "dropout", "batch_norm", "head_width", "lr",
            "batch_size", "weight_decay")  # fmt: skip


@dataclass(frozen=True)
class TuneConfig:
    """The cells, the grid searched in each, how configurations are scored, and the evaluation protocol."""

    archs: tuple[str, ...]
    techniques: tuple[Technique, ...] = tuple(Technique)
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
    tune_epochs: int | None = None  # epochs of the tuning trainings, when shorter than the evaluation's
    preset: str | None = None  # a report's cells instead of archs × techniques (digitcmp.presets)

    def __post_init__(self) -> None:
        unknown = [name for name in self.techniques if name not in {t.value for t in Technique}]
        if unknown:
            raise DigitcmpError(f"unknown technique {unknown[0]!r}; choose from: {', '.join(Technique)}")
        object.__setattr__(self, "techniques", tuple(Technique(name) for name in self.techniques))
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


@dataclass(frozen=True)
class CellSpec:
    """What one cell searches from: an architecture, a technique (none, ws, aux, both), its fixed variant options
    and training settings, and the report's cell it reproduces, if any."""

    arch: str
    technique: Technique
    variant_options: dict
    overrides: dict
    preset_cell: PresetCell | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "technique", Technique(self.technique))


@dataclass
class Cell:
    """A tuned cell: its trials, the selected configuration, and that configuration's evaluation."""

    spec: CellSpec
    trials: list[Trial]
    outcome: Outcome | None = None  # the selected configuration trained on the evaluation rounds

    @property
    def arch(self) -> str:
        return self.spec.arch

    @property
    def technique(self) -> Technique:
        return self.spec.technique

    @property
    def identity(self) -> str:
        """The cell's name in a results folder (for streaming and --resume)."""
        spec = self.spec
        key = {
            "variant": spec.variant_options,
            "train": spec.overrides,
            "cell": spec.preset_cell and spec.preset_cell.label,
        }
        return cell_id(f"{spec.arch}-{spec.technique}", json.loads(json.dumps(key, default=list)))

    @property
    def selected(self) -> Trial:
        return max(self.trials, key=lambda t: t.score)  # the first of equal scores, in grid order


def cell_specs(config: TuneConfig) -> list[CellSpec]:
    """The cells: a preset's, or every architecture × technique with the options given for all."""
    if config.preset is None:
        return [CellSpec(arch, key, config.variant_options, config.overrides) for arch in config.archs
                for key in config.techniques]  # fmt: skip
    preset = get_preset(config.preset)
    specs = []
    for cell in preset.cells:
        options = {k: v for k, v in cell.variant.items() if k not in ("arch", "weight_sharing", "aux_weight")}
        overrides = {**preset.train, **cell.train, **{k: v for k, v in config.overrides.items() if v is not None}}
        specs.append(CellSpec(cell.variant["arch"], cell.technique, options, overrides, cell))
    return specs


def candidates(config: TuneConfig, spec: CellSpec) -> list[Trial]:
    """The configurations searched in one cell: the grid, or ``trials`` of it sampled with a seeded generator."""
    weight_sharing, aux = spec.technique.weight_sharing, spec.technique.has_aux
    fixed_aux = spec.preset_cell.variant["aux_weight"] if spec.preset_cell else 1.0
    tuning = {"curves": False, **({"epochs": config.tune_epochs} if config.tune_epochs else {})}
    grid = BenchConfig(
        archs=(spec.arch,),
        weight_sharing=(weight_sharing,),
        aux_weights=(config.aux_weights or (fixed_aux,)) if aux else (0.0,),
        tower_axes=config.tower_axes,
        lrs=config.lrs,
        batch_sizes=config.batch_sizes,
        weight_decays=config.weight_decays,
        val_fraction=config.val_fraction,
        variant_options=spec.variant_options,
        overrides={**spec.overrides, **tuning},  # tuning needs final scores only
    )
    jobs = [Job(job.variant, job.config, spec.preset_cell) for job in expand(grid)]
    if config.trials and len(jobs) > config.trials:
        chosen = random.Random(f"{config.seed}/{spec.arch}/{spec.technique}/{spec.variant_options}")
        jobs = [jobs[i] for i in sorted(chosen.sample(range(len(jobs)), config.trials))]
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
    executor: ExecutorConfig = ExecutorConfig(),
    skip: frozenset[str] = frozenset(),
) -> Iterator[Cell]:
    """Tune and evaluate every cell (but those whose identity is in ``skip``), yielding each as it finishes.
    Ctrl-C propagates; the cells yielded before it are complete."""
    tuning = draw_tuning_rounds(source, config.tune_pairs, config.seed, config.holdout, config.folds)
    evaluation = draw_rounds(source, config.rounds, config.pairs, config.test_pairs, config.val_fraction, config.seed)
    cells = [Cell(spec, candidates(config, spec)) for spec in cell_specs(config)]
    todo = [cell for cell in cells if cell.identity not in skip]
    local = executor.kind == "local"
    yield from run_cells(todo, tune_cell, (tuning, evaluation, config.seed), str(device), executor, failed_cell,
                         on_epoch if local else None)  # fmt: skip


def tune_cell(
    cell: Cell,
    shared: tuple[list[RoundData], list[RoundData], int],
    device: str,
    on_epoch: Callable[[int], None] | None = None,
) -> Cell:
    """Score every trial on the tuning rounds, then train the best on the evaluation rounds. A failure (say, out
    of memory) marks the cell failed; the others go on."""
    tuning, evaluation, seed = shared
    try:
        for trial in cell.trials:
            result = train_variant(trial.job.variant, tuning, trial.job.config, torch.device(device), seed, on_epoch)
            trial.scores = [r.val_accuracy for r in result.rounds]
        job = cell.selected.job
        final = replace(job.config, curves=True, epochs=evaluation_epochs(cell.spec))
        result = train_variant(job.variant, evaluation, final, torch.device(device), seed, on_epoch)
        cell.outcome = Outcome(Job(job.variant, final, cell.spec.preset_cell), result, node=node_name())
    except (DigitcmpError, RuntimeError) as exc:
        return failed_cell(cell, f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    return cell


def failed_cell(cell: Cell, reason: str) -> Cell:
    cell.outcome = Outcome(cell.trials[0].job, None, reason)
    return cell


def evaluation_epochs(spec: CellSpec) -> int:
    """The epochs a cell's selection trains on the evaluation rounds (tuning may train fewer)."""
    return TrainConfig.for_arch(spec.arch, **spec.overrides).epochs


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
        "id": cell.identity,
        "arch": cell.arch,
        "technique": cell.technique.label,
        "selected": selected.settings if selected else None,
        "selected_val_accuracy": round(selected.score, 6) if selected else None,
        "trials": trials,
    }


def tune_document(config: TuneConfig, records: list[dict], environment: dict, data: str) -> dict:
    """The whole of tune's results.json (schema ``SCHEMA_VERSION``; docs/tune.md describes it)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "tune",
        "digitcmp_version": environment["digitcmp_version"],
        "created": environment["created"],
        "device": environment["device"],
        "environment": environment,
        "data": data,
        "config": asdict(config),
        "cells": records,
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
    on_done: Callable[[dict], None] | None = None,
    command: str = "",
    executor: ExecutorConfig = ExecutorConfig(),
    resume: bool = False,
) -> TuneRun:
    """Tune every cell, keeping each in ``folder`` as it finishes (``resume``: read back the cells an interrupted
    run finished), then write results.json, results.csv, summary.md, the plots and best.pt; with a preset, also
    ``reproduction.json``. ``on_done`` gets each cell's record as it finishes; Ctrl-C keeps what finished."""
    run = RunFolder(folder)
    finished = run.start("tune", asdict(config), source.describe(), resume)
    specs = cell_specs(config)
    identities = [Cell(spec, []).identity for spec in specs]
    context = {"seed": config.seed, "data": source.describe(), "environment": environment(str(device))}
    if on_epoch is not None:  # the resumed cells' share of the progress
        on_epoch(sum(cell_epochs(config, spec) for spec, i in zip(specs, identities, strict=True) if i in finished))

    def finished_cells() -> Iterator[tuple[str, dict, RunResult | None]]:
        for cell in run_tune(config, source, device, on_epoch, executor, frozenset(finished)):
            if on_epoch is not None and executor.kind != "local":
                on_epoch(cell_epochs(config, cell.spec))
            yield cell.identity, cell_record(cell), cell.outcome.result if cell.outcome else None

    interrupted = run.keep_all(finished_cells(), finished, context, on_done)
    records = [finished[i] for i in identities if i in finished]
    document = tune_document(config, records, context["environment"], source.describe())
    finish_run(run, document, records, config.preset, command, identity=lambda record: record["id"])
    return TuneRun(document, interrupted or len(records) < len(specs))


def cell_epochs(config: TuneConfig, spec: CellSpec) -> int:
    """Network-epochs one cell trains: every trial on every tuning round, then its selection on every evaluation
    round (the progress bar's unit)."""
    trials = candidates(config, spec)
    return sum(t.job.config.epochs for t in trials) * max(config.folds, 1) + evaluation_epochs(spec) * config.rounds


def total_epochs(config: TuneConfig) -> int:
    """Network-epochs the whole run trains, for the progress bar."""
    return sum(cell_epochs(config, spec) for spec in cell_specs(config))
