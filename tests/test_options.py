"""Every option of train, bench and tune reaches the configuration the command runs with.

The functions that train (``run_train``, ``run_bench``, ``run_tune``) are replaced by recorders that keep
the arguments they receive and answer at once, so each row runs the whole command, flags to output, without
training. A row is (command, flags, where the value must show up, the value).
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import inspect
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import typer.main
from conftest import run, write_idx_pair

import digitcmp.bench
import digitcmp.data
import digitcmp.gate
import digitcmp.train
import digitcmp.tune
from digitcmp.archs import ARCHS
from digitcmp.bench import bench_study
from digitcmp.cli import app
from digitcmp.config import DATA_ENV
from digitcmp.data import TEST_STEMS, TRAIN_STEMS, load_source
from digitcmp.files import write_json
from digitcmp.grid import BenchConfig
from digitcmp.study import StudyRun, results_document
from digitcmp.train import RoundResult, RunResult, TrainRun, environment
from digitcmp.tune import TuneConfig, tune_study

# Options every command has, read from the same place.
COMMON = [
    ((), "notes_on_stderr", True),
    ((), "json_on_stdout", False),
    (("--json",), "json_on_stdout", True),
    (("--quiet",), "notes_on_stderr", False),
    (("-q",), "notes_on_stderr", False),
    (("--device", "cpu"), "device_name", "cpu"),
    (("--data-dir", "{inputs}/mnist"), "source.test.origin", "MNIST test set from {inputs}/mnist"),
    (("--download", "--data-dir", "{tmp}/fetched"), "downloaded", ["{tmp}/fetched"]),
    (("--data-dir", "{inputs}/full"), "source.train.origin", "bundled MNIST sample"),
    (
        ("--train-digits", "mnist", "--data-dir", "{inputs}/full"),
        "source.train.origin",
        "MNIST training set from {inputs}/full",
    ),
    (("--out", "{tmp}/elsewhere"), "folder", "{tmp}/elsewhere"),
]
TRAIN = [
    (("--arch", "lenet"), "variant.arch", "lenet"),
    (("--no-weight-sharing",), "variant.weight_sharing", False),
    (("--aux-weight", "0.5"), "variant.aux_weight", 0.5),
    (("--rounds", "3"), "rounds", 3),
    (("--epochs", "2"), "config.epochs", 2),
    (("--seed", "7"), "seed", 7),
    (("--channels", "8"), "variant.channels", (8, 8, 16, 16)),
    (("--arch", "lenet", "--channels", "8,16"), "variant.channels", (8, 16)),
    (("--hidden", "32,16"), "variant.hidden", (32, 16)),
    (("--activation", "tanh"), "variant.activation", "tanh"),
    (("--dropout", "0.25"), "variant.dropout", 0.25),
    (("--no-batch-norm",), "variant.batch_norm", False),
    (("--arch", "lenet", "--batch-norm"), "variant.batch_norm", True),
    (("--head", "mlp"), "variant.head", "mlp"),
    (("--head", "mlp", "--head-width", "16"), "variant.head_width", 16),
    (("--no-tta",), "variant.tta", False),
    (("--arch", "lenet", "--tta"), "variant.tta", True),
    (("--tta-warps", "4"), "variant.tta_warps", 4),
    (("--ensemble", "3"), "variant.ensemble", 3),
    (("--resolution", "full"), "variant.resolution", "full"),
    (("--batch-size", "32"), "config.batch_size", 32),
    (("--lr", "0.02"), "config.lr", 0.02),
    (("--optimizer", "sgd"), "config.optimizer", "sgd"),
    (("--momentum", "0.5"), "config.momentum", 0.5),
    (("--loss", "sum"), "config.loss", "sum"),
    (("--weight-decay", "0.01"), "config.weight_decay", 0.01),
    (("--schedule", "constant"), "config.schedule", "constant"),
    (("--curves", "full"), "config.curves", "full"),
    (("--shift", "1"), "config.shift", 1),
    (("--no-swap",), "config.swap", False),
    (("--arch", "lenet", "--swap"), "config.swap", True),
    (("--elastic", "1.5"), "config.elastic", 1.5),
    (("--rotate", "10"), "config.rotate", 10.0),
    (("--shear", "0.3"), "config.shear", 0.3),
    (("--thickness", "0.4"), "config.thickness", 0.4),
    (("--blur", "1.5"), "config.blur", 1.5),
    (("--contrast", "0.5"), "config.contrast", 0.5),
    (("--noise", "0.1"), "config.noise", 0.1),
    (("--label-smoothing", "0.2"), "config.label_smoothing", 0.2),
    (("--nondigits", "0.5"), "config.nondigits", 0.5),
    (("--all-pairs",), "config.all_pairs", True),
    (("--drawn-pairs",), "config.all_pairs", False),
    (("--pairs", "300"), "pairs", 300),
    (("--pairs", "300"), "test_pairs", 300),  # the test pairs follow --pairs unless given
    (("--test-pairs", "200"), "test_pairs", 200),
    (("--val-fraction", "0.3"), "config.val_fraction", 0.3),
]
# The grid flags of bench and tune land in the same fields of BenchConfig and TuneConfig.
GRID = [
    (("--arch", "lenet,conv6"), "config.archs", ("lenet", "conv6")),
    (("--aux-weight", "0.5,2"), "config.aux_weights", (0.5, 2.0)),
    (("--rounds", "4"), "config.rounds", 4),
    (("--epochs", "2"), "config.overrides.epochs", 2),
    (("--seed", "7"), "config.seed", 7),
    (("--executor", "ray"), "executor.kind", "ray"),
    (("--address", "ray://head:10001"), "executor.address", "ray://head:10001"),
    (("--cpus-per-cell", "2"), "executor.cpus_per_cell", 2),
    (("--gpus-per-cell", "0.5"), "executor.gpus_per_cell", 0.5),
    (("--retries", "5"), "executor.retries", 5),
    (("--resume", "{inputs}/{command}-run"), "resume", True),
    (("--resume", "{inputs}/{command}-run"), "folder", "{inputs}/{command}-run"),
    (("--resume", "{inputs}/{command}-run"), "config.archs", ("deep-fc",)),  # the run's own grid
    (("--channels", "8/16"), "config.tower_axes.channels", ((8,), (16,))),
    (("--hidden", "64,32/16"), "config.tower_axes.hidden", ((64, 32), (16,))),
    (("--activation", "relu,tanh"), "config.tower_axes.activation", ("relu", "tanh")),
    (("--dropout", "0,0.5"), "config.tower_axes.dropout", (0.0, 0.5)),
    (("--batch-norm", "on,off"), "config.tower_axes.batch_norm", (True, False)),
    (("--head", "mlp"), "config.variant_options.head", "mlp"),
    (("--head-width", "16,32"), "config.tower_axes.head_width", (16, 32)),
    (("--no-tta",), "config.variant_options.tta", False),
    (("--tta", "--tta-warps", "4"), "config.variant_options.tta_warps", 4),
    (("--ensemble", "2"), "config.variant_options.ensemble", 2),
    (("--resolution", "full"), "config.variant_options.resolution", "full"),
    (("--batch-size", "50,100"), "config.batch_sizes", (50, 100)),
    (("--lr", "1e-3,3e-3"), "config.lrs", (1e-3, 3e-3)),
    (("--optimizer", "sgd"), "config.overrides.optimizer", "sgd"),
    (("--momentum", "0.5"), "config.overrides.momentum", 0.5),
    (("--loss", "sum"), "config.overrides.loss", "sum"),
    (("--weight-decay", "0,1e-4"), "config.weight_decays", (0.0, 1e-4)),
    (("--schedule", "onecycle"), "config.overrides.schedule", "onecycle"),
    (("--curves", "off"), "config.overrides.curves", "off"),
    (("--shift", "1"), "config.overrides.shift", 1),
    (("--swap",), "config.overrides.swap", True),
    (("--no-swap",), "config.overrides.swap", False),
    (("--elastic", "1.5"), "config.overrides.elastic", 1.5),
    (("--rotate", "10"), "config.overrides.rotate", 10.0),
    (("--shear", "0.3"), "config.overrides.shear", 0.3),
    (("--thickness", "0.4"), "config.overrides.thickness", 0.4),
    (("--blur", "1.5"), "config.overrides.blur", 1.5),
    (("--contrast", "0.5"), "config.overrides.contrast", 0.5),
    (("--noise", "0.1"), "config.overrides.noise", 0.1),
    (("--label-smoothing", "0.2"), "config.overrides.label_smoothing", 0.2),
    (("--nondigits", "0.5"), "config.overrides.nondigits", 0.5),
    (("--all-pairs",), "config.overrides.all_pairs", True),
    (("--drawn-pairs",), "config.overrides.all_pairs", False),
    (("--pairs", "300"), "config.pairs", 300),
    (("--pairs", "300"), "config.test_pairs", 300),
    (("--test-pairs", "200"), "config.test_pairs", 200),
]
# Options that do not change a run, which --resume takes beside it (digitcmp.plan.RESUME_MAY_SET).
UNCHANGING = ("--device", "cpu", "--train-digits", "sample", "--json", "--quiet", "--retries", "1", "--tolerance",
              "0.5")  # fmt: skip
BENCH = [
    (("--preset", "batchnorm-cv"), "config.preset", "batchnorm-cv"),
    (("--quick",), "config.rounds", 3),
    (
        ("--quick",),
        "config.arch_overrides",
        {a: {"epochs": s.quick_epochs} for a, s in ARCHS.items() if s.quick_epochs},
    ),
    (("--val-fraction", "0.2"), "config.val_fraction", 0.2),
    (("--compare", "{inputs}/baseline.json"), "compared.baseline", {"variants": []}),
    (
        ("--resume", "{inputs}/{command}-run", "--compare", "{inputs}/baseline.json", *UNCHANGING),
        "compared.tolerance",
        0.5,
    ),
    (("--compare", "{inputs}/baseline.json", "--tolerance", "0.1"), "compared.tolerance", 0.1),
    (("--compare", "{inputs}/baseline.json", "--time-tolerance", "2.5"), "compared.time_tolerance", 2.5),
    (("--compare", "{inputs}/baseline.json", "--time-slack", "3"), "compared.time_slack", 3.0),
]
TUNE = [
    (("--technique", "ws,aux"), "config.techniques", ("ws", "aux")),
    (("--preset", "batchnorm-cv"), "config.preset", "batchnorm-cv"),
    (("--preset", "batchnorm-cv"), "config.folds", 3),  # the preset's own search
    (("--trials", "3"), "config.trials", 3),
    (("--folds", "3"), "config.folds", 3),
    (("--holdout", "0.3"), "config.holdout", 0.3),
    (("--tune-pairs", "500"), "config.tune_pairs", 500),
    (("--val-fraction", "0.3"), "config.val_fraction", 0.3),
]
ROWS = [
    *(("train", *row) for row in COMMON + TRAIN),
    *(("bench", *row) for row in COMMON + GRID + BENCH),
    *(("tune", *row) for row in COMMON + GRID + TUNE),
]
# bench and tune check their whole grid before they run; one architecture keeps that quick (a later --arch, or a
# preset's cells, replace it).
SMALL_GRID = ("--arch", "lenet")
bundled_digits = functools.cache(digitcmp.data.bundled_digits)  # read once for all the rows


def fill(value: Any, **names: str) -> Any:
    """A row's value with its placeholders filled in: {inputs}, the files rows read; {tmp}, the test's own folder."""
    if isinstance(value, str):
        return value.format(**names)
    if isinstance(value, list):
        return [fill(item, **names) for item in value]
    return value


def dig(seen: dict, where: str) -> Any:
    """The value at a dotted path through what the command handed over (attributes and dict keys alike)."""
    value: Any = seen
    for name in where.split("."):
        value = value[name] if isinstance(value, dict) else getattr(value, name)
    return str(value) if isinstance(value, Path) else value


def recorder(seen: dict, real: Callable, answer: Callable[[dict], Any]) -> Callable:
    """A stand-in for ``real`` that keeps the arguments it receives, by name, and returns ``answer(seen)``."""
    signature = inspect.signature(real)

    def record(*args: Any, **kwargs: Any) -> Any:
        arguments = signature.bind(*args, **kwargs).arguments
        seen.update(arguments, **arguments.pop("options", {}))  # options passed on to the study engine, by name
        return answer(seen)

    return record


def write_test_set(folder: Path) -> None:
    """A few MNIST-shaped test digits: enough for a source, nothing is drawn from them."""
    write_idx_pair(folder, TEST_STEMS, np.zeros((10, 28, 28), np.uint8), np.arange(10, dtype=np.uint8), gz=False)


def trained(seen: dict) -> TrainRun:
    variant = seen["variant"]
    result = RunResult(variant, 0, seen["config"], "cpu", [RoundResult(0, 1.0, 1.0, 1.0, 1.0, 0.0)], 0, {})
    seen["printed"] = {"variant": variant.to_dict()}
    return TrainRun(result, seen["printed"], seen["folder"] / "checkpoint.pt")


def studied(seen: dict) -> StudyRun:
    study = bench_study(seen["config"], seen["jobs"])
    seen["printed"] = results_document(study, [], environment("cpu"), seen["source"].describe())
    return StudyRun(seen["printed"], False)


def tuned(seen: dict) -> StudyRun:
    study = tune_study(seen["config"], seen["cells"])
    seen["printed"] = results_document(study, [], environment("cpu"), seen["source"].describe())
    return StudyRun(seen["printed"], False)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files rows read ({inputs}): a test set, a baseline, and a bench and a tune run to resume."""
    folder = tmp_path_factory.mktemp("inputs")
    write_test_set(folder / "mnist")
    write_test_set(folder / "full")  # with training files beside: 2,000 blank digits
    write_idx_pair(folder / "full", TRAIN_STEMS, np.zeros((2000, 28, 28), np.uint8), np.arange(2000) % 10, gz=True)
    write_json(folder / "baseline.json", {"variants": []})
    for kind, config in (("bench", BenchConfig(archs=("deep-fc",))), ("tune", TuneConfig(archs=("deep-fc",)))):
        saved = {"kind": kind, "config": asdict(config), "data": load_source(None).describe()}  # the default digits
        write_json(folder / f"{kind}-run" / "config.json", saved)
    return folder


