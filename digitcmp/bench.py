"""bench: every variant over the same rounds of data, summarised and saved (the study engine, digitcmp.study).

Within a round every variant sees the same data draw (a paired design), so differences between variants are not
differences between draws. Model selection (which variant's checkpoint becomes ``best.pt``) uses validation
accuracy only; the reported figure is always the last epoch's test accuracy.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import torch

from .data import DigitSource, RoundData, draw_rounds
from .executor import node_name
from .grid import BenchConfig, Job, expand, identity_fields
from .runs import cell_id
from .study import Outcome, Study, StudyRun, guarded, run_study, variant_record
from .train import train_variant
from .variant import digit_size


def bench_cell(job: Job, shared: tuple[list[RoundData], int], device: str, on_epoch=None) -> Outcome:
    """One cell: train its variant on every round. A failure (say, out of memory) is the cell's outcome, and the
    rest of the grid goes on."""
    rounds, seed = shared
    return guarded(
        lambda: Outcome(job, train_variant(job.variant, rounds, job.config, torch.device(device), seed, on_epoch),
                        node=node_name()),
        partial(Outcome, job, None),
    )  # fmt: skip


def record_identity(record: dict) -> str:
    """The identity of the cell a results record came from (its key fields are the job's key)."""
    return cell_id(record["name"], identity_fields(record))


def bench_study(config: BenchConfig, jobs: list[Job] | None = None) -> Study:
    """A bench as the study engine runs it: one cell per job of the grid (``jobs``: the grid, already expanded)."""
    jobs = expand(config) if jobs is None else jobs
    return Study(
        kind="bench",
        config=config,
        cells=jobs,
        work=bench_cell,
        shared=lambda source: (draw_rounds(source, config.rounds, config.pairs, config.test_pairs,
                                           config.val_fraction, config.seed,
                                           size=digit_size(config.variant_options)), config.seed),
        epochs=lambda job: job.config.epochs * config.rounds,
        record=variant_record,
        failed=lambda job, reason: Outcome(job, None, reason),
        identity_of_record=record_identity,
        preset=config.preset,
    )  # fmt: skip


def run_bench(
    config: BenchConfig, source: DigitSource, device: torch.device, folder: Path, jobs: list[Job] | None = None,
    **options: Any,
) -> StudyRun:  # fmt: skip
    """Run the grid with ``run_study`` (``options``: its progress, executor and resume): each cell kept as it
    finishes, then every results file and best.pt; with a preset also reproduction.json."""
    return run_study(bench_study(config, jobs), source, device, folder, **options)
