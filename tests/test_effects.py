"""Effects and comparisons: the statistics against published answers and against simulation, the study's effects
from its records, and ``digitcmp compare`` on runs and on a report's table."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_one_line_error, run

from digitcmp.compare import Figure, Side, compare_sides, published_side, read_side
from digitcmp.effects import EXACT_BELOW, decision_p, holm, paired, study_effects, verdict, welch
from digitcmp.errors import DigitcmpError
from digitcmp.presets import get_preset
from digitcmp.results import summary_markdown

# Student's sleep data (Cushny and Peebles, 1905): extra hours of sleep under two drugs, ten patients. R's
# t.test(extra ~ group, data = sleep) and t.test(..., paired = TRUE) publish the answers checked below.
DRUG_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
DRUG_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


def test_a_paired_difference_matches_the_textbook_answer():
    interval = paired([b - a for a, b in zip(DRUG_1, DRUG_2, strict=True)])
    assert interval.mean == pytest.approx(1.58)
    assert (interval.low, interval.high) == pytest.approx((0.7001142, 2.4598858), abs=1e-6)
    assert interval.p_t == pytest.approx(0.002833, abs=1e-6)
    assert interval.n == 10 and interval.df == 9


@pytest.mark.parametrize("n", [3, 5, 10])
def test_the_exact_sign_flip_test_gives_two_in_two_to_the_n_when_every_round_agrees(n):
    # Every difference positive: of the 2^n sign patterns, only all-plus and all-minus are as extreme.
    interval = paired(np.arange(1, n + 1) / 100)
    assert interval.p_exact == pytest.approx(2 / 2**n)


def test_welch_matches_the_textbook_answer():
    mean_std = [(float(np.mean(x)), float(np.std(x, ddof=1)), 10) for x in (DRUG_1, DRUG_2)]
    interval = welch(*mean_std)
    assert interval.mean == pytest.approx(1.58)
    assert (interval.low, interval.high) == pytest.approx((-0.2054832, 3.3654832), abs=1e-6)
    assert interval.p_t == pytest.approx(0.07939, abs=1e-5)
    assert interval.df == pytest.approx(17.776, abs=1e-3)


def test_holm_multiplies_the_kth_smallest_by_m_minus_k_plus_1_and_keeps_the_order():
    # Holm (1979) with four hypotheses: 0.005·4, 0.01·3, 0.03·2 and 0.04·1 raised to the running maximum.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == [1.0, 1.0]
    assert holm([]) == []


def test_under_no_true_effect_about_five_percent_of_the_intervals_exclude_zero():
    generator = np.random.default_rng(0)
    samples = generator.normal(0.0, 0.02, size=(2000, 10))
    excluded = [paired(s).excludes_zero for s in samples]
    assert 0.035 <= np.mean(excluded) <= 0.065
    rejected = [paired(s).p_exact < 0.05 for s in samples[:400]]
    assert np.mean(rejected) <= 0.075  # the exact test holds its level too


def test_a_real_effect_is_found_and_its_interval_covers_it():
    generator = np.random.default_rng(1)
    covered = [(i.low <= 0.02 <= i.high) for i in (paired(generator.normal(0.02, 0.01, 10)) for _ in range(500))]
    assert 0.92 <= np.mean(covered) <= 0.98
    assert paired(generator.normal(0.02, 0.01, 10)).excludes_zero


def test_the_decision_uses_the_exact_test_with_few_rounds_and_the_t_test_from_ten():
    few = paired([0.02, 0.03, 0.025])
    assert few.excludes_zero and few.p_t < 0.05  # the t interval alone would call it
    assert decision_p(few) == few.p_exact == 0.25  # three rounds cannot show it without assuming normality
    many = paired(np.linspace(0.01, 0.03, EXACT_BELOW))
    assert decision_p(many) == many.p_t


def test_a_verdict_needs_the_interval_to_exclude_zero_and_the_corrected_p_under_five_percent():
    clear = paired(np.linspace(0.01, 0.03, 10))
    assert verdict(clear, 0.01) == "helps"
    assert verdict(paired(-np.linspace(0.01, 0.03, 10)), 0.01) == "hurts"
    assert verdict(clear, 0.06) == "unclear"
    assert verdict(paired([-0.01, 0.01, 0.02, -0.02]), 0.01) == "unclear"


def test_differences_without_spread_give_a_point_interval():
    same = paired([0.01, 0.01, 0.01])
    assert (same.low, same.high, same.p_t, same.p_exact) == (0.01, 0.01, 0.0, 0.25)
    none = paired([0.0, 0.0])
    assert none.p_t == none.p_exact == 1.0 and not none.excludes_zero


def test_many_rounds_skip_the_exact_test_and_decide_by_the_t_test():
    interval = paired(np.linspace(-0.01, 0.03, 40))
    assert interval.p_exact is None and decision_p(interval) == interval.p_t


def record(arch: str, ws: bool, aux: float, accuracies: list[float], **extra: object) -> dict:
    name = f"{arch}-{'ws' if ws else 'sep'}-{f'aux{aux:g}' if aux else 'noaux'}"
    rounds = [{"round": r, "test_accuracy": a} for r, a in enumerate(accuracies)]
    spread = float(np.std(accuracies, ddof=1)) if len(accuracies) > 1 else 0.0
    return {"name": name, "arch": arch, "weight_sharing": ws, "aux_weight": aux, "status": "ok", "rounds": rounds,
            "test_accuracy_mean": float(np.mean(accuracies)), "test_accuracy_std": spread,
            "lr": 1e-3, "batch_size": 100, "weight_decay": 0.0, **extra}  # fmt: skip


def study(noise: np.ndarray, arch: str = "lenet", aux_gain: float = 0.05, **extra: object) -> list[dict]:
    """Four variants on the same rounds: a round-level difficulty shared by all, the auxiliary loss adding
    ``aux_gain``, weight sharing nothing, plus each variant's own small noise."""
    base = 0.85 + noise[0]
    return [
        record(arch, False, 0, base + noise[1], **extra),
        record(arch, True, 0, base + noise[2], **extra),
        record(arch, False, 1.0, base + aux_gain + noise[3], **extra),
        record(arch, True, 1.0, base + aux_gain + noise[4], **extra),
    ]