@pytest.fixture()
def seen(monkeypatch: pytest.MonkeyPatch) -> dict:
    """What the command hands to the code that would train (and to the gate, the device and the download)."""
    seen: dict = {}
    monkeypatch.setattr(digitcmp.train, "run_train", recorder(seen, digitcmp.train.run_train, trained))
    monkeypatch.setattr(digitcmp.bench, "run_bench", recorder(seen, digitcmp.bench.run_bench, studied))
    monkeypatch.setattr(digitcmp.tune, "run_tune", recorder(seen, digitcmp.tune.run_tune, tuned))
    real_compare, real_device = digitcmp.gate.compare, digitcmp.train.resolve_device

    def compare(*args: Any, **kwargs: Any) -> list[dict]:
        seen["compared"] = inspect.signature(real_compare).bind(*args, **kwargs).arguments
        return real_compare(*args, **kwargs)

    def resolve_device(name: str) -> torch.device:
        seen["device_name"] = name
        return real_device("cpu")

    def download(directory: Path) -> None:
        seen.setdefault("downloaded", []).append(str(directory))
        write_test_set(directory)

    monkeypatch.setattr(digitcmp.gate, "compare", compare)
    monkeypatch.setattr(digitcmp.train, "resolve_device", resolve_device)
    monkeypatch.setattr(digitcmp.data, "download_mnist", download)
    monkeypatch.setattr(digitcmp.data, "bundled_digits", bundled_digits)
    find_spec = importlib.util.find_spec  # Ray itself is never started: the executor only has to exist
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: importlib.machinery.ModuleSpec(name, None)
                        if name == "ray" else find_spec(name, *a))  # fmt: skip
    return seen


