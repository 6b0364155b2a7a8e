"""What a command asks, resolved once: --quick, a preset's protocol and search, the all-pairs rule, the grid axes
among the settings, and the options each generated from its setting's declaration."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from digitcmp.archs import ARCHS, STUDY
from digitcmp.cli import app
from digitcmp.errors import DigitcmpError
from digitcmp.grid import QUICK_ROUNDS
from digitcmp.plan import (
    BenchRequest,
    TrainRequest,
    TuneRequest,
    plan_bench,
    plan_train,
    plan_tune,
    refuse_beside_resume,
)
from digitcmp.presets import get_preset


def test_quick_is_three_rounds_of_each_architectures_quick_epochs_unless_epochs_are_given():
    quick = plan_bench(BenchRequest(quick=True), {}, 1000, None, 0)
    assert quick.config.rounds == QUICK_ROUNDS and {job.variant.arch for job in quick.cells} == set(STUDY)
    assert {job.variant.arch: job.config.epochs for job in quick.cells} == {a: ARCHS[a].quick_epochs for a in STUDY}
    assert quick.total_epochs == sum(ARCHS[a].quick_epochs for a in STUDY) * 4 * QUICK_ROUNDS  # 4 techniques each
    given = plan_bench(BenchRequest(quick=True, rounds=5), {"epochs": 2}, 1000, None, 0)
    assert given.config.rounds == 5 and {job.config.epochs for job in given.cells} == {2}


def test_grid_settings_become_axes_and_the_others_apply_to_every_cell():
    settings = {"lr": (1e-3, 3e-3), "dropout": (0.0, 0.2), "rotate": 10.0, "ensemble": 2}
    plan = plan_bench(BenchRequest(archs="deep-fc", aux_weights="1"), settings, 300, 100, 7)
    config = plan.config
    assert config.lrs == (1e-3, 3e-3) and config.tower_axes == {"dropout": (0.0, 0.2)}
    assert config.overrides["rotate"] == 10.0 and config.variant_options["ensemble"] == 2
    assert (config.pairs, config.test_pairs, config.seed, config.val_fraction) == (300, 100, 7, 0.1)
    assert len(plan.cells) == 2 * 2 * 2  # lr × dropout × weight sharing, auxiliary weight 1 only
    assert {(job.config.lr, job.variant.dropout, job.config.rotate, job.variant.ensemble) for job in plan.cells} == {
        (lr, dropout, 10.0, 2) for lr in (1e-3, 3e-3) for dropout in (0.0, 0.2)
    }


def test_a_preset_brings_its_cells_and_validation_share_and_refuses_grid_flags():
    plan = plan_bench(BenchRequest(preset="budget-convnet"), {}, 1000, None, 0)
    assert plan.config.val_fraction == get_preset("budget-convnet").train["val_fraction"] == 0.0
    assert [job.cell for job in plan.cells] == list(get_preset("budget-convnet").cells)
    with pytest.raises(DigitcmpError, match=r"--preset brings its own cells; drop --arch, --quick, --lr"):
        plan_bench(BenchRequest(preset="budget-convnet", archs="lenet", quick=True), {"lr": (1e-3,)}, 1000, None, 0)


def test_resume_refuses_the_options_that_would_change_the_run_and_keeps_those_that_do_not():
    refuse_beside_resume({"resume": "--resume", "device": "--device", "quiet": "--quiet", "kind": "--executor",
                          "data_dir": "--data-dir", "baseline": "--compare"})  # fmt: skip
    with pytest.raises(DigitcmpError, match=r"own configuration; drop --arch, --pairs, --lr$"):
        refuse_beside_resume({"resume": "--resume", "archs": "--arch", "device": "--device", "pairs": "--pairs",
                              "lr": "--lr"})  # fmt: skip


def test_tune_takes_a_presets_search_with_its_epochs_for_the_tuning_trainings():
    search = {"trials": 0, "folds": 0, "holdout": 0.2, "tune_pairs": 1000, "rounds": 10}
    plan = plan_tune(TuneRequest(preset="joint-conv6-grid"), search, {}, 1000, None, 0)
    config = plan.config
    assert (config.lrs, config.aux_weights, config.tune_epochs) == ((1e-3, 5e-3, 1e-2), (0.5, 1.0), 50)
    assert all(len(cell.trials) >= 3 for cell in plan.cells)
    with pytest.raises(DigitcmpError, match="searched nothing"):
        plan_tune(TuneRequest(preset="budget-convnet"), search, {}, 1000, None, 0)


def test_train_resolves_the_variant_and_recipe_and_refuses_an_all_pairs_loss_that_cannot_apply():
    job = plan_train(TrainRequest(), {"epochs": 3, "channels": (8,)})
    assert (job.variant.arch, job.variant.channels, job.config.epochs, job.config.optimizer) == (
        "vgg4",
        (8, 8, 16, 16),
        3,
        "adamw",
    )
    assert plan_train(TrainRequest(), {"all_pairs": True}).config.all_pairs  # structured head, auxiliary loss
    with pytest.raises(DigitcmpError, match="--all-pairs needs the structured head"):
        plan_train(TrainRequest(), {"all_pairs": True, "head": "mlp"})


@pytest.mark.parametrize(
    ("command", "flag", "text"),
    [
        ("train", "--rotate", "[0<=x<=45]"),
        ("train", "--optimizer", "adam|adamw|sgd"),
        ("bench", "--lr", "a comma list"),
        ("bench", "--executor", "local|ray"),
        ("bench", "--compare", "Baseline results.json"),
        ("tune", "--holdout", "[0.05<=x<=0.5]"),
        ("tune", "--aux-weight", "searched where it is on"),
    ],
)
def test_each_option_shows_its_declared_range_choices_or_help(command, flag, text):
    output = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "250"}).output
    row = next(line for line in output.splitlines() if f" {flag} " in line)
    assert text in row, row
