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
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch

from .config import Curves, TrainConfig
from .data import DigitSource, RoundData, draw_rounds, draw_tuning_rounds
from .executor import ExecutorConfig, node_name, run_cells
from .grid import BenchConfig, Job, TuneConfig, expand
from .presets import PresetCell, get_preset
from .runs import cell_id
from .study import Outcome, Study, StudyRun, guarded, run_study, variant_record
from .train import RunResult, train_variant
from .variant import Technique, digit_size

SEARCHED = ("aux_weight", "channels", "hidden", "activation", "dropout", "batch_norm", "head_width", "lr",
            "batch_size", "weight_decay")  # fmt: skip


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
    def result(self) -> RunResult | None:
        return self.outcome.result if self.outcome is not None else None

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
    tuning = {"curves": Curves.off, **({"epochs": config.tune_epochs} if config.tune_epochs else {})}
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


def tune_cells(
    config: TuneConfig,
    source: DigitSource,
    device: torch.device,
    on_epoch: Callable[[int], None] | None = None,
    executor: ExecutorConfig = ExecutorConfig(),
) -> Iterator[Cell]:
    """Tune and evaluate every cell, yielding each as it finishes, without keeping files (``run_tune`` keeps them).
    Ctrl-C propagates; the cells yielded before it are complete."""
    study = tune_study(config)
    local = executor.kind == "local"
    yield from run_cells(list(study.cells), tune_cell, study.shared(source), str(device), executor, failed_cell,
                         on_epoch if local else None)  # fmt: skip


def tuning_and_evaluation_rounds(config: TuneConfig, source: DigitSource) -> tuple[list, list, int]:
    """What every cell reads: the tuning rounds (from training digits only), the evaluation rounds, the seed."""
    size = digit_size(config.variant_options)
    tuning = draw_tuning_rounds(source, config.tune_pairs, config.seed, config.holdout, config.folds, size)
    evaluation = draw_rounds(
        source, config.rounds, config.pairs, config.test_pairs, config.val_fraction, config.seed, size=size
    )
    return tuning, evaluation, config.seed


def tune_cell(
    cell: Cell,
    shared: tuple[list[RoundData], list[RoundData], int],
    device: str,
    on_epoch: Callable[[int], None] | None = None,
) -> Cell:
    """Score every trial on the tuning rounds, then train the best on the evaluation rounds. A failure (say, out
    of memory) marks the cell failed; the others go on."""
    tuning, evaluation, seed = shared

    def search_and_evaluate() -> Cell:
        for trial in cell.trials:
            result = train_variant(trial.job.variant, tuning, trial.job.config, torch.device(device), seed, on_epoch)
            trial.scores = [r.val_accuracy for r in result.rounds]
        job = cell.selected.job
        protocol = TrainConfig.for_arch(cell.spec.arch, **cell.spec.overrides)  # what tuning shortened or turned off
        final = replace(job.config, curves=protocol.curves, epochs=protocol.epochs)
        result = train_variant(job.variant, evaluation, final, torch.device(device), seed, on_epoch)
        cell.outcome = Outcome(Job(job.variant, final, cell.spec.preset_cell), result, node=node_name())
        return cell

    return guarded(search_and_evaluate, lambda reason: failed_cell(cell, reason))


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


def tune_study(config: TuneConfig, cells: list[Cell] | None = None) -> Study:
    """A tune as the study engine runs it: one cell per architecture × technique (or preset cell), each with the
    trials of its search (``cells``: those, already built)."""
    cells = [Cell(spec, candidates(config, spec)) for spec in cell_specs(config)] if cells is None else cells
    return Study(
        kind="tune",
        config=config,
        cells=cells,
        work=tune_cell,
        shared=partial(tuning_and_evaluation_rounds, config),
        epochs=lambda cell: cell_epochs(config, cell),
        record=cell_record,
        failed=failed_cell,
        identity_of_record=lambda record: record["id"],
        preset=config.preset,
    )


def run_tune(
    config: TuneConfig, source: DigitSource, device: torch.device, folder: Path, cells: list[Cell] | None = None,
    **options: Any,
) -> StudyRun:  # fmt: skip
    """Tune every cell with ``run_study`` (``options``: its progress, executor and resume): each kept as it
    finishes, then results.json, results.csv, summary.md, the plots and best.pt; with a preset, reproduction.json."""
    return run_study(tune_study(config, cells), source, device, folder, **options)


def cell_epochs(config: TuneConfig, cell: Cell) -> int:
    """Network-epochs one cell trains: every trial on every tuning round, then its selection on every evaluation
    round (the progress bar's unit)."""
    trials = sum(t.job.config.epochs for t in cell.trials) * max(config.folds, 1)
    return trials + evaluation_epochs(cell.spec) * config.rounds
