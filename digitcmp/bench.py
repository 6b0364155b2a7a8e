"""The study: every variant over the same rounds of data, summarised, saved, and compared with a baseline.

Within a round every variant sees the same data draw (a paired design), so differences between variants are not
differences between draws. Model selection (which variant's checkpoint becomes ``best.pt``) uses validation
accuracy only; the reported figure is always the last epoch's test accuracy.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch

from .archs import get_arch
from .config import TrainConfig
from .data import DigitSource, RoundData, draw_rounds
from .errors import DigitcmpError
from .executor import ExecutorConfig, node_name, run_cells
from .files import write_json
from .presets import PresetCell, get_preset, within
from .report import write_results
from .runs import RunFolder, cell_id
from .schema import SCHEMA_VERSION
from .train import RunResult, environment, train_variant
from .variant import Variant, create_variant

# --quick: the study's grid for 3 rounds, each architecture for its registry entry's quick_epochs.
QUICK_ROUNDS = 3
# What identifies a grid cell in results files, baselines and comparisons: the variant and the training axes.
TRAINING_AXES = ("lr", "batch_size", "weight_decay")
KEY_FIELDS = (*(f.name for f in fields(Variant)), *TRAINING_AXES)


def cell_key(record: dict) -> str:
    """A results record's identity as one hashable value (layer sizes are lists in JSON)."""
    return json.dumps([record.get(name) for name in KEY_FIELDS])


@dataclass(frozen=True)
class BenchConfig:
    """The grid (every combination of the lists) and the protocol shared by all its variants."""

    archs: tuple[str, ...]
    weight_sharing: tuple[bool, ...] = (False, True)
    aux_weights: tuple[float, ...] = (0.0, 1.0)
    tower_axes: dict = field(default_factory=dict)  # TOWER_OPTIONS name → values (channels where there are convs)
    lrs: tuple[float, ...] = ()  # empty axes: each architecture's own default or recipe
    batch_sizes: tuple[int, ...] = ()
    weight_decays: tuple[float, ...] = ()
    rounds: int = 10
    pairs: int = 1000
    test_pairs: int = 1000
    val_fraction: float = 0.1  # shared: every variant sees the same validation pairs
    seed: int = 0
    variant_options: dict = field(default_factory=dict)  # create_variant options for every cell (head, tta, ...)
    overrides: dict = field(default_factory=dict)  # TrainConfig fields set for every architecture (e.g. epochs)
    arch_overrides: dict = field(default_factory=dict)  # architecture → TrainConfig fields for its cells (--quick)
    preset: str | None = None  # a report's cells instead of the grid (digitcmp.presets)


@dataclass(frozen=True)
class Job:
    """One cell of the grid: a variant and the training configuration it runs with."""

    variant: Variant
    config: TrainConfig
    cell: PresetCell | None = None  # the report's cell it reproduces, with a preset

    def key(self) -> dict:
        """The fields that identify this cell in results files and baselines."""
        values = {**self.variant.to_dict(), **self.config.to_dict()}
        return {name: values[name] for name in KEY_FIELDS}

    @property
    def identity(self) -> str:
        """The cell's name in a results folder (for streaming and --resume)."""
        return cell_id(self.variant.name, self.key())


@dataclass
class Outcome:
    """A finished (or failed) grid cell."""

    job: Job
    result: RunResult | None
    error: str | None = None
    node: str = ""  # where it ran: this machine, or a Ray node


def preset_jobs(config: BenchConfig) -> list[Job]:
    """A preset's cells, each with the preset's training settings, then the cell's, then those given (--epochs)."""
    preset = get_preset(config.preset)
    jobs = []
    for cell in preset.cells:
        variant = create_variant(**cell.variant)
        overrides = {**preset.train, **cell.train, **{k: v for k, v in config.overrides.items() if v is not None}}
        jobs.append(Job(variant, TrainConfig.for_arch(variant.arch, **overrides).fitted(variant), cell))
    return jobs


def expand(config: BenchConfig) -> list[Job]:
    """Every combination of the grid's axes (or a preset's cells). Channels apply to the architectures with
    convolutions, the head width to cells with the learned head; elsewhere those axes collapse to the
    architecture's own."""
    if config.preset:
        return preset_jobs(config)
    jobs = []
    for arch in config.archs:
        spec = get_arch(arch)
        structured = (config.variant_options.get("head") or spec.head) == "structured"
        inapplicable = {"channels": not spec.channels, "head_width": structured}
        towers = [(name, (None,) if inapplicable.get(name) else values) for name, values in config.tower_axes.items()]
        own = config.arch_overrides.get(arch, {})
        base = TrainConfig.for_arch(arch, **{**config.overrides, **own, "val_fraction": config.val_fraction})
        for *tower, lr, batch, decay, ws, aux in itertools.product(
            *(values for _, values in towers),
            config.lrs or (base.lr,),
            config.batch_sizes or (base.batch_size,),
            config.weight_decays or (base.weight_decay,),
            (False,) if spec.joint else config.weight_sharing,  # one network reading both digits: nothing to share
            config.aux_weights,
        ):
            options = {name: value for (name, _), value in zip(towers, tower, strict=True)}
            variant = create_variant(arch, ws, aux, **options, **config.variant_options)
            train = replace(base, lr=lr, batch_size=batch, weight_decay=decay).fitted(variant)
            if all(job.key() != Job(variant, train).key() for job in jobs):  # collapsed axes repeat cells
                jobs.append(Job(variant, train))
    return jobs


