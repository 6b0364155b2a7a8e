"""Every user-facing error, triggered once: where a user meets it, one 'error:' line with its key words and the exit
code, no traceback, and no run folder left behind; where the command line already refuses the input, through the
library call that guards it. Ctrl-C ends in exit 130 and a failed cell in exit 1.
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import assert_one_line_error, refuse_training, run, write_idx_pair
from onnx import TensorProto, helper
from PIL import Image
from test_options import fill

import digitcmp.bench
import digitcmp.predict
import digitcmp.train
import digitcmp.tune
from digitcmp.config import TrainConfig
from digitcmp.data import TEST_STEMS, draw_tuning_rounds, load_source
from digitcmp.errors import DigitcmpError
from digitcmp.executor import ExecutorConfig
from digitcmp.export import export_onnx
from digitcmp.files import write_json
from digitcmp.grid import BenchConfig
from digitcmp.model.checkpoint import CHECKPOINT_FORMAT
from digitcmp.predict import shipped_model
from digitcmp.runs import RunFolder
from digitcmp.variant import create_variant

Prepare = Callable[[Path, pytest.MonkeyPatch], None]


def nothing(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No files or stand-ins needed."""


@dataclass(frozen=True)
class Mistake:
    """A command line ({tmp}: the test's folder) and the words its one error line must hold."""

    args: tuple[str, ...]
    words: tuple[str, ...]
    prepare: Prepare = nothing


def digits_folder(images: np.ndarray, labels: np.ndarray) -> Prepare:
    """An MNIST test set in {tmp}/digits."""
    return lambda tmp, monkeypatch: write_idx_pair(tmp / "digits", TEST_STEMS, images, labels, gz=False)


