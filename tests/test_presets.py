"""The reports' presets: each builds the architectures its report describes and runs; the comparison with the
published table follows the combined-spread rule."""

from __future__ import annotations

import json
import math

import pytest
from conftest import assert_one_line_error, refuse_training, run

from digitcmp.config import TrainConfig
from digitcmp.model.network import ComparisonNet, count_parameters
from digitcmp.presets import PRESETS, get_preset
from digitcmp.reproduce import reproduction, within
from digitcmp.variant import create_variant


def test_five_presets_each_with_its_report_and_published_cells():
    assert len(PRESETS) == 5 and len({p.report for p in PRESETS.values()}) == 5
    published = [c for p in PRESETS.values() for c in p.cells if c.published]
    assert len(published) == 33 and all(0.5 < c.published[0] < 1 and 0 < c.published[1] < 0.1 for c in published)
    for preset in PRESETS.values():
        assert preset.choices and preset.summary
        for cell in preset.cells:
            create_variant(**cell.variant)  # every cell is a valid variant
            TrainConfig.for_arch(cell.variant["arch"], **{**preset.train, **cell.train})


def test_the_strided_cnn_has_the_reports_72554_parameters():
    cell = next(c for c in get_preset("strided-cnn-sgd").cells if c.technique == "both")
    assert count_parameters(ComparisonNet(create_variant(**cell.variant))) == 72_554


def test_the_budget_convnet_fits_the_reports_65_to_75k_budget():
    (cell,) = get_preset("budget-convnet").cells
    assert 65_000 <= count_parameters(ComparisonNet(create_variant(**cell.variant))) <= 75_000


def test_three_pipes_deep_fc_has_about_200k_parameters_with_two_pipes():
    cell = next(c for c in get_preset("three-pipes").cells if c.row == "deep FC" and c.technique == "none")
    assert 190_000 < count_parameters(ComparisonNet(create_variant(**cell.variant))) < 230_000


def test_within_the_combined_spread():
    assert within((0.90, 0.01), (0.92, 0.01))  # 2 points apart, allowed 2.8
    assert not within((0.90, 0.01), (0.94, 0.01))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_runs_and_reports_against_its_table(tmp_path, name):
    args = ["bench", "--preset", name, "--rounds", "1", "--epochs", "1", "--pairs", "60", "--out", str(tmp_path)]
    result = run(*args)
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "reproduction.json").read_text())
    preset = get_preset(name)
    assert [r["cell"] for r in rows] == [c.label for c in preset.cells if c.published]
    records = {record["cell"]: record for record in json.loads((tmp_path / "results.json").read_text())["variants"]}
    for row, cell in zip(rows, (c for c in preset.cells if c.published), strict=True):
        assert row["report"] == preset.report and row["command"].startswith("digitcmp bench --preset")
        assert (row["published_mean"], row["published_std"]) == cell.published
        metric = "best_epoch_test_accuracy" if preset.published_metric == "best-epoch" else "test_accuracy"
        measured = records[row["cell"]][f"{metric}_mean"], records[row["cell"]][f"{metric}_std"]
        assert (row["run_mean"], row["run_std"]) == pytest.approx(measured, abs=1e-6)  # the metric the report published
        gap, spread = abs(measured[0] - cell.published[0]), 2 * math.hypot(cell.published[1], measured[1])
        assert row["within"] == (gap <= spread)  # |Δ| ≤ 2·√(σ₁² + σ₂²)
    assert "Against the report" in result.stdout


@pytest.mark.parametrize("name", list(PRESETS))
def test_the_comparison_uses_the_metric_the_report_published(name):
    """A last epoch 20 points below the report's figure and a best epoch level with it: the row shows, and judges,
    the metric the report published."""
    preset = get_preset(name)
    cells = [cell for cell in preset.cells if cell.published]
    records = [{"cell": cell.label, "status": "ok", "seconds_per_round": 1.0,
                "test_accuracy_mean": cell.published[0] - 0.2, "test_accuracy_std": 0.001,
                "best_epoch_test_accuracy_mean": cell.published[0], "best_epoch_test_accuracy_std": 0.002}
               for cell in cells]  # fmt: skip
    best_epoch = preset.published_metric == "best-epoch"
    for row, cell in zip(reproduction(name, records, "digitcmp bench"), cells, strict=True):
        assert row["run_mean"] == round(cell.published[0] - (0 if best_epoch else 0.2), 6)
        assert row["run_std"] == (0.002 if best_epoch else 0.001)
        assert row["run_last_epoch_mean"] == round(cell.published[0] - 0.2, 6)
        assert row["within"] is best_epoch


def test_a_preset_refuses_grid_flags_and_unknown_names(tmp_path, monkeypatch):
    refuse_training(monkeypatch)
    out = ("--out", str(tmp_path / "run"))
    assert_one_line_error(run("bench", "--preset", "three-pipes", "--lr", "1e-3", *out), 2, "--lr")
    assert_one_line_error(run("bench", "--preset", "three-pipe", *out), 2, "did you mean 'three-pipes'")
    assert_one_line_error(run("tune", "--preset", "three-pipes", *out), 2, "searched nothing")
    assert not (tmp_path / "run").exists()
