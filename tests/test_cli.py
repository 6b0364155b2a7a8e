"""The command line: help, version, JSON output, files written, and one clear line for every user mistake."""

from __future__ import annotations

import json
import re

import pytest
import torch
from conftest import assert_one_line_error, refuse_training, run
from typer.testing import CliRunner

import digitcmp.bench
import digitcmp.train
import digitcmp.tune
from digitcmp import __version__
from digitcmp.cli import app
from digitcmp.model.checkpoint import load_checkpoint


def test_help_lists_every_command_and_version_prints():
    result = run("--help")
    assert result.exit_code == 0
    for command in ("train", "bench", "export", "predict"):
        assert command in result.output
    assert run("--version").output.strip() == f"digitcmp {__version__}"


def test_train_json_writes_checkpoint_and_results(tmp_path):
    result = run(
        "train",
        "--arch",
        "shallow-fc",
        "--rounds",
        "2",
        "--epochs",
        "2",
        "--pairs",
        "200",
        "--json",
        "--out",
        str(tmp_path),
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["variant"] == {
        "arch": "shallow-fc",
        "weight_sharing": True,
        "aux_weight": 1.0,
        "channels": [],
        "hidden": [500],
        "activation": "relu",
        "dropout": 0.0,
        "batch_norm": False,
        "head": "mlp",
        "head_width": 64,
        "head_classes": 1,
        "tta": False,
        "ensemble": 1,
        "tta_warps": 0,
        "resolution": "pooled",
    }
    assert [
        set(r) >= {"round", "train_accuracy", "test_accuracy", "digit_accuracy", "seconds"} for r in record["rounds"]
    ] == [True, True]
    assert {"test_accuracy_mean", "test_accuracy_std"} <= set(record["summary"])
    assert record["checkpoint"] == "checkpoint.pt"  # beside results.json
    assert json.loads((tmp_path / "results.json").read_text())["summary"] == record["summary"]
    model, meta = load_checkpoint(tmp_path / "checkpoint.pt")
    assert model.variant.arch == "shallow-fc" and meta["config"]["epochs"] == 2 and meta["seed"] == 0
    assert meta["round_count"] == 2  # what export's metadata says the mean and std are over


def test_train_table_shows_rounds_and_mean(tmp_path):
    result = run(
        "train", "--arch", "deep-fc", "--rounds", "2", "--epochs", "1", "--pairs", "100", "--out", str(tmp_path), "-q"
    )
    assert result.exit_code == 0, result.output
    assert "mean ± std" in result.stdout and "deep-fc-ws-aux1" in result.stdout


def test_progress_outside_a_terminal_is_a_line_per_tenth_of_the_epochs_and_quiet_silences_it(tmp_path):
    """In a log or CI (stdout not a terminal) a drawn bar would be lost: plain lines on stderr instead."""
    args = ("train", "--arch", "deep-fc", "--epochs", "10", "--pairs", "100")
    lines = [line for line in run(*args, "--out", str(tmp_path / "a")).stderr.splitlines() if " epochs (" in line]
    assert [line.split(": ")[1].split(",")[0] for line in lines] == [
        f"{done}/10 epochs ({10 * done}%)" for done in range(1, 11)
    ]
    assert all(line.startswith("training deep-fc-ws-aux1: ") and "elapsed, about" in line for line in lines)
    assert " epochs (" not in run(*args, "--out", str(tmp_path / "b"), "-q").stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--arch", "nosuch"), ("--arch", "nosuch")),
        (("--data-dir", "/nonexistent"), ("/nonexistent", "does not exist")),
        (("--optimizer", "rmsprop"), ("--optimizer", "rmsprop")),
        (("--aux-weight", "-1"), ("--aux-weight", "0")),
        (("--label-smoothing", "1"), ("--label-smoothing",)),
        (("--elastic", "-0.5"), ("--elastic",)),
        (("--tta-warps", "100"), ("--tta-warps", "64")),
        (("--no-tta", "--tta-warps", "8"), ("--tta-warps needs", "--tta")),
        (("--aux-weight", "0", "--all-pairs"), ("--all-pairs needs", "auxiliary loss")),
        (("--arch", "lenet", "--all-pairs"), ("--all-pairs needs", "structured head")),
        (("--arch", "shallow-fc", "--channels", "8"), ("no convolution layers",)),
        (("--arch", "lenet", "--channels", "8,16,32"), ("--channels", "2 convolution layers")),
        (("--hidden", "12,x"), ("--hidden", "comma")),
        (("--head", "structured", "--head-width", "8"), ("--head-width", "learned head")),
        (("--pairs", "3000"), ("distinct digits",)),
        (("--download",), ("--data-dir",)),
    ],
)
def test_user_mistakes_end_in_one_clear_line(tmp_path, monkeypatch, args, words):
    refuse_training(monkeypatch)
    assert_one_line_error(run("train", *args, "--out", str(tmp_path / "run")), 2, *words)
    assert not (tmp_path / "run").exists()  # a refused command leaves no run folder behind


