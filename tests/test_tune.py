"""Tune: the grid per cell, sampled trials, tuning draws apart from the test digits, selection by validation,
the evaluation of the selection, the files, and Ctrl-C."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import digitcmp.tune as tune_module
from digitcmp.cli import app
from digitcmp.data import Digits, DigitSource, draw_tuning_rounds, load_source
from digitcmp.errors import DigitcmpError
from digitcmp.preprocess import pool_digits
from digitcmp.train import RoundResult, RunResult
from digitcmp.tune import Cell, CellSpec, TuneConfig, candidates, run_tune, tune_cells

CPU = torch.device("cpu")
TINY = {"tune_pairs": 200, "rounds": 2, "pairs": 100, "test_pairs": 100, "overrides": {"epochs": 2}}


def test_each_cell_searches_its_grid_or_a_seeded_sample_of_it():
    config = TuneConfig(archs=("lenet",), aux_weights=(0.5, 1.0), lrs=(1e-3, 3e-3), tower_axes={"dropout": (0.0, 0.3)})
    none, both = (candidates(config, CellSpec("lenet", key, {}, {})) for key in ("none", "both"))
    assert len(none) == 2 * 2 and len(both) == 2 * 2 * 2  # the auxiliary weight is searched where the loss is on
    assert {(t.job.variant.weight_sharing, t.job.variant.aux_weight > 0) for t in both} == {(True, True)}
    assert set(both[0].settings) == {"aux_weight", "dropout", "lr"} and set(none[0].settings) == {"dropout", "lr"}
    both_cell = CellSpec("lenet", "both", {}, {})
    sampled = candidates(replace(config, trials=3), both_cell)
    again = candidates(replace(config, trials=3), both_cell)
    assert len(sampled) == 3 and [t.settings for t in sampled] == [t.settings for t in again]  # seeded
    assert {repr(t.settings) for t in sampled} <= {repr(t.settings) for t in both}
    with pytest.raises(DigitcmpError, match="technique"):
        TuneConfig(archs=("lenet",), techniques=("sharing",))
    with pytest.raises(DigitcmpError, match="--folds"):
        TuneConfig(archs=("lenet",), folds=1)


def test_tuning_pairs_come_from_training_digits_and_folds_partition_them():
    source = load_source(None)
    training = {digit.tobytes() for digit in pool_digits(source.train.images)}
    folds = draw_tuning_rounds(source, 300, seed=0, holdout=0.2, folds=3)
    assert [r.index for r in folds] == [-1, -2, -3]  # apart from the evaluation rounds 0, 1, ...
    assert all(len(r.train) == 200 and len(r.val) == 100 and r.test is r.val for r in folds)
    validation = torch.cat([r.val.inputs for r in folds])
    assert len({pair.numpy().tobytes() for pair in validation}) == 300  # every pair validates exactly once
    digits = torch.cat([torch.cat([r.train.inputs, r.val.inputs]) for r in folds]).flatten(0, 1)
    assert {digit.numpy().tobytes() for digit in digits} <= training  # never a test digit
    split = draw_tuning_rounds(source, 300, seed=0, holdout=0.2)
    assert len(split) == 1 and (len(split[0].train), len(split[0].val)) == (240, 60)


def with_test_digits(source: DigitSource, images: np.ndarray, labels: np.ndarray) -> DigitSource:
    return DigitSource(source.train, Digits(images, labels, "replaced test digits"))


@pytest.mark.slow
def test_test_pairs_never_influence_a_choice():
    source = load_source(None)
    rng = np.random.default_rng(0)
    other = with_test_digits(source, rng.permutation(source.test.images), rng.permutation(source.test.labels))
    config = TuneConfig(archs=("shallow-fc",), lrs=(3e-4, 3e-3), folds=2, **TINY)
    original, replaced = list(tune_cells(config, source, CPU)), list(tune_cells(config, other, CPU))
    for a, b in zip(original, replaced, strict=True):
        assert [t.scores for t in a.trials] == [t.scores for t in b.trials]
        assert a.selected.settings == b.selected.settings
    tests = [[r.test_accuracy for r in cell.outcome.result.rounds] for cell in (*original, *replaced)]
    assert tests[: len(original)] != tests[len(original) :]  # the test pairs did change


@pytest.mark.slow
def test_the_selection_is_the_best_validation_score_and_is_trained_on_the_evaluation_rounds():
    settings = {**TINY, "tune_pairs": 400, "overrides": {"epochs": 5}}
    config = TuneConfig(archs=("shallow-fc",), techniques=("both",), lrs=(1e-5, 3e-3), **settings)
    (cell,) = tune_cells(config, load_source(None), CPU)
    scores = {trial.settings["lr"]: trial.score for trial in cell.trials}
    assert scores[3e-3] > scores[1e-5]  # 1e-5 learns nothing in five epochs
    assert cell.selected.settings["lr"] == 3e-3
    result = cell.outcome.result
    assert [r.round for r in result.rounds] == [0, 1] and result.config.lr == 3e-3 and result.config.curves


def test_a_trial_scores_the_mean_of_its_folds_and_the_cell_selects_the_best_mean():
    jobs = candidates(TuneConfig(archs=("shallow-fc",), techniques=("none",), lrs=(1e-3, 3e-3)),
                      CellSpec("shallow-fc", "none", {}, {}))  # fmt: skip
    jobs[0].scores, jobs[1].scores = [0.9, 0.5, 0.5], [0.8, 0.7, 0.7]  # the first fold alone would pick the other
    assert jobs[0].score == pytest.approx(0.6333333) and jobs[1].score == pytest.approx(0.7333333)
    cell = Cell(CellSpec("shallow-fc", "none", {}, {}), jobs)
    assert cell.selected is jobs[1]


def test_ctrl_c_keeps_the_cells_already_finished(monkeypatch, tmp_path):
    calls = []
    real = tune_module.tune_cell

    def interrupt_third(cell, *args):
        calls.append(cell.technique)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(cell, *args)

    monkeypatch.setattr(tune_module, "tune_cell", interrupt_third)
    run = run_tune(TuneConfig(archs=("shallow-fc",), **TINY), load_source(None), CPU, tmp_path)
    assert run.interrupted and [c["technique"] for c in run.document["cells"]] == ["none", "weight sharing"]
    assert json.loads((tmp_path / "results.json").read_text())["cells"] == run.document["cells"]


def test_resume_trains_only_the_cells_an_interrupted_tune_left(monkeypatch, tmp_path):
    trained: list[str] = []
    stop = {"at": "weight sharing"}

    def instant(variant, rounds, config, device, seed, on_epoch=None) -> RunResult:
        if variant.technique == stop["at"]:
            raise KeyboardInterrupt
        trained.append(variant.technique)
        results = [RoundResult(r.index, 1.0, 1.0, 1.0, 1.0, 0.0) for r in rounds]
        return RunResult(variant, 1, config, "cpu", results, 0, {})

    monkeypatch.setattr(tune_module, "train_variant", instant)
    args = ["--arch", "shallow-fc", "--technique", "none,ws,aux", "--rounds", "1", "--pairs", "20",
            "--tune-pairs", "20"]  # fmt: skip
    first = CliRunner().invoke(app, ["tune", *args, "--out", str(tmp_path), "-q"], env={"DIGITCMP_DATA": ""})
    assert first.exit_code == 130, first.output
    kept = {path.name: path.stat().st_mtime_ns for path in (tmp_path / "cells").glob("*.json")}
    assert len(kept) == 1 and trained == ["none", "none"]  # one trial, then its evaluation
    trained.clear()
    stop["at"] = None
    again = ["tune", "--resume", str(tmp_path), "-q"]  # the run's own grid
    resumed = CliRunner().invoke(app, again, env={"DIGITCMP_DATA": ""})
    assert resumed.exit_code == 0, resumed.output
    assert trained == ["weight sharing"] * 2 + ["auxiliary loss"] * 2
    assert {name: (tmp_path / "cells" / name).stat().st_mtime_ns for name in kept} == kept  # finished ones untouched
    cells = json.loads((tmp_path / "results.json").read_text())["cells"]
    assert [(c["arch"], c["technique"]) for c in cells] == [
        ("shallow-fc", "none"), ("shallow-fc", "weight sharing"), ("shallow-fc", "auxiliary loss")
    ]  # fmt: skip


def test_trials_are_scored_by_validation_accuracy_never_by_how_well_they_fit(monkeypatch):
    fits = {1e-3: 0.99, 3e-3: 0.60}  # the first fits its training pairs best; the second validates best
    validates = {1e-3: 0.55, 3e-3: 0.80}

    def instant(variant, rounds, config, device, seed, on_epoch=None) -> RunResult:
        results = [RoundResult(r.index, fits[config.lr], validates[config.lr], 0.5, 0.5, 0.0) for r in rounds]
        return RunResult(variant, 1, config, "cpu", results, 0, {})

    monkeypatch.setattr(tune_module, "train_variant", instant)
    config = TuneConfig(archs=("shallow-fc",), techniques=("none",), lrs=(1e-3, 3e-3), **TINY)
    (cell,) = tune_cells(config, load_source(None), CPU)
    assert {trial.settings["lr"]: trial.scores for trial in cell.trials} == {1e-3: [0.55], 3e-3: [0.80]}
    assert cell.selected.settings["lr"] == 3e-3


def test_tuning_trains_its_own_epochs_and_the_evaluation_trains_the_cells(monkeypatch):
    epochs: list[tuple[int, bool]] = []

    def instant(variant, rounds, config, device, seed, on_epoch=None) -> RunResult:
        epochs.append((config.epochs, config.curves))
        results = [RoundResult(r.index, 1.0, 1.0, 1.0, 1.0, 0.0) for r in rounds]
        return RunResult(variant, 1, config, "cpu", results, 0, {})

    monkeypatch.setattr(tune_module, "train_variant", instant)
    settings = {**TINY, "overrides": {"epochs": 7}}
    config = TuneConfig(archs=("shallow-fc",), techniques=("none",), lrs=(1e-3, 3e-3), tune_epochs=2, **settings)
    (cell,) = tune_cells(config, load_source(None), CPU)
    assert epochs == [(2, "off"), (2, "off"), (7, "light")]  # two short trials, then the selection in full, with curves
    assert cell.outcome.job.config.epochs == 7 and cell.outcome.result.config.epochs == 7


@pytest.mark.slow
def test_tune_command_prints_the_table_and_writes_its_files(tmp_path):
    args = ["tune", "--arch", "shallow-fc", "--lr", "1e-3,3e-3", "--folds", "3", "--epochs", "2", "--rounds", "2",
            "--pairs", "100", "--tune-pairs", "150", "--out", str(tmp_path)]  # fmt: skip
    result = CliRunner().invoke(app, args, env={"DIGITCMP_DATA": ""})
    assert result.exit_code == 0, result.output
    assert "selected" in result.stdout and "3-fold cross-validation" in result.stdout
    assert {"results.json", "results.csv", "summary.md", "curves.png", "accuracy.png", "best.pt"} <= {
        p.name for p in tmp_path.iterdir()
    }
    document = json.loads((tmp_path / "results.json").read_text())
    assert document["kind"] == "tune" and len(document["cells"]) == 4
    for cell in document["cells"]:
        assert cell["status"] == "ok" and set(cell["selected"]) == {"lr"} | (
            {"aux_weight"} if cell["aux_weight"] else set()
        )
        assert len(cell["trials"]) == 2 and all(len(t["fold_val_accuracies"]) == 3 for t in cell["trials"])
        assert len(cell["rounds"]) == 2 and {"test_accuracy_mean", "test_accuracy_std"} <= set(cell)
    assert (
        "| architecture | technique | selected | validation | test accuracy |" in (tmp_path / "summary.md").read_text()
    )
    assert len((tmp_path / "results.csv").read_text().splitlines()) == 1 + 4 * 2
    # The four cells evaluate on the same rounds: each technique's effect pairs them, whatever lr each selected.
    assert [e["effect"] for e in document["effects"]] == ["weight sharing", "auxiliary loss", "both",
                                                          "sharing, given aux"]  # fmt: skip
    assert all(e["row"] == "shallow-fc" and e["n"] == 2 for e in document["effects"])
    assert "Effects on test accuracy, paired over rounds" in result.stdout
