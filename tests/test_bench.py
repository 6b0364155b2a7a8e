"""Bench: the grid, the paired design, failure isolation, interruption, model selection, files and the CI gate."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict

import pytest
import torch
from conftest import REPO, assert_one_line_error, refuse_training
from rich.console import Console
from typer.testing import CliRunner

import digitcmp.bench as bench_module
from digitcmp.archs import ARCHS
from digitcmp.bench import run_bench
from digitcmp.cli import app
from digitcmp.config import TrainConfig
from digitcmp.data import load_source
from digitcmp.errors import DigitcmpError
from digitcmp.gate import compare, read_baseline, recipe_changes
from digitcmp.grid import QUICK_ROUNDS, BenchConfig, Job, cell_key, expand
from digitcmp.model.checkpoint import load_checkpoint
from digitcmp.plan import BenchRequest, plan_bench
from digitcmp.report import compare_table
from digitcmp.study import Outcome, best_record, variant_record
from digitcmp.train import RoundResult, RunResult
from digitcmp.variant import Variant, create_variant

TINY = {"rounds": 2, "pairs": 100, "test_pairs": 100, "overrides": {"epochs": 1}}


def test_grid_covers_every_technique_and_applies_tower_axes_and_recipes():
    axes = {"channels": ((8,), (16,)), "head_width": (32, 64)}
    jobs = expand(BenchConfig(archs=("deep-fc", "conv6", "vgg4"), tower_axes=axes, lrs=(1e-3, 3e-3)))
    names = [job.variant.name for job in jobs]
    # deep-fc has no convolutions (1 channel setting), vgg4's structured head no width (1): 2 lrs, 4 techniques
    assert len(jobs) == (1 * 2 + 2 * 2 + 2 * 1) * 2 * 4
    assert len(set((j.variant, j.config.lr) for j in jobs)) == len(jobs)
    assert {j.variant.technique for j in jobs} == {"none", "weight sharing", "auxiliary loss", "both"}
    assert {"conv6-c8-ws-aux1-hw32", "deep-fc-sep-noaux", "vgg4-c8-ws-aux1"} <= set(names)
    assert next(j for j in jobs if j.variant.arch == "vgg4").variant.channels in ((8, 8, 16, 16), (16, 16, 32, 32))
    vgg = next(j for j in jobs if j.variant.arch == "vgg4")
    assert vgg.config.schedule == "onecycle" and vgg.config.swap  # the architecture's recipe
    fc = next(j for j in jobs if j.variant.arch == "deep-fc")
    assert fc.config.schedule == "constant" and fc.config.epochs == 25


def test_every_variant_sees_the_same_rounds_and_a_failure_does_not_stop_the_rest(monkeypatch, tmp_path):
    seen = []

    def fake_train(variant, rounds, config, device, seed, on_epoch):
        seen.append(rounds)
        if variant.arch == "deep-fc" and variant.weight_sharing:
            raise RuntimeError("out of memory\nmore detail")
        return fake_result(variant, 0.8, 0.8)

    monkeypatch.setattr(bench_module, "train_variant", fake_train)
    config = BenchConfig(archs=("shallow-fc", "deep-fc"), **TINY)
    study = run_bench(config, load_source(None), torch.device("cpu"), tmp_path)
    records = study.document["variants"]
    assert len(records) == 8 and all(rounds is seen[0] for rounds in seen)  # one draw, shared: a paired design
    failed = [r for r in records if r["status"] == "failed"]
    assert len(failed) == 2 and failed[0]["error"] == "RuntimeError: out of memory"
    assert not study.interrupted and len(list((tmp_path / "cells").glob("*.json"))) == 8  # every cell kept


def test_a_local_bench_reports_every_epoch_of_every_cell_to_the_progress_bar(monkeypatch, tmp_path):
    def fake_train(variant, rounds, config, device, seed, on_epoch):
        for _ in range(config.epochs):
            on_epoch(len(rounds))  # one epoch of every round, as training reports it
        return fake_result(variant, 0.8, 0.8)

    monkeypatch.setattr(bench_module, "train_variant", fake_train)
    config = BenchConfig(archs=("shallow-fc",), **TINY)
    counted: list[int] = []
    run_bench(config, load_source(None), torch.device("cpu"), tmp_path, on_epoch=counted.append)
    assert sum(counted) == sum(job.config.epochs for job in expand(config)) * config.rounds


def test_ctrl_c_keeps_the_variants_already_finished_and_resume_runs_only_the_rest(monkeypatch, tmp_path):
    calls = []

    def fake_train(variant, rounds, config, device, seed, on_epoch):
        calls.append(variant.name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return fake_result(variant, 0.8, 0.8)

    monkeypatch.setattr(bench_module, "train_variant", fake_train)
    config = BenchConfig(archs=("shallow-fc",), **TINY)
    study = run_bench(config, load_source(None), torch.device("cpu"), tmp_path)
    assert study.interrupted and [r["name"] for r in study.document["variants"]] == calls[:2]
    assert json.loads((tmp_path / "results.json").read_text())["variants"] == study.document["variants"]
    resumed = run_bench(config, load_source(None), torch.device("cpu"), tmp_path, resume=True)
    grid = [job.variant.name for job in expand(config)]
    assert calls[3:] == grid[2:]  # only the two cells left are trained again
    assert not resumed.interrupted and [r["name"] for r in resumed.document["variants"]] == grid  # grid order


def fake_result(variant: Variant, val: float, test: float) -> RunResult:
    rounds = [RoundResult(i, 0.9, val, test, 0.9, 1.0) for i in range(2)]
    return RunResult(variant, 10, TrainConfig(), "cpu", rounds, 0, {})


def test_best_model_is_chosen_by_validation_never_by_test():
    good_val = variant_record(Outcome(Job(create_variant("lenet", True, 1.0), TrainConfig()),
                                      fake_result(create_variant("lenet", True, 1.0), 0.95, 0.80)))  # fmt: skip
    good_test = variant_record(Outcome(Job(create_variant("lenet", False, 0.0), TrainConfig()),
                                       fake_result(create_variant("lenet", False, 0.0), 0.90, 0.99)))  # fmt: skip
    assert best_record([good_test, good_val]) is good_val
    assert best_record([{**good_val, "status": "failed"}]) is None
    # Without a validation split (a preset's protocol) the fit to the training pairs decides, still never the test.
    no_split = {"val_accuracy_mean": None}
    fits = {**good_val, **no_split, "train_accuracy_mean": 0.97, "test_accuracy_mean": 0.70}
    tests = {**good_test, **no_split, "train_accuracy_mean": 0.80, "test_accuracy_mean": 0.99}
    assert best_record([tests, fits]) is fits


def record(name: str, accuracy: float, seconds: float, **key) -> dict:
    base = {"arch": "lenet", "weight_sharing": True, "aux_weight": 1.0, "channels": [32, 64], "head": "mlp", "lr": 1e-3,
            "batch_size": 100, "weight_decay": 0.0}  # fmt: skip
    return {**base, **key, "name": name, "status": "ok", "test_accuracy_mean": accuracy, "seconds_per_round": seconds}


def test_compare_flags_accuracy_and_time_regressions_only_beyond_tolerance():
    baseline = {
        "variants": [
            record("a", 0.90, 1.0),
            record("b", 0.90, 1.0, aux_weight=0.0),
            record("c", 0.9, 1.0, arch="deep-fc"),
        ]
    }
    current = {"variants": [record("a", 0.88, 1.5), record("b", 0.85, 1.0, aux_weight=0.0),
                            record("c", 0.9, 3.0, arch="deep-fc"),
                            record("d", 0.5, 1.0, arch="conv6")]}  # fmt: skip
    rows = {r["name"]: r for r in compare(current, baseline, tolerance=0.03, time_tolerance=1.0)}
    assert not rows["a"]["regression"]  # -2 points, +50% time: within tolerance
    assert rows["b"]["accuracy_regression"] and rows["b"]["regression"]
    assert rows["c"]["time_regression"] and not rows["c"]["accuracy_regression"]
    assert rows["d"]["status"] == "new" and not rows["d"]["regression"]


def gate(old: dict, new: dict, **tolerances: float) -> dict:
    """The row compare gives one cell against its baseline cell."""
    settings = {"tolerance": 0.125, "time_tolerance": 1.0, **tolerances}
    (row,) = compare({"variants": [new]}, {"variants": [old]}, **settings)
    return row


# Accuracies and times that are exact in binary, so that a boundary is the boundary.
@pytest.mark.parametrize(
    ("baseline", "current", "regression"),
    [
        (0.875, 0.75, False),  # a drop of exactly the tolerance is allowed
        (0.875, 0.75 + 2**-10, False),
        (0.875, 0.75 - 2**-10, True),  # just beyond it is not
        (0.5, 0.875, False),  # an improvement far beyond the tolerance is no regression
    ],
)
def test_the_accuracy_gate_fails_only_a_drop_beyond_the_tolerance(baseline, current, regression):
    row = gate(record("a", baseline, 1.0), record("a", current, 1.0))
    assert row["status"] == "compared" and row["accuracy_delta"] == current - baseline
    assert row["accuracy_regression"] is regression and row["regression"] is regression


@pytest.mark.parametrize(
    ("baseline", "current", "slack", "regression"),
    [
        (2.0, 4.0, 0.0, False),  # twice as slow is exactly --time-tolerance 1.0
        (2.0, 4.0 + 2**-10, 0.0, True),
        (2.0, 1.0, 0.0, False),  # faster
        (4.0, 10.0, 5.0, True),  # +150 %, and 6 s more than a 5 s slack
        (4.0, 10.0, 6.0, False),  # 6 s more is exactly the slack
        (4.0, 10.0, 7.0, False),
    ],
)
def test_the_time_gate_fails_only_beyond_both_the_ratio_and_the_slack(baseline, current, slack, regression):
    row = gate(record("a", 0.9, baseline), record("a", 0.9, current), time_slack=slack)
    assert row["time_regression"] is regression and row["regression"] is regression
    assert not row["accuracy_regression"]


def test_a_failed_cell_is_a_regression_with_or_without_its_baseline_cell():
    failed = {**record("a", 0.9, 1.0), "status": "failed"}
    for baseline in ([record("a", 0.9, 1.0)], []):
        (row,) = compare({"variants": [failed]}, {"variants": baseline}, tolerance=0.03, time_tolerance=1.0)
        assert row["status"] == "failed" and row["regression"]
    (row,) = compare({"variants": [record("a", 0.9, 1.0)]}, {"variants": [failed]}, tolerance=0.03, time_tolerance=1.0)
    assert row["status"] == "new" and not row["regression"]  # a baseline cell that failed has nothing to compare


def test_compare_time_slack_forgives_noise_in_sub_second_variants_only():
    baseline = {"variants": [record("fast", 0.9, 0.2), record("slow", 0.9, 10.0, arch="deep-fc")]}
    current = {"variants": [record("fast", 0.9, 1.1), record("slow", 0.9, 25.0, arch="deep-fc")]}
    strict = {r["name"]: r for r in compare(current, baseline, tolerance=0.03, time_tolerance=1.0)}
    assert strict["fast"]["time_regression"] and strict["slow"]["time_regression"]  # +450%, +150%
    slack = {r["name"]: r for r in compare(current, baseline, tolerance=0.03, time_tolerance=1.0, time_slack=1.0)}
    assert not slack["fast"]["regression"]  # 0.9 s more: within the slack, whatever the ratio
    assert slack["slow"]["time_regression"]  # 15 s more: beyond both


def test_compare_names_training_settings_that_differ_from_the_baseline_cell():
    config = {"epochs": 60, "elastic": 0.5, "all_pairs": False, "curves": True}
    baseline = {
        "variants": [{**record("a", 0.99, 50.0), "train_config": config}, record("b", 0.9, 1.0, arch="deep-fc")]
    }
    changed = {**config, "epochs": 30, "all_pairs": True}
    current = {"variants": [{**record("a", 0.98, 25.0), "train_config": changed},
                            {**record("b", 0.9, 1.0, arch="deep-fc"), "train_config": config}]}  # fmt: skip
    rows = {r["name"]: r for r in compare(current, baseline, tolerance=0.03, time_tolerance=1.0)}
    assert rows["a"]["recipe_changes"] == ["all_pairs False→True", "epochs 60→30"]
    assert rows["b"]["recipe_changes"] == []  # an old baseline without train_config: nothing to compare
    console = Console(width=200, record=True)
    console.print(compare_table(list(rows.values()), 0.03, 1.0, 1.0))
    text = " ".join(console.export_text().split())  # the caption wraps at the table's width
    assert "Training settings differ from the baseline's — a: all_pairs False→True, epochs 60→30" in text


runner = CliRunner()
SMALL = ("--arch", "shallow-fc,deep-fc", "--rounds", "2", "--epochs", "2", "--pairs", "200")


def bench(*args: str):
    return runner.invoke(app, ["bench", *args], env={"DIGITCMP_DATA": ""})


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    result = bench(*SMALL, "--out", str(out), "-q")
    assert result.exit_code == 0, result.output
    return out, result


def test_bench_names_every_file_it_wrote(tmp_path):
    result = bench("--arch", "shallow-fc", "--rounds", "2", "--epochs", "1", "--pairs", "100", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in tmp_path.iterdir() if p.is_file() and p.name != "config.json")
    assert "effects.png" in written and f"results in {tmp_path}/ ({', '.join(written)})" in result.output


@pytest.mark.slow
def test_bench_writes_every_results_file(bench_run):
    out, result = bench_run
    assert {"results.json", "results.csv", "summary.md", "curves.png", "accuracy.png", "best.pt"} <= {
        p.name for p in out.iterdir()
    }
    document = json.loads((out / "results.json").read_text())
    assert document["schema_version"] == 2 and {"digitcmp_version", "created", "device", "config"} <= set(document)
    variant = document["variants"][0]
    for key in ("arch", "weight_sharing", "aux_weight", "params", "test_accuracy_mean", "test_accuracy_std",
                "digit_accuracy_mean", "train_accuracy_mean", "seconds_per_round"):  # fmt: skip
        assert key in variant
    first_round = variant["rounds"][0]
    assert {"round", "test_accuracy", "train_accuracy", "digit_accuracy", "seconds", "curves"} <= set(first_round)
    assert len(first_round["curves"]["train_loss"]) == 2 and len(first_round["curves"]["test_error"]) == 2
    assert len(document["variants"]) == 8
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 16 and rows[0]["name"] == variant["name"]
    assert "| architecture | none | weight sharing | auxiliary loss | both |" in (out / "summary.md").read_text()
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    model, _ = load_checkpoint(out / "best.pt")
    assert document["best"]["checkpoint"] == "best.pt" and model.variant.name == document["best"]["name"]
    assert "Test accuracy, mean ± std over 2 rounds" in result.stdout and "✅" in result.stdout
    # Both architectures' four effects, paired over the two rounds, in the terminal, the file and a plot.
    effects = document["effects"]
    assert [(e["row"], e["effect"]) for e in effects][:2] == [("shallow-fc", "weight sharing"),
                                                              ("shallow-fc", "auxiliary loss")]  # fmt: skip
    assert len(effects) == 8 and all(e["n"] == 2 for e in effects)
    assert "Effects on test accuracy, paired over rounds" in result.stdout
    assert "#### Effects on test accuracy" in (out / "summary.md").read_text()
    assert (out / "effects.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
@pytest.mark.parametrize("output", ["-q", "--json"])
def test_compare_against_a_better_baseline_exits_1(bench_run, tmp_path, output):
    out, _ = bench_run
    document = json.loads((out / "results.json").read_text())
    for variant in document["variants"]:
        variant["test_accuracy_mean"] += 0.2
    better = tmp_path / "better.json"
    better.write_text(json.dumps(document))
    result = bench("--arch", "shallow-fc", *SMALL[2:], "--out", str(tmp_path / "r"), output, "--compare", str(better))
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("error: regression against")


@pytest.mark.slow
def test_compare_with_the_same_run_passes(bench_run, tmp_path):
    out, _ = bench_run
    baseline = out / "results.json"
    result = bench(*SMALL, "--out", str(tmp_path), "-q", "--compare", str(baseline), "--tolerance", "0",
                   "--time-tolerance", "100")  # fmt: skip
    assert result.exit_code == 0, result.output
    accuracies = [[v["test_accuracy_mean"] for v in json.loads(path.read_text())["variants"]]
                  for path in (baseline, tmp_path / "results.json")]  # fmt: skip
    assert accuracies[0] == accuracies[1]  # same seed, same code: the same accuracies


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--lr", "fast"), ("--lr", "comma list")),
        (("--arch", "lenet,nope"), ("unknown architecture", "nope")),
        (("--compare", "/nonexistent.json"), ("baseline",)),
        (("--time-slack", "-1"), ("--time-slack", "0")),
    ],
)
def test_bench_user_mistakes_end_in_one_line(tmp_path, monkeypatch, args, words):
    refuse_training(monkeypatch)
    assert_one_line_error(bench(*args, "--out", str(tmp_path / "run")), 2, *words)
    assert not (tmp_path / "run").exists()


def test_summary_rows_name_only_settings_that_vary_within_an_architecture():
    from digitcmp.summary import summary_grid

    variants = [record("a", 0.8, 1.0, arch="lenet"), record("b", 0.9, 1.0, arch="vgg4", lr=3e-3)]
    assert [label for label, _ in summary_grid(variants)[1]] == ["lenet", "vgg4"]
    variants.append(record("c", 0.9, 1.0, arch="vgg4", lr=1e-3))
    labels = [label for label, _ in summary_grid(variants)[1]]
    assert labels == ["lenet · lr 0.001", "vgg4 · lr 0.003", "vgg4 · lr 0.001"]


def test_a_cell_reads_its_mean_and_spread_in_percent_in_the_terminal_and_in_summary_md():
    from digitcmp.report import summary_table
    from digitcmp.results import summary_markdown
    from digitcmp.summary import cell_text

    cell = {**record("a", 0.8712, 1.0, arch="lenet"), "test_accuracy_std": 0.0134}
    assert cell_text(cell) == "87.1 ± 1.3%" and cell_text({"status": "failed"}) == "failed"
    document = {"kind": "bench", "variants": [cell], "config": {"rounds": 3, "pairs": 1000, "test_pairs": 400},
                "data": "d", "device": "cpu", "digitcmp_version": "x"}  # fmt: skip
    markdown = summary_markdown(document)
    assert "| lenet | **87.1 ± 1.3%** |" in markdown
    assert "over 3 rounds" in markdown and "1000 training pairs, 400 test pairs" in markdown
    one = {**document, "config": {**document["config"], "rounds": 1}}  # a one-round run reads in the singular
    assert "over 1 round\n" in summary_markdown(one) and summary_table(one).title.endswith("over 1 round")


@pytest.mark.slow
def test_a_bench_over_the_tower_axes_runs_and_records_them(tmp_path):
    axes = ["--activation", "relu,tanh", "--dropout", "0,0.5", "--batch-norm", "off", "--hidden", "64,32/16"]
    result = bench("--arch", "deep-fc", "--aux-weight", "1", *axes, *SMALL[2:], "--out", str(tmp_path), "-q")
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "results.json").read_text())
    cells = {(v["activation"], v["dropout"], tuple(v["hidden"]), v["weight_sharing"]) for v in document["variants"]}
    assert len(document["variants"]) == 2 * 2 * 2 * 2 and len(cells) == 16  # the axes × weight sharing
    assert {v["batch_norm"] for v in document["variants"]} == {False}
    assert "deep-fc-h64.32-tanh-do0.5-ws-aux1" in {v["name"] for v in document["variants"]}
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert {row["hidden"] for row in rows} == {"64,32", "16"} and {row["activation"] for row in rows} == {
        "relu",
        "tanh",
    }
    summary = (tmp_path / "summary.md").read_text()
    assert "deep-fc · hidden 64,32 · activation tanh · dropout 0.5" in summary  # the varying settings name the rows


@pytest.mark.slow
def test_bench_json_prints_the_results_document(bench_run):
    out, _ = bench_run
    result = bench(*SMALL, "--out", str(out / "again"), "--json", "-q")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["variants"] == json.loads((out / "again" / "results.json").read_text())["variants"]


def quick_config(*args: str) -> BenchConfig:
    """The configuration ``bench --quick`` runs, planned as the command plans it (``args``: extra settings)."""
    settings = {"epochs": int(args[1])} if args else {}
    return plan_bench(BenchRequest(quick=True), settings, 1000, None, 0).config


QUICK_EPOCHS = {name: spec.quick_epochs for name, spec in ARCHS.items() if spec.quick_epochs}


@pytest.mark.parametrize(("args", "expected"), [((), QUICK_EPOCHS), (("--epochs", "2"), None)])
def test_quick_trains_each_architecture_for_its_own_epochs_unless_epochs_given(args, expected):
    config = quick_config(*args)
    epochs = {job.variant.arch: job.config.epochs for job in expand(config)}
    assert config.rounds == QUICK_ROUNDS and set(epochs) == set(QUICK_EPOCHS)
    assert epochs == (expected or dict.fromkeys(epochs, 2))


def test_the_committed_baseline_holds_exactly_the_quick_grids_cells():
    """The CI gate runs bench --quick against benchmarks/baseline.json cell by cell. A cell the baseline lacks is
    'new' and compared with nothing, so cells that drift apart would let the gate pass without a comparison; a
    baseline cell trained with other settings (epochs) would compare unlike with unlike."""
    jobs = expand(quick_config())
    baseline = json.loads((REPO / "benchmarks" / "baseline.json").read_text())["variants"]
    assert all(cell["status"] == "ok" for cell in baseline)
    assert sorted(cell_key(cell) for cell in baseline) == sorted(cell_key(job.key()) for job in jobs)
    cells = {cell_key(cell): cell for cell in baseline}
    for job in jobs:
        record = {"train_config": json.loads(json.dumps(asdict(job.config)))}
        assert recipe_changes(record, cells[cell_key(job.key())]) == [], job.variant.name


def test_a_difference_that_rounds_to_zero_reads_plus_zero_in_the_gate_table():
    from digitcmp.report import compare_table

    row = gate(record("a", 0.875, 2.0), record("a", 0.875 - 1e-12, 2.0 - 1e-12))
    console = Console(width=200, record=True)
    console.print(compare_table([row], 0.03, 1.0, 1.0))
    text = console.export_text()
    assert "+0.0" in text and "+0%" in text and "-0" not in text


def test_a_compared_row_reports_both_accuracies_and_both_times():
    row = gate(record("a", 0.875, 2.0), record("a", 0.75, 3.0))
    measured = (row["accuracy"], row["baseline_accuracy"], row["seconds"], row["baseline_seconds"])
    assert measured == (0.75, 0.875, 3.0, 2.0)
    assert row["slowdown"] == 0.5 and row["name"] == "a"


def test_against_a_baseline_without_cells_every_cell_is_new_and_a_nameless_cell_goes_by_its_architecture():
    nameless = {key: value for key, value in record("a", 0.9, 1.0).items() if key != "name"}
    rows = compare({"variants": [nameless, record("b", 0.9, 1.0)]}, {}, 0.03, 1.0)
    assert [(row["name"], row["status"], row["regression"]) for row in rows] == [
        ("lenet", "new", False),
        ("b", "new", False),
    ]


def test_a_baseline_that_is_not_json_is_refused_naming_the_problem(tmp_path):
    path = tmp_path / "baseline.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(DigitcmpError, match=r"cannot read baseline .*\(JSONDecodeError\); pass a bench results.json"):
        read_baseline(path)