def test_bad_flag_values_are_usage_errors(tmp_path, monkeypatch):
    refuse_training(monkeypatch)
    assert_one_line_error(run("train", "--epochs", "many", "--out", str(tmp_path)), 2, "--epochs")
    assert_one_line_error(run("train", "--rounds", "0", "--out", str(tmp_path)), 2, "--rounds")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present")
def test_cuda_without_gpu_is_a_clear_error(tmp_path, monkeypatch):
    refuse_training(monkeypatch)
    assert_one_line_error(run("train", "--device", "cuda", "--out", str(tmp_path)), 2, "CUDA", "--device cpu")


def test_an_unwritable_output_folder_is_one_line(tmp_path, monkeypatch):
    refuse_training(monkeypatch)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = run("train", "--arch", "shallow-fc", "--epochs", "1", "--pairs", "50", "--out", str(blocker / "run"), "-q")
    assert_one_line_error(result, 2, str(blocker), "is a file")


def test_the_output_folder_is_checked_before_any_training(tmp_path, monkeypatch):
    refuse_training(monkeypatch)
    monkeypatch.setattr(digitcmp.train, "run_train", lambda *a, **k: pytest.fail("trained before checking --out"))
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert_one_line_error(run("train", "--out", str(blocker)), 2, "--out", "is a file")
    assert_one_line_error(run("bench", "--quick", "--out", str(blocker)), 2, "--out", "is a file")


def test_train_ends_with_the_export_command(tmp_path):
    result = run("train", "--arch", "shallow-fc", "--epochs", "1", "--pairs", "100", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert f"next: digitcmp export {tmp_path / 'checkpoint.pt'}" in result.output


def test_list_shows_every_architecture_with_its_parameters():
    from digitcmp.archs import ARCHS
    from digitcmp.presets import PRESETS

    table = run("list")
    assert table.exit_code == 0, table.output
    listed = json.loads(run("list", "--json").stdout)
    records = listed["architectures"]
    assert [p["name"] for p in listed["presets"]] == list(PRESETS) and all(
        p["name"] in table.stdout for p in listed["presets"]
    )
    assert all(p["choices"] == list(PRESETS[p["name"]].choices) and p["choices"] for p in listed["presets"])
    assert [r["name"] for r in records] == list(ARCHS)
    for record in records:
        assert record["name"] in table.stdout
        joint = (
            record["defaults"]["head"] == "features" and record["params_weight_sharing"] == record["params_separate"]
        )
        count = (
            f"{record['params_separate']:,}"
            if joint
            else f"{record['params_weight_sharing']:,} / {record['params_separate']:,}"
        )
        assert count in table.stdout
    assert next(r for r in records if r["name"] == "vgg4")["recipe"]["epochs"] == 60


def test_help_puts_research_knobs_in_the_advanced_panel():
    text = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output
    main, advanced = (re.findall(r"│ (--[a-z-]+)", part) for part in text.split("Advanced", 1))  # option rows
    assert {"--arch", "--rounds", "--epochs", "--data-dir", "--out"} <= set(main) - set(advanced)
    assert {"--label-smoothing", "--all-pairs", "--tta-warps", "--optimizer"} <= set(advanced) - set(main)
