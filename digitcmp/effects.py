"""The study's verdicts with their uncertainty: paired effects of weight sharing and the auxiliary loss over the
rounds every variant shares, and two-run differences for ``digitcmp compare``. The statistics are SciPy's; no
torch here.

Every variant of a bench trains on the same rounds (round r draws the same pairs for all of them), so the effect of
a technique is measured round by round: d_r = accuracy_r(with) − accuracy_r(without). Its mean, a 95% t interval,
a paired t-test and an exact sign-flip permutation test; the family of a run's effects is corrected with Holm's
step-down method. A verdict ("helps", "hurts") is given only where the interval excludes zero and the corrected
p-value is below 0.05.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from .grid import TRAINING_AXES
from .summary import row_label, varying_settings

LEVEL = 0.95  # the intervals' confidence
ALPHA = 0.05  # the corrected p-value under which an effect gets a verdict
EXACT_BELOW = 10  # with fewer rounds than this, the decision uses the exact sign-flip test (no normality assumed)
EXACT_UP_TO = 16  # the exact test enumerates 2^n sign patterns: up to 65,536

# Each effect: its name, the technique cell compared, and the cell it is compared against, as (weight sharing,
# auxiliary loss) — the question of the study, and sharing's effect where the auxiliary loss is already on.
EFFECTS = (
    ("weight sharing", (True, False), (False, False)),
    ("auxiliary loss", (False, True), (False, False)),
    ("both", (True, True), (False, False)),
    ("sharing, given aux", (True, True), (False, True)),
)


@dataclass(frozen=True)
class Interval:
    """A difference (accuracy, as a fraction) with its 95% confidence interval and two-sided p-values."""

    mean: float
    low: float
    high: float
    p_t: float  # the t-test's (paired, or Welch's for two independent runs)
    p_exact: float | None = None  # the exact sign-flip permutation test's (paired, up to EXACT_UP_TO rounds)
    n: int = 0  # rounds paired (0 for a Welch difference)
    df: float | None = None  # the t distribution's degrees of freedom

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def paired(differences: list[float] | np.ndarray) -> Interval:
    """A paired difference from its per-round values (at least 2): mean, t interval, t-test and the exact sign-flip
    test (up to ``EXACT_UP_TO`` rounds, whose 2^n sign patterns it enumerates)."""
    d = np.asarray(differences, dtype=float)
    n, mean = len(d), float(d.mean())
    if np.ptp(d) == 0:  # every round moved by the same amount: no spread, the interval is the point
        p_exact = 1.0 if mean == 0 else min(1.0, 2 / 2**n)  # only all-plus and all-minus are as extreme
        return Interval(mean, mean, mean, 1.0 if mean == 0 else 0.0, p_exact if n <= EXACT_UP_TO else None, n, n - 1)
    test = stats.ttest_1samp(d, 0.0)
    ci = test.confidence_interval(LEVEL)
    p_exact = None
    if n <= EXACT_UP_TO:
        p_exact = float(stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf).pvalue)
    return Interval(mean, float(ci.low), float(ci.high), float(test.pvalue), p_exact, n, n - 1)


def welch(a: tuple[float, float, int], b: tuple[float, float, int]) -> Interval:
    """The difference b − a of two independent means from (mean, std, n) each: Welch's interval and t-test (the
    Welch–Satterthwaite degrees of freedom), for runs that share no rounds, or a report's published table."""
    (mean_a, sd_a, n_a), (mean_b, sd_b, n_b) = a, b
    va, vb = sd_a**2 / n_a, sd_b**2 / n_b
    diff = mean_b - mean_a
    if va + vb == 0:
        return Interval(diff, diff, diff, 1.0 if diff == 0 else 0.0)
    df = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))
    half = float(stats.t.ppf((1 + LEVEL) / 2, df)) * math.sqrt(va + vb)
    p = stats.ttest_ind_from_stats(mean_b, sd_b, n_b, mean_a, sd_a, n_a, equal_var=False).pvalue
    return Interval(diff, diff - half, diff + half, float(p), None, 0, df)


def decision_p(interval: Interval) -> float:
    """The p-value a verdict rests on: the exact sign-flip test's with few rounds, else the t-test's."""
    if interval.p_exact is not None and interval.n < EXACT_BELOW:
        return interval.p_exact
    return interval.p_t


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (in the given order): the k-th smallest is multiplied
    by (m − k + 1), then made non-decreasing and capped at 1."""
    m = len(p_values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def verdict(interval: Interval, p_holm: float, better: str = "helps", worse: str = "hurts") -> str:
    """A word only where the interval excludes zero and the family-corrected p-value is under ``ALPHA``."""
    if not interval.excludes_zero or p_holm >= ALPHA:
        return "unclear"
    return better if interval.mean > 0 else worse


def per_round(record: dict) -> dict[int, float]:
    return {r["round"]: r["test_accuracy"] for r in record.get("rounds", [])}


def study_effects(records: list[dict], kind: str = "bench") -> list[dict]:
    """Every effect a bench or tune can measure: per row of its table (a preset's row, or the architecture and
    the settings that vary), and in a bench per auxiliary weight, each technique against its reference, paired
    over the rounds both finished; Holm-corrected over all of them. Records of results.json; the result is
    results.json's ``effects``. A tune's cells are compared as selected, whatever hyper-parameters each chose."""
    ok = [r for r in records if r.get("status") == "ok"]
    vary = varying_settings(ok) - ({*TRAINING_AXES, "aux_weight"} if kind == "tune" else set())
    rows: dict[str, list[dict]] = {}
    for record in ok:
        label = record["cell"].rsplit(" · ", 1)[0] if record.get("cell") else row_label(record, vary)
        rows.setdefault(label, []).append(record)
    found: list[dict] = []
    done: set[tuple[str, str]] = set()
    for label, cells in rows.items():
        weights = sorted({r["aux_weight"] for r in cells if r["aux_weight"] > 0}) if kind == "bench" else []
        for weight in weights or [None]:
            kept = [r for r in cells if weight is None or r["aux_weight"] in (0, weight)]
            technique = {(r["weight_sharing"], r["aux_weight"] > 0): r for r in kept}
            for name, treated, reference in EFFECTS:
                if treated not in technique or reference not in technique:
                    continue
                a, b = per_round(technique[reference]), per_round(technique[treated])
                shared = sorted(set(a) & set(b))
                names = technique[treated]["name"], technique[reference]["name"]
                if len(shared) < 2 or names in done:  # sharing alone is the same effect whatever the aux weight
                    continue
                done.add(names)
                interval = paired([b[r] - a[r] for r in shared])
                record = {"row": label, "effect": name, "treated": names[0], "reference": names[1]}
                found.append({**record, **rounded(interval)})
    adjusted = holm([decision_p(interval_of(e)) for e in found])
    for effect, p_holm in zip(found, adjusted, strict=True):
        effect["p_holm"] = round(p_holm, 6)
        effect["verdict"] = verdict(interval_of(effect), p_holm)
    return found


def rounded(interval: Interval) -> dict:
    """An interval as results.json holds it (accuracy fractions, 6 decimals)."""
    values = asdict(interval)
    return {key: round(v, 6) if isinstance(v, float) and math.isfinite(v) else v for key, v in values.items()}


def interval_of(record: dict) -> Interval:
    return Interval(**{key: record[key] for key in Interval.__dataclass_fields__})