def noise(seed: int, rounds: int = 10) -> np.ndarray:
    generator = np.random.default_rng(seed)
    return np.concatenate([generator.normal(0, 0.03, (1, rounds)), generator.normal(0, 0.004, (4, rounds))])


def test_the_study_pairs_each_technique_with_its_reference_round_by_round():
    effects = study_effects(study(noise(2)))
    assert [e["effect"] for e in effects] == ["weight sharing", "auxiliary loss", "both", "sharing, given aux"]
    by = {e["effect"]: e for e in effects}
    assert by["auxiliary loss"]["verdict"] == by["both"]["verdict"] == "helps"
    assert by["auxiliary loss"]["mean"] == pytest.approx(0.05, abs=0.006)
    assert (
        by["weight sharing"]["verdict"] == "unclear" and by["weight sharing"]["low"] < 0 < by["weight sharing"]["high"]
    )
    assert (
        by["sharing, given aux"]["treated"] == "lenet-ws-aux1"
        and by["sharing, given aux"]["reference"] == "lenet-sep-aux1"
    )
    # Paired: the shared round difficulty (std 3 points) cancels, so the interval is far narrower than it.
    aux = by["auxiliary loss"]
    assert aux["high"] - aux["low"] < 0.01
    assert [e["p_holm"] for e in effects] == pytest.approx(holm([e["p_t"] for e in effects]), abs=1e-6)  # 10 rounds


def test_the_study_reads_rounds_by_index_and_skips_what_does_not_pair():
    records = study(noise(3))
    records[0]["rounds"] = list(reversed(records[0]["rounds"]))  # the order in the file does not matter
    assert study_effects(records) == study_effects(study(noise(3)))
    records[1]["status"] = "failed"
    assert "weight sharing" not in {e["effect"] for e in study_effects(records)}
    one_round = study(noise(3, rounds=1))
    assert study_effects(one_round) == []


def test_with_few_rounds_no_verdict_rests_on_the_normal_approximation():
    effects = study_effects(study(noise(4, rounds=3), aux_gain=0.05))
    assert all(e["verdict"] == "unclear" for e in effects)  # 3 rounds: the exact test's p is at least 0.25


def test_each_architecture_and_each_aux_weight_gets_its_own_effects_and_sharing_alone_is_counted_once():
    records = study(noise(5)) + study(noise(6), arch="conv6")
    extra = record("lenet", False, 0.5, records[0]["test_accuracy_mean"] + np.zeros(10))
    extra["rounds"] = [dict(r, test_accuracy=r["test_accuracy"] + 0.01) for r in records[0]["rounds"]]
    extra_ws = dict(extra, name="lenet-ws-aux0.5", weight_sharing=True)
    effects = study_effects([*records, extra, extra_ws])
    rows = [(e["row"], e["effect"], e["treated"]) for e in effects]
    assert sum(1 for row, effect, _ in rows if row == "lenet" and effect == "weight sharing") == 1
    assert ("lenet", "auxiliary loss", "lenet-sep-aux0.5") in rows and (
        "lenet",
        "auxiliary loss",
        "lenet-sep-aux1",
    ) in rows
    assert {row for row, _, _ in rows} == {"lenet", "conv6"}


def test_a_tunes_cells_pair_whatever_each_selected():
    records = study(noise(7))
    for r, lr in zip(records, (1e-3, 3e-3, 1e-3, 3e-3), strict=True):
        r["lr"] = lr
    # In a bench the learning rate is a grid axis: each value a row of its own, paired within it.
    assert [(e["row"], e["effect"]) for e in study_effects(records, "bench")] == [
        ("lenet · lr 0.001", "auxiliary loss")
    ]
    assert len(study_effects(records, "tune")) == 4