def bench_cell(job: Job, shared: tuple[list[RoundData], int], device: str, on_epoch=None) -> Outcome:
    """One cell: train its variant on every round. A failure (say, out of memory) is the cell's outcome, and the
    rest of the grid goes on."""
    rounds, seed = shared
    try:
        result = train_variant(job.variant, rounds, job.config, torch.device(device), seed, on_epoch)
    except (DigitcmpError, RuntimeError) as exc:
        return failed_outcome(job, f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    return Outcome(job, result, node=node_name())


def failed_outcome(job: Job, reason: str) -> Outcome:
    return Outcome(job, None, reason)


def score(record: dict) -> float:
    """How a finished cell ranks for best.pt: mean validation accuracy (training accuracy without a validation
    split), never test accuracy."""
    value = record.get("val_accuracy_mean")
    return value if value is not None else record["train_accuracy_mean"]


def record_identity(record: dict) -> str:
    """The identity of the cell a results record came from (its key fields are the job's key)."""
    return cell_id(record["name"], {name: record[name] for name in KEY_FIELDS})


def best_record(records: list[dict]) -> dict | None:
    done = [r for r in records if r.get("status") == "ok"]
    return max(done, key=score) if done else None


def variant_record(outcome: Outcome) -> dict:
    """One variant's entry in results.json."""
    record: dict = {
        **outcome.job.key(),
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


def results_document(config: BenchConfig, records: list[dict], environment: dict, data: str) -> dict:
    """The whole of results.json (schema ``SCHEMA_VERSION``; docs/bench.md describes it)."""
    settings = asdict(config)
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "bench",
        "digitcmp_version": environment["digitcmp_version"],
        "created": environment["created"],
        "device": environment["device"],
        "environment": environment,
        "data": data,
        "config": settings,
        "variants": records,
        "best": None,
    }


def compare(
    current: dict, baseline: dict, tolerance: float, time_tolerance: float, time_slack: float = 0.0
) -> list[dict]:
    """Compare each variant with the baseline's; a row regresses when accuracy drops by more than
    ``tolerance`` (absolute) or seconds per round grow by more than ``time_tolerance`` (relative) and by more than
    ``time_slack`` seconds: a sub-second variant's time is mostly noise, and a ratio of noise proves nothing."""

    base = {cell_key(v): v for v in baseline.get("variants", []) if v.get("status") == "ok"}
    rows = []
    for variant in current["variants"]:
        old = base.get(cell_key(variant))
        row = {"name": variant.get("name") or variant["arch"], "status": "new", "regression": False}
        if variant.get("status") != "ok":
            row.update(status="failed", regression=True)
        elif old is not None:
            accuracy_drop = old["test_accuracy_mean"] - variant["test_accuracy_mean"]
            slowdown = variant["seconds_per_round"] / max(old["seconds_per_round"], 1e-9) - 1
            row.update(
                status="compared",
                accuracy=variant["test_accuracy_mean"],
                baseline_accuracy=old["test_accuracy_mean"],
                accuracy_delta=-accuracy_drop,
                seconds=variant["seconds_per_round"],
                baseline_seconds=old["seconds_per_round"],
                slowdown=slowdown,
                accuracy_regression=accuracy_drop > tolerance,
                time_regression=slowdown > time_tolerance
                and variant["seconds_per_round"] - old["seconds_per_round"] > time_slack,
            )
            row["regression"] = row["accuracy_regression"] or row["time_regression"]
            row["recipe_changes"] = recipe_changes(variant, old)
        rows.append(row)
    return rows


def recipe_changes(variant: dict, old: dict) -> list[str]:
    """Training settings outside the key that differ from the baseline cell's (``epochs 60→30``): a delta may be
    theirs, not the code's. Results files without ``train_config`` have nothing to compare."""
    new_config, old_config = variant.get("train_config", {}), old.get("train_config", {})
    return [
        f"{name} {old_config[name]}→{new_config[name]}"
        for name in sorted(new_config.keys() & old_config.keys())
        if new_config[name] != old_config[name]
    ]


@dataclass
class Study:
    """A finished (or interrupted) bench: its results document, and whether every cell ran."""

    document: dict
    interrupted: bool


def run_study(
    config: BenchConfig,
    source: DigitSource,
    device: torch.device,
    folder: Path,
    on_epoch: Callable[[int], None] | None = None,
    on_done: Callable[[dict], None] | None = None,
    command: str = "",
    executor: ExecutorConfig = ExecutorConfig(),
    resume: bool = False,
) -> Study:
    """Run the grid, keeping each cell in ``folder`` as it finishes (``resume``: read back the cells an earlier,
    interrupted run of the same configuration finished, and run the rest), then write every results file and
    ``best.pt``; with a preset also ``reproduction.json``, the report's figures beside ours (with ``command``).
    ``on_done`` gets each cell's record as it finishes; Ctrl-C stops the run and keeps what finished."""
    jobs = expand(config)
    run = RunFolder(folder)
    finished = run.start("bench", asdict(config), source.describe(), resume)
    todo = [job for job in jobs if job.identity not in finished]
    context = {"seed": config.seed, "data": source.describe(), "environment": environment(str(device))}
    if on_epoch is not None:  # the resumed cells' share of the progress
        on_epoch(sum(job.config.epochs for job in jobs if job.identity in finished) * config.rounds)
    rounds = draw_rounds(source, config.rounds, config.pairs, config.test_pairs, config.val_fraction, config.seed)
    local = executor.kind == "local"  # a local cell reports every epoch; a Ray cell only when it finishes

    def finished_cells() -> Iterator[tuple[str, dict, RunResult | None]]:
        cells = run_cells(todo, bench_cell, (rounds, config.seed), str(device), executor, failed_outcome,
                          on_epoch if local else None)  # fmt: skip
        for outcome in cells:
            if on_epoch is not None and not local:
                on_epoch(outcome.job.config.epochs * config.rounds)
            yield outcome.job.identity, variant_record(outcome), outcome.result

    interrupted = run.keep_all(finished_cells(), finished, context, on_done)
    records = [finished[job.identity] for job in jobs if job.identity in finished]
    document = results_document(config, records, context["environment"], source.describe())
    finish_run(run, document, records, config.preset, command)
    return Study(document, interrupted or len(records) < len(jobs))


def finish_run(
    run: RunFolder,
    document: dict,
    records: list[dict],
    preset: str | None,
    command: str,
    identity: Callable[[dict], str] = record_identity,
) -> None:
    """A bench's or tune's files from its finished cells: best.pt (the checkpoint of the best validation accuracy;
    ``identity`` names a record's cell), the preset's reproduction.json, and results.json, results.csv, summary.md
    and the plots."""
    best = best_record(records)
    if best is not None:
        checkpoint = run.copy_checkpoint(identity(best), run.folder / "best.pt")
        document["best"] = {**{k: v for k, v in best.items() if k != "rounds"}, "checkpoint": checkpoint.name}
    if preset:
        document["reproduction"] = reproduction(preset, records, command)
        write_json(run.folder / "reproduction.json", document["reproduction"])
    write_results(run.folder, document)


def read_baseline(path: Path) -> dict:
    """Load a baseline results.json, refusing files that are not one."""
    try:
        baseline = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DigitcmpError(f"cannot read baseline {path} ({type(exc).__name__}); pass a bench results.json") from None
    if not isinstance(baseline, dict) or not isinstance(baseline.get("variants"), list):
        raise DigitcmpError(f"{path} is not a digitcmp bench results.json (no 'variants' list)")
    return baseline


def reproduction(preset_name: str, records: list[dict], command: str) -> list[dict]:
    """A preset run beside its report: for every published cell, the report's figure and ours (the metric the
    report published: the last epoch's test accuracy, or the best test epoch's, with the last epoch's beside it),
    and whether ours lies within the combined spread."""
    preset = get_preset(preset_name)
    cells = {cell.label: cell for cell in preset.cells}
    rows = []
    for record in records:
        cell = cells.get(record.get("cell"))
        if cell is None or cell.published is None or record.get("status") != "ok":
            continue
        last = (record["test_accuracy_mean"], record["test_accuracy_std"])
        best = (record.get("best_epoch_test_accuracy_mean"), record.get("best_epoch_test_accuracy_std"))
        ours = best if preset.published_metric == "best-epoch" and best[0] is not None else last
        rows.append({
            "report": preset.report,
            "cell": cell.label,
            "published_mean": cell.published[0],
            "published_std": cell.published[1],
            "ours_mean": round(ours[0], 6),
            "ours_std": round(ours[1], 6),
            "metric": preset.published_metric,
            "ours_last_epoch_mean": round(last[0], 6),
            "ours_last_epoch_std": round(last[1], 6),
            "seconds_per_round": round(record["seconds_per_round"], 2),
            "within": within(cell.published, ours),
            "command": command,
        })  # fmt: skip
    return rows
