"""The engine that bench and tune share: run a study's cells through an executor, keep each in the run folder as it
finishes (so Ctrl-C keeps what finished and ``--resume`` runs the rest), then write the results document and its
files. bench and tune differ only in their cells (a ``Study``); the console is not used here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch

from .data import DigitSource
from .effects import study_effects
from .errors import DigitcmpError
from .executor import ExecutorConfig, run_cells
from .files import write_json
from .grid import Job
from .reproduce import reproduction
from .results import write_results
from .runs import RunFolder
from .schema import SCHEMA_VERSION
from .train import RunResult, environment

Done = TypeVar("Done")


@dataclass
class Outcome:
    """A trained (or failed) configuration: the job, its result over every round, and where it ran."""

    job: Job
    result: RunResult | None
    error: str | None = None
    node: str = ""  # where it ran: this machine, or a Ray node

    @property
    def identity(self) -> str:
        return self.job.identity


@dataclass
class StudyRun:
    """A finished (or interrupted) bench or tune: its results document, and whether any cell did not run."""

    document: dict
    interrupted: bool


class Unit(Protocol):
    """A cell to run, or a cell that ran: named by its identity in the run folder; a cell that ran holds its
    result (None when it failed), whose best round is the cell's checkpoint."""

    @property
    def identity(self) -> str: ...


@dataclass(frozen=True)
class Study:
    """What a bench or tune runs: its cells, and how one is trained, counted and recorded."""

    kind: str  # "bench" or "tune": results.json's kind and the key of its records ("variants" or "cells")
    config: Any  # the run's configuration (a dataclass): config.json and results.json hold it
    cells: Sequence[Unit]
    work: Callable[..., Any]  # work(cell, shared, device, on_epoch) → the cell that ran (or failed)
    shared: Callable[[DigitSource], Any]  # what every cell reads, drawn once: the rounds
    epochs: Callable[[Any], int]  # network-epochs a cell trains (the progress bar's unit)
    record: Callable[[Any], dict]  # the results record of a cell that ran
    failed: Callable[[Any, str], Any]  # a cell that could not finish (its worker lost), with the reason
    identity_of_record: Callable[[dict], str]  # the cell a record came from (for best.pt)
    preset: str | None = None

    @property
    def records_key(self) -> str:
        return "variants" if self.kind == "bench" else "cells"


def variant_record(outcome: Outcome) -> dict:
    """One variant's entry in results.json."""
    record: dict = {
        **outcome.job.fields(),
        "name": outcome.job.variant.name,
        "status": "ok" if outcome.result else "failed",
        "train_config": outcome.job.config.to_dict(),
        "node": outcome.node,
    }
    if outcome.job.cell is not None:
        record["cell"] = outcome.job.cell.label
    if outcome.result is None:
        return {**record, "error": outcome.error}
    result = outcome.result
    summary = result.summary()
    rounds = [{key: value for key, value in asdict(r).items()} for r in result.rounds]
    return {
        **record,
        "technique": outcome.job.variant.technique,
        "params": result.params,
        **summary,
        "rounds": rounds,
    }


def guarded(run: Callable[[], Done], failed: Callable[[str], Done]) -> Done:
    """A cell's work, with a failure it can survive (say, out of memory) made the cell's outcome, so the rest of
    the study goes on."""
    try:
        return run()
    except (DigitcmpError, RuntimeError) as exc:
        return failed(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")


def run_study(
    study: Study,
    source: DigitSource,
    device: torch.device,
    folder: Path,
    on_epoch: Callable[[int], None] | None = None,
    on_done: Callable[[dict], None] | None = None,
    command: str = "",
    executor: ExecutorConfig = ExecutorConfig(),
    resume: bool = False,
) -> StudyRun:
    """Run every cell, keeping each in ``folder`` as it finishes (``resume``: read back the cells an interrupted run
    of the same configuration finished, and run the rest), then write every results file and ``best.pt``; with a
    preset also ``reproduction.json``, the report's figures beside the run's (with ``command``). ``on_done`` gets
    each cell's record as it finishes; Ctrl-C stops the run and keeps what finished."""
    run = RunFolder(folder)
    finished = run.start(study.kind, asdict(study.config), source.describe(), resume)
    epochs = {cell.identity: study.epochs(cell) for cell in study.cells}
    todo = [cell for cell in study.cells if cell.identity not in finished]
    context = {"seed": study.config.seed, "data": source.describe(), "environment": environment(str(device))}
    if on_epoch is not None:  # the resumed cells' share of the progress
        on_epoch(sum(n for identity, n in epochs.items() if identity in finished))
    shared = study.shared(source)
    local = executor.kind == "local"  # a local cell reports every epoch; a Ray cell only when it finishes

    def finished_cells() -> Iterator[tuple[str, dict, RunResult | None]]:
        cells = run_cells(todo, study.work, shared, str(device), executor, study.failed, on_epoch if local else None)
        for cell in cells:
            if on_epoch is not None and not local:
                on_epoch(epochs[cell.identity])
            yield cell.identity, study.record(cell), cell.result

    interrupted = run.keep_all(finished_cells(), finished, context, on_done)
    records = [finished[identity] for identity in epochs if identity in finished]
    document = results_document(study, records, context["environment"], source.describe())
    finish_run(run, document, records, study, command)
    return StudyRun(document, interrupted or len(records) < len(study.cells))


def results_document(study: Study, records: list[dict], environment: dict, data: str) -> dict:
    """The whole of results.json (schema ``SCHEMA_VERSION``; docs/bench.md and docs/tune.md describe it)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": study.kind,
        "digitcmp_version": environment["digitcmp_version"],
        "created": environment["created"],
        "device": environment["device"],
        "environment": environment,
        "data": data,
        "config": asdict(study.config),
        study.records_key: records,
        "effects": study_effects(records, study.kind),
        "best": None,
    }


def finish_run(run: RunFolder, document: dict, records: list[dict], study: Study, command: str) -> None:
    """The files of a study from its finished cells: best.pt (the checkpoint of the best validation accuracy), the
    preset's reproduction.json, and results.json, results.csv, summary.md and the plots."""
    best = best_record(records)
    if best is not None:
        checkpoint = run.copy_checkpoint(study.identity_of_record(best), run.folder / "best.pt")
        document["best"] = {**{k: v for k, v in best.items() if k != "rounds"}, "checkpoint": checkpoint.name}
    if study.preset:
        document["reproduction"] = reproduction(study.preset, records, command)
        write_json(run.folder / "reproduction.json", document["reproduction"])
    write_results(run.folder, document)


def score(record: dict) -> float:
    """How a finished cell ranks for best.pt: mean validation accuracy (training accuracy without a validation
    split), never test accuracy."""
    value = record.get("val_accuracy_mean")
    return value if value is not None else record["train_accuracy_mean"]


def best_record(records: list[dict]) -> dict | None:
    """The finished cell whose checkpoint becomes best.pt."""
    done = [r for r in records if r.get("status") == "ok"]
    return max(done, key=score) if done else None