def test_summary_md_holds_the_effects_table():
    records = study(noise(8))
    document = {
        "kind": "bench",
        "variants": records,
        "effects": study_effects(records),
        "data": "d",
        "device": "cpu",
        "digitcmp_version": "x",
        "config": {"rounds": 10, "pairs": 1000, "test_pairs": 1000},
    }
    markdown = summary_markdown(document)
    assert "| architecture | effect | difference | 95% interval | p | p (Holm) | verdict |" in markdown
    assert "| lenet | auxiliary loss | +" in markdown and "| helps |" in markdown


def results_folder(path, records: list[dict], seed: int = 0, data: str = "bundled") -> str:
    path.mkdir(parents=True)
    config = {"seed": seed, "pairs": 1000, "test_pairs": 1000, "val_fraction": 0.1, "rounds": 10}
    document = {"kind": "bench", "config": config, "data": data, "variants": records}
    (path / "results.json").write_text(json.dumps(document))
    return str(path)


def test_two_runs_on_the_same_rounds_compare_paired_and_on_other_rounds_with_welch(tmp_path):
    a = read_side(results_folder(tmp_path / "a", study(noise(9))))
    shifted = study(noise(9))
    for r in shifted:
        r["rounds"] = [dict(x, test_accuracy=x["test_accuracy"] + 0.02) for x in r["rounds"]]
        r["test_accuracy_mean"] += 0.02
    rows = compare_sides(a, read_side(results_folder(tmp_path / "b", shifted)))
    assert [r["test"] for r in rows] == ["paired"] * 4
    assert all(r["mean"] == pytest.approx(0.02) and not r["agree"] for r in rows)
    other_seed = compare_sides(a, read_side(results_folder(tmp_path / "c", shifted, seed=1)))
    assert [r["test"] for r in other_seed] == ["Welch"] * 4
    # Across different rounds the shared difficulty no longer cancels: the same +2 points is within noise.
    assert all(r["agree"] and r["low"] < 0 for r in other_seed)


def test_a_run_against_a_reports_table_uses_welch_on_the_published_figures():
    preset = get_preset("strided-cnn-sgd")
    cells = {c.label: c for c in preset.cells}
    run = Side("run", {label: published_side(preset.name).cells[label] for label in cells}, protocol=("x",))
    rows = compare_sides(run, published_side(preset.name))
    assert len(rows) == 4 and all(r["test"] == "Welch" and r["mean"] == 0 and r["agree"] for r in rows)
    first = cells[rows[0]["cell"]].published
    far = Side("run", {rows[0]["cell"]: Figure(rows[0]["cell"], first[0] - 0.1, first[1], 10)})
    [row] = compare_sides(far, published_side(preset.name))
    expected = welch((first[0] - 0.1, first[1], 10), (first[0], first[1], 10))
    assert (row["low"], row["high"]) == pytest.approx((expected.low, expected.high), abs=1e-6)
    assert row["agree"] is False


def test_a_best_epoch_report_is_compared_with_the_runs_best_epoch_figure(tmp_path):
    preset = get_preset("three-pipes")
    cell = next(c for c in preset.cells if c.published)
    best = {"best_epoch_test_accuracy_mean": cell.published[0], "best_epoch_test_accuracy_std": cell.published[1]}
    run = record("shallow-fc", False, 0, [0.5] * 5 + [0.6] * 5, cell=cell.label, **best)
    [row] = compare_sides(read_side(results_folder(tmp_path / "a", [run])), published_side(preset.name))
    assert row["a_mean"] == pytest.approx(cell.published[0]) and row["agree"]
    del run["best_epoch_test_accuracy_mean"]
    with pytest.raises(DigitcmpError, match="--curves full"):
        compare_sides(read_side(results_folder(tmp_path / "b", [run])), published_side(preset.name))


def test_compare_prints_a_table_and_json(tmp_path):
    a = results_folder(tmp_path / "a", study(noise(10)))
    result = run("compare", a, a)
    assert result.exit_code == 0, result.output
    assert "B − A, test accuracy" in result.output and "paired" in result.output and "agree" in result.output
    result = run("compare", a, a, "--json")
    cells = json.loads(result.output)["cells"]
    assert len(cells) == 4 and all(c["mean"] == 0 and c["agree"] for c in cells)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("nowhere/results",), ("nowhere/results", "no results.json")),
        (("batchnorm",), ("unknown preset 'batchnorm'", "batchnorm-cv")),
        (("three-pipes",), ("share no cell", "--preset")),
    ],
)
def test_compare_mistakes_end_in_one_line(tmp_path, args, words):
    a = results_folder(tmp_path / "a", study(noise(11)))
    assert_one_line_error(run("compare", a, *args), 2, *words)


def test_a_file_that_is_not_a_results_document_is_refused(tmp_path):
    (tmp_path / "results.json").write_text("[1, 2]")
    assert_one_line_error(run("compare", str(tmp_path), "three-pipes"), 2, "not a results.json")
