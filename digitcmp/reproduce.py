"""A preset's run beside its report: each published cell's figure and the run's, and whether they agree."""

from __future__ import annotations

from .presets import get_preset


def reproduction(preset_name: str, records: list[dict], command: str) -> list[dict]:
    """A preset run beside its report: for every published cell, the report's figure and the run's (the metric the
    report published: the last epoch's test accuracy, or the best test epoch's, with the last epoch's beside it),
    and whether the run's lies within the combined spread."""
    preset = get_preset(preset_name)
    cells = {cell.label: cell for cell in preset.cells}
    rows = []
    for record in records:
        cell = cells.get(record.get("cell"))
        if cell is None or cell.published is None or record.get("status") != "ok":
            continue
        last = (record["test_accuracy_mean"], record["test_accuracy_std"])
        best = (record.get("best_epoch_test_accuracy_mean"), record.get("best_epoch_test_accuracy_std"))
        measured = best if preset.published_metric == "best-epoch" and best[0] is not None else last
        rows.append({
            "report": preset.report,
            "cell": cell.label,
            "published_mean": cell.published[0],
            "published_std": cell.published[1],
            "run_mean": round(measured[0], 6),
            "run_std": round(measured[1], 6),
            "metric": preset.published_metric,
            "run_last_epoch_mean": round(last[0], 6),
            "run_last_epoch_std": round(last[1], 6),
            "seconds_per_round": round(record["seconds_per_round"], 2),
            "within": within(cell.published, measured),
            "command": command,
        })  # fmt: skip
    return rows


def within(published: tuple[float, float], measured: tuple[float, float]) -> bool:
    """Whether the measured mean lies within the combined spread of the two: |Δ| ≤ 2·√(σ₁² + σ₂²)."""
    return abs(measured[0] - published[0]) <= 2 * (published[1] ** 2 + measured[1] ** 2) ** 0.5