def row_id(row: tuple) -> str:
    command, flags, where, _ = row
    return f"{command} {' '.join(flags) or '(no flags)'} -> {where}"


@pytest.mark.parametrize(("command", "flags", "where", "expected"), ROWS, ids=[row_id(row) for row in ROWS])
def test_an_option_reaches_the_configuration(seen, inputs, tmp_path, command, flags, where, expected):
    names = {"inputs": str(inputs), "tmp": str(tmp_path), "command": command}
    base = SMALL_GRID if command != "train" and not {"--preset", "--resume"} & set(flags) else ()
    out = ("--out", str(tmp_path / "out")) if "--resume" not in flags else ()  # a resumed run has its own folder
    result = run(command, *base, *out, *fill(list(flags), **names))
    assert result.exit_code == 0, result.output
    try:
        printed = json.loads(result.stdout)
    except json.JSONDecodeError:
        printed = None
    seen["json_on_stdout"] = printed is not None and printed == json.loads(json.dumps(seen["printed"]))
    seen["notes_on_stderr"] = bool(result.stderr.strip())
    assert dig(seen, where) == fill(expected, **names)


@pytest.mark.parametrize("command", ["train", "bench", "tune"])
def test_the_data_folder_can_come_from_the_environment(seen, inputs, tmp_path, command):
    from typer.testing import CliRunner

    base = SMALL_GRID if command != "train" else ()
    environment = {DATA_ENV: str(inputs / "mnist")}
    result = CliRunner().invoke(app, [command, *base, "--out", str(tmp_path / "out")], env=environment)
    assert result.exit_code == 0, result.output
    assert dig(seen, "source.test.origin") == f"MNIST test set from {inputs}/mnist"


@pytest.mark.parametrize("command", ["train", "bench", "tune"])
def test_every_option_has_a_row(command):
    """A new option needs a row above, or its way into the configuration goes unchecked."""
    params = typer.main.get_command(app).commands[command].params
    by_flag = {flag: param.name for param in params for flag in (*param.opts, *param.secondary_opts)}
    covered = {by_flag[flag] for cmd, flags, _, _ in ROWS if cmd == command for flag in flags if flag in by_flag}
    assert covered == {param.name for param in params}
