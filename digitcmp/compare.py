"""``digitcmp compare``: two runs, or a run and a report's published table, cell by cell, with the difference's
95% interval: paired where both runs trained the same rounds (same seed, data and pair counts), Welch's otherwise.
No torch here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .effects import Interval, paired, rounded, welch
from .errors import DigitcmpError
from .grid import cell_key
from .presets import get_preset
from .summary import records


@dataclass(frozen=True)
class Figure:
    """One cell's test accuracy on one side: mean, std and rounds, with the per-round values where known."""

    label: str
    mean: float
    std: float
    n: int
    rounds: dict[int, float] | None = None  # round index → test accuracy (a run; a published table has none)
    best_epoch: Figure | None = None  # the run's best-test-epoch figure, for a report that published that one


@dataclass(frozen=True)
class Side:
    """What one argument of ``compare`` names: a results folder, or a preset's published table."""

    name: str
    cells: dict[str, Figure]  # matching key → figure
    protocol: tuple | None = None  # what makes two runs' rounds the same (None: a published table)
    metric: str = "last"  # the figure a published table holds: the last epoch's, or the best test epoch's


def read_side(spec: str) -> Side:
    """A results folder (or its results.json) of bench or tune, or the name of a report preset."""
    path = Path(spec)
    file = path / "results.json" if path.is_dir() else path
    if file.is_file():
        return run_side(spec, file)
    if path.exists() or "/" in spec or path.suffix:
        raise DigitcmpError(f"{spec}: no results.json there; give a bench or tune results folder, or a preset name")
    return published_side(spec)  # an unknown name fails with the presets' names


def run_side(spec: str, file: Path) -> Side:
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
        cells = {cell_label(r): figure(r) for r in records(document) if r.get("status") == "ok"}
        config = document["config"]
        protocol = (config["seed"], config["pairs"], config["test_pairs"], config.get("val_fraction"), document["data"])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        message = f"{file}: not a results.json of digitcmp bench or tune ({type(exc).__name__}: {exc})"
        raise DigitcmpError(f"{message}; give a results folder") from None
    return Side(spec, cells, protocol)


def cell_label(record: dict) -> str:
    """How a record is matched across runs: its preset cell, else its variant and training axes."""
    return record.get("cell") or cell_key(record)


def figure(record: dict) -> Figure:
    rounds = {r["round"]: r["test_accuracy"] for r in record.get("rounds", [])}
    label = record.get("cell") or record["name"]
    best = record.get("best_epoch_test_accuracy_mean"), record.get("best_epoch_test_accuracy_std")
    best_epoch = Figure(label, best[0], best[1], len(rounds)) if best[0] is not None else None
    return Figure(label, record["test_accuracy_mean"], record["test_accuracy_std"], len(rounds), rounds, best_epoch)


def published_side(name: str) -> Side:
    """A report's published table: each cell's mean and std over the report's rounds."""
    preset = get_preset(name)
    cells = {
        cell.label: Figure(cell.label, *cell.published, preset.published_rounds)
        for cell in preset.cells
        if cell.published is not None
    }
    return Side(name, cells, metric=preset.published_metric)


def difference(a: Figure, b: Figure, same_rounds: bool) -> tuple[Interval, str]:
    """b − a with its interval: paired over the rounds both ran when they are the same rounds, else Welch's."""
    shared = sorted(set(a.rounds or {}) & set(b.rounds or {})) if same_rounds else []
    if len(shared) >= 2:
        return paired([b.rounds[r] - a.rounds[r] for r in shared]), "paired"  # type: ignore[index]
    if min(a.n, b.n) < 2:
        raise DigitcmpError(f"{a.label}: one round on a side has no spread to compare; run more --rounds")
    return welch((a.mean, a.std, a.n), (b.mean, b.std, b.n)), "Welch"


def compare_sides(a: Side, b: Side) -> list[dict]:
    """Every cell the two sides share: both means, b − a with its 95% interval and p-value, and whether they agree
    (the interval holds 0)."""
    same_rounds = a.protocol is not None and a.protocol == b.protocol
    shared = [key for key in a.cells if key in b.cells]
    if not shared:
        raise DigitcmpError(
            f"{a.name} and {b.name} share no cell; compare runs of the same grid, or a 'digitcmp bench --preset NAME' "
            "run with that preset"
        )
    rows = []
    for key in shared:
        first, second = (as_published(a.cells[key], b), as_published(b.cells[key], a))
        interval, test = difference(first, second, same_rounds)
        rows.append({
            "cell": first.label,
            "a_mean": round(first.mean, 6), "a_std": round(first.std, 6), "a_rounds": first.n,
            "b_mean": round(second.mean, 6), "b_std": round(second.std, 6), "b_rounds": second.n,
            "test": test,
            **rounded(interval),
            "agree": not interval.excludes_zero,
        })  # fmt: skip
    return rows


def as_published(run: Figure, other: Side) -> Figure:
    """A run's figure in the metric of the table it is compared with: the best test epoch's where a report
    published that (a run with full curves has it), else the last epoch's."""
    if other.metric != "best-epoch":
        return run
    if run.best_epoch is None:
        raise DigitcmpError(f"{other.name} published best-epoch figures; run the preset with --curves full to compare")
    return run.best_epoch