def saved_run(kind: str, data: str | None = None, text: str | None = None) -> Prepare:
    """A run folder {tmp}/earlier to resume: a small bench's config.json (or ``text`` as that file)."""

    def prepare(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        config = {"kind": kind, "config": asdict(BenchConfig(archs=("shallow-fc",), rounds=1, pairs=10, test_pairs=10)),
                  "data": data or load_source(None).describe()}  # fmt: skip
        write_json(tmp / "earlier" / "config.json", config)
        if text is not None:
            (tmp / "earlier" / "config.json").write_text(text)

    return prepare


def folder(name: str) -> Prepare:
    return lambda tmp, monkeypatch: (tmp / name).mkdir()


def file(name: str, content: bytes) -> Prepare:
    return lambda tmp, monkeypatch: (tmp / name).write_bytes(content)


def locked(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """{tmp}/locked exists but cannot be written (os.access says so, for root too)."""
    (tmp / "locked").mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, *a, **k: not (Path(path) == tmp / "locked" and mode & os.W_OK)
                        and real(path, mode, *a, **k))  # fmt: skip


def checkpoint(payload: dict) -> Prepare:
    return lambda tmp, monkeypatch: torch.save(payload, tmp / "model.pt")


def no_torchvision(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)


def offline_torchvision(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A torchvision whose MNIST download fails as it does without network."""

    def mnist(*args: object, **kwargs: object) -> None:
        raise OSError("Network is unreachable")

    datasets = types.ModuleType("torchvision.datasets")
    datasets.MNIST = mnist  # type: ignore[attr-defined]
    package = types.ModuleType("torchvision")
    package.datasets = datasets  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchvision", package)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", datasets)


def images(*prepares: Prepare) -> Prepare:
    """{tmp}/a.png and {tmp}/b.png, two real digits, then whatever else the case needs."""

    def prepare(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        digits = load_source(None).test
        for name, index in (("a.png", 0), ("b.png", 300)):
            Image.fromarray(digits.images[index]).save(tmp / name)
        for step in prepares:
            step(tmp, monkeypatch)

    return prepare


def limit(name: str, value: int) -> Prepare:
    """A lower size limit in predict, so that a small file stands for a huge one."""

    def prepare(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(digitcmp.predict, name, value)
        if name == "MAX_PIXELS":  # predict sets Pillow's own limit from it; restore Pillow's after the test
            monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)

    return prepare


def picture(name: str, side: int) -> Prepare:
    return lambda tmp, monkeypatch: Image.new("L", (side, side)).save(tmp / name)


def npy(name: str, array: np.ndarray) -> Prepare:
    return lambda tmp, monkeypatch: np.save(tmp / name, array)


def damaged_metadata(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = onnx.load(str(shipped_model()))
    next(p for p in model.metadata_props if p.key == "digitcmp").value = '{"variant": '
    onnx.save(model, str(tmp / "model.onnx"))


def wrong_outputs(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A graph that takes digitcmp's input but names its output otherwise."""
    shape = ["batch", 2, 14, 14]
    graph = helper.make_graph([helper.make_node("Identity", ["pairs"], ["scores"])], "g",
                              [helper.make_tensor_value_info("pairs", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, shape)])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.metadata_props.add(key="digitcmp", value="{}")
    onnx.save(model, str(tmp / "model.onnx"))


def pairs_csv(text: bytes) -> Prepare:
    return images(file("pairs.csv", text))


DIGITS = np.zeros((4, 28, 28), np.uint8)
NO_WEIGHTS = {
    "format": CHECKPOINT_FORMAT,
    "variant": create_variant("shallow-fc").to_dict(),
    "state_dict": {},
    "meta": {},
}
SHALLOW = ("--arch", "shallow-fc")
PREDICT = ("predict", "{tmp}/a.png", "{tmp}/b.png")
MISTAKES = {
    # the results folder and the grid flags
    "out not writable": Mistake(("train", "--out", "{tmp}/locked"), ("--out", "not writable"), locked),
    "empty axis": Mistake(("bench", "--lr", ","), ("--lr", "at least one value")),
    "batch norm word": Mistake(("bench", "--batch-norm", "yes"), ("--batch-norm", "on, off or on,off")),
    "negative head width": Mistake(
        ("bench", "--arch", "lenet", "--head-width=-1"), ("--head-width", "out of range; use ≥ 0")
    ),
    # the digits, and pair counts they cannot supply: found before any folder is made
    "train without data": Mistake(("train", "--data-dir", "{tmp}/absent"), ("{tmp}/absent", "does not exist")),
    "bench without data": Mistake(("bench", *SHALLOW, "--data-dir", "{tmp}/absent"), ("does not exist",)),
    "tune without data": Mistake(("tune", *SHALLOW, "--data-dir", "{tmp}/absent"), ("does not exist",)),
    "train pairs": Mistake(("train", "--pairs", "3000"), ("distinct digits", "lower --pairs", "--train-digits mnist")),
    "test pairs": Mistake(("train", "--test-pairs", "6000"), ("distinct digits", "lower --test-pairs", "MNIST test")),
    "bench pairs": Mistake(("bench", *SHALLOW, "--pairs", "3000"), ("--pairs", "distinct digits")),
    "tune pairs": Mistake(("tune", *SHALLOW, "--pairs", "3000"), ("--pairs", "distinct digits")),
    "tune tuning pairs": Mistake(("tune", *SHALLOW, "--tune-pairs", "3000"), ("lower --tune-pairs", "distinct digits")),
    "not 28x28": Mistake(
        ("train", "--data-dir", "{tmp}/digits"),
        ("28×28",),
        digits_folder(np.zeros((4, 20, 20), np.uint8), np.zeros(4, np.uint8)),
    ),
    "labels above 9": Mistake(
        ("train", "--data-dir", "{tmp}/digits"),
        ("labels above 9",),
        digits_folder(DIGITS, np.array([1, 2, 12, 3], np.uint8)),
    ),
    "download without torchvision": Mistake(
        ("train", "--download", "--data-dir", "{tmp}/digits"), ("--download needs torchvision",), no_torchvision
    ),
    "download offline": Mistake(
        ("train", "--download", "--data-dir", "{tmp}/digits"),
        ("could not download MNIST", "OSError", "drop --download"),
        offline_torchvision,
    ),
    "no training pairs left": Mistake(
        ("train", "--pairs", "1", "--val-fraction", "0.9"), ("--val-fraction 0.9", "no training pairs")
    ),
    "too many folds": Mistake(
        ("tune", *SHALLOW, "--folds", "11", "--tune-pairs", "20"), ("--folds 11", "22 tuning pairs")
    ),
    # --resume
    "resume another kind": Mistake(
        ("tune", "--resume", "{tmp}/earlier"), ("holds a bench run", "digitcmp bench"), saved_run("bench")
    ),
    "resume other digits": Mistake(
        ("bench", "--resume", "{tmp}/earlier"),
        ("other digits", "same --data-dir"),
        saved_run("bench", data="MNIST from elsewhere"),
    ),
    "resume without config": Mistake(
        ("bench", "--resume", "{tmp}/empty"), ("no readable config.json",), folder("empty")
    ),
    "resume unreadable config": Mistake(
        ("bench", "--resume", "{tmp}/earlier"), ("no readable config.json",), saved_run("bench", text="{")
    ),
    "resume with other settings": Mistake(
        ("bench", "--resume", "{tmp}/earlier", "--device", "cpu", "--arch", "lenet", "--rounds", "3", "--lr", "0.1"),
        ("--resume continues the run with its own configuration; drop --arch, --rounds, --lr",),
        saved_run("bench"),
    ),
    "resume foreign config": Mistake(
        ("bench", "--resume", "{tmp}/earlier"),
        ("config.json is not a digitcmp run's",),
        saved_run("bench", text='{"kind": "bench"}'),
    ),
    # the regression gate's baseline, and checkpoints
    "baseline without variants": Mistake(
        ("bench", "--compare", "{tmp}/base.json"), ("'variants' list",), file("base.json", b'{"schema_version": 1}')
    ),
    "not a checkpoint": Mistake(
        ("export", "{tmp}/model.pt"),
        ("not a digitcmp checkpoint", CHECKPOINT_FORMAT),
        checkpoint({"format": "another/1"}),
    ),
    "checkpoint of other weights": Mistake(
        ("export", "{tmp}/model.pt"), ("weights that do not fit",), checkpoint(NO_WEIGHTS)
    ),
    # predict's inputs
    "file over the byte limit": Mistake(PREDICT, ("{tmp}/a.png", "10-byte limit"), images(limit("MAX_FILE_BYTES", 10))),
    "decompression bomb": Mistake(
        PREDICT, ("{tmp}/a.png", "more than 100 pixels"), images(limit("MAX_PIXELS", 100), picture("a.png", 30))
    ),
    "negative npy": Mistake(
        ("predict", "{tmp}/a.npy", "{tmp}/b.png"),
        ("{tmp}/a.npy", "negative or non-finite"),
        images(npy("a.npy", -np.ones((28, 28)))),
    ),
    "non-finite npy": Mistake(
        ("predict", "{tmp}/a.npy", "{tmp}/b.png"),
        ("{tmp}/a.npy", "negative or non-finite"),
        images(npy("a.npy", np.full((14, 14), np.nan))),
    ),
    "damaged metadata": Mistake(
        (*PREDICT, "--model", "{tmp}/model.onnx"), ("damaged digitcmp metadata",), images(damaged_metadata)
    ),
    "wrong output names": Mistake(
        (*PREDICT, "--model", "{tmp}/model.onnx"),
        ("not a digitcmp model", "le_probability, digit_probabilities"),
        images(wrong_outputs),
    ),
    "pairs file missing": Mistake(("predict", "--pairs", "{tmp}/none.csv"), ("pairs file", "does not exist")),
    "pairs without header": Mistake(
        ("predict", "--pairs", "{tmp}/pairs.csv"),
        ("header line 'first,second'",),
        pairs_csv(b"left,right\na.png,b.png\n"),
    ),
    "pairs not text": Mistake(
        ("predict", "--pairs", "{tmp}/pairs.csv"),
        ("not a readable CSV",),
        pairs_csv(b"first,second\n\xff\xfe\xfa,b.png\n"),
    ),
    "pairs header only": Mistake(
        ("predict", "--pairs", "{tmp}/pairs.csv"), ("no pairs below its header",), pairs_csv(b"first,second\n")
    ),
    "pair of one": Mistake(
        ("predict", "--pairs", "{tmp}/pairs.csv"),
        ("line 3 needs two paths",),
        pairs_csv(b"first,second\na.png,b.png\nb.png,\n"),
    ),
}
WRITES = {"train": "{tmp}/out", "bench": "{tmp}/out", "tune": "{tmp}/out", "export": "{tmp}/out/model.onnx"}


@pytest.mark.parametrize("case", list(MISTAKES))
def test_a_user_mistake_ends_in_one_line_and_leaves_no_run_folder(tmp_path, monkeypatch, case):
    mistake = MISTAKES[case]
    refuse_training(monkeypatch)
    mistake.prepare(tmp_path, monkeypatch)
    writes = mistake.args[0] in WRITES and not {"--out", "--resume"} & set(mistake.args)  # --resume has its folder
    out = ("--out", WRITES[mistake.args[0]]) if writes else ()
    result = run(*fill([*mistake.args, *out], tmp=str(tmp_path)))
    assert_one_line_error(result, 2, *fill(list(mistake.words), tmp=str(tmp_path)))
    assert not (tmp_path / "out").exists()


LIBRARY_MISTAKES = {  # where the command line's own choices or ranges refuse the input first
    "resume another kind": (
        lambda tmp: RunFolder(tmp / "earlier").start("tune", {}, "", resume=True),
        "holds a bench run; resume it with 'digitcmp bench'",
    ),
    "opset below 17": (lambda tmp: export_onnx(tmp / "model.pt", None, load_source(None), opset=16), "--opset 16"),
    "holdout of no pairs": (
        lambda tmp: draw_tuning_rounds(load_source(None), 4, 0, 0.1),
        "--holdout 0.1 of 4 pairs leaves no validation pairs",
    ),
    "three head classes": (lambda tmp: create_variant("lenet", head_classes=3), "head_classes 3: a comparison head"),
    "two classes, structured head": (lambda tmp: create_variant("vgg4", head_classes=2), "the structured head 1"),
    "unknown executor": (lambda tmp: ExecutorConfig("dask"), "unknown executor 'dask'"),
    "unknown loss": (lambda tmp: TrainConfig(loss="max"), "unknown loss 'max'; choose from: average, sum"),
}


@pytest.mark.parametrize("case", list(LIBRARY_MISTAKES))
def test_a_mistake_the_command_line_refuses_first_is_refused_by_the_library_too(tmp_path, monkeypatch, case):
    call, words = LIBRARY_MISTAKES[case]
    saved_run("bench")(tmp_path, monkeypatch)
    with pytest.raises(DigitcmpError) as error:
        call(tmp_path)
    assert words in str(error.value) and error.value.exit_code == 2


def interrupt(*args: object, **kwargs: object) -> None:
    raise KeyboardInterrupt


def out_of_memory(*args: object, **kwargs: object) -> None:
    raise RuntimeError("out of memory")


TINY = ("--arch", "shallow-fc", "--aux-weight", "1", "--rounds", "1", "--pairs", "20", "--test-pairs", "20")
OUTCOMES = {  # command, what training does, exit code, the last line's words
    "train stopped": (("train", *TINY[:2], *TINY[4:]), interrupt, 130, "interrupted"),
    "bench stopped": (("bench", *TINY), interrupt, 130, "interrupted: results cover the 0 variants that finished"),
    "tune stopped": (
        ("tune", *TINY[:2], "--technique", "ws", *TINY[4:], "--tune-pairs", "20"),
        interrupt,
        130,
        "interrupted: results cover the 0 cells that finished",
    ),
    "bench cell failed": (("bench", *TINY), out_of_memory, 1, "results in"),
    "bench cell failed, gate": (
        ("bench", *TINY, "--compare", "{tmp}/base.json"),
        out_of_memory,
        1,
        "error: regression against {tmp}/base.json: shallow-fc-sep-aux1, shallow-fc-ws-aux1",
    ),
    "tune cell failed": (
        ("tune", *TINY[:2], "--technique", "ws", *TINY[4:], "--tune-pairs", "20"),
        out_of_memory,
        1,
        "results in",
    ),
}


@pytest.mark.parametrize("case", list(OUTCOMES))
def test_ctrl_c_exits_130_and_a_failed_cell_exits_1(tmp_path, monkeypatch, case):
    args, training, code, words = OUTCOMES[case]
    for module in (digitcmp.train, digitcmp.bench, digitcmp.tune):
        monkeypatch.setattr(module, "train_variant", training)
    write_json(tmp_path / "base.json", {"variants": []})
    result = run(*fill([*args, "--out", "{tmp}/out"], tmp=str(tmp_path)))
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert fill(words, tmp=str(tmp_path)) in result.output.strip().splitlines()[-1]
    if args[0] == "train":  # nothing finished, nothing kept
        assert not (tmp_path / "out").exists()
    else:  # a grid keeps what finished (here nothing), and --resume can take it up again
        assert (tmp_path / "out" / "config.json").is_file() and (tmp_path / "out" / "results.json").is_file()
