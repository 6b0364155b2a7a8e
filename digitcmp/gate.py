"""The regression gate: a bench's results against a baseline results.json, cell by cell, with a verdict."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import DigitcmpError
from .grid import cell_key
from .settings import check_fields, setting

GATE = "Regression gate"


@dataclass(frozen=True)
class Gate:
    """The regression gate of ``bench --compare``: the baseline, and how far a cell may fall behind it."""

    baseline: Path | None = setting("Baseline results.json: exit 1 if a variant regresses.", None, panel=GATE,
                                    flags=("--compare",), shown=False)  # fmt: skip
    tolerance: float = setting("Allowed drop in mean test accuracy against --compare (absolute).", 0.03, low=0,
                               panel=GATE, shown=True)  # fmt: skip
    time_tolerance: float = setting("Allowed growth of seconds per round against --compare (1.0 = twice as slow).",
                                    1.0, low=0, panel=GATE, shown=True)  # fmt: skip
    time_slack: float = setting("Seconds per round a variant may always grow by against --compare (sub-second "
                                "times are noise).", 1.0, low=0, panel=GATE, shown=True)  # fmt: skip

    def __post_init__(self) -> None:
        check_fields(self)

    def read_baseline(self) -> dict | None:
        """The baseline (read before anything trains, so that a bad file fails at once), or None without one."""
        return None if self.baseline is None else read_baseline(self.baseline)

    def compare(self, document: dict, baseline: dict) -> list[dict]:
        return compare(document, baseline, self.tolerance, self.time_tolerance, self.time_slack)

    def verdict(self, rows: list[dict]) -> None:
        """Fail (exit 1), naming the cells that regressed or failed to train; pass silently otherwise."""
        regressions = [row["name"] for row in rows if row["regression"]]
        if regressions:
            raise DigitcmpError(f"regression against {self.baseline}: {', '.join(regressions)}", exit_code=1)


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


def read_baseline(path: Path) -> dict:
    """Load a baseline results.json, refusing files that are not one."""
    try:
        baseline = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DigitcmpError(f"cannot read baseline {path} ({type(exc).__name__}); pass a bench results.json") from None
    if not isinstance(baseline, dict) or not isinstance(baseline.get("variants"), list):
        raise DigitcmpError(f"{path} is not a digitcmp bench results.json (no 'variants' list)")
    return baseline
