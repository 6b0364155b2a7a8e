"""Export: a checked ONNX file with metadata and a dynamic batch, parity with torch, nothing written on failure."""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import assert_one_line_error
from typer.testing import CliRunner

import digitcmp.export as export_module
from digitcmp.cli import app
from digitcmp.config import TrainConfig
from digitcmp.data import draw_rounds, load_source
from digitcmp.errors import DigitcmpError
from digitcmp.export import export_onnx, latest_checkpoint
from digitcmp.model.checkpoint import load_checkpoint, save_checkpoint
from digitcmp.model.network import ComparisonNet
from digitcmp.train import train_variant
from digitcmp.variant import create_variant


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Briefly trained checkpoints of a fully connected model and of a batch-norm ensemble of two networks."""
    folder = tmp_path_factory.mktemp("ckpt")
    data = draw_rounds(load_source(None), 1, 300, 100, 0.1, seed=0)
    paths = {}
    for variant in (
        create_variant("shallow-fc", True, 1.0),
        create_variant("vgg4", False, 0.5, channels=(4,), ensemble=2),
    ):
        result = train_variant(variant, data, TrainConfig(epochs=2, curves=False), torch.device("cpu"))
        paths[variant.arch] = save_checkpoint(folder / f"{variant.arch}.pt", result.best_state, result.variant,
                                              {"params": result.params, "summary": result.summary()})  # fmt: skip
    return paths


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["shallow-fc", "vgg4"])
def test_export_is_checked_has_metadata_and_a_dynamic_batch(checkpoints, tmp_path, arch):
    out = tmp_path / "m.onnx"
    summary = export_onnx(checkpoints[arch], out, load_source(None), pairs=200)
    assert summary.parity_max_difference <= 1e-5 and summary.decisions_identical
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version >= 17
    metadata = json.loads({p.key: p.value for p in proto.metadata_props}["digitcmp"])
    assert metadata["variant"]["arch"] == arch and metadata["input"]["shape"] == ["batch", 2, 14, 14]
    assert metadata["labels"].startswith("le_probability > 0.5") and metadata["opset"] == 17
    assert {"digitcmp_version", "created", "train_config", "test_accuracy_mean"} <= set(metadata)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["le_probability", "digit_probabilities"]
    model, _ = load_checkpoint(checkpoints[arch])
    pairs = np.random.default_rng(0).random((11, 2, 14, 14), dtype=np.float32)
    le, digits = session.run(None, {"pairs": pairs})
    with torch.no_grad():
        logits, _ = model(torch.from_numpy(pairs)[None])
    assert le.shape == (11,) and digits.shape == (11, 2, 10)
    assert np.abs(le - torch.sigmoid(logits[0]).numpy()).max() < 1e-5
    assert np.allclose(digits.sum(-1), 1, atol=1e-5)


def test_a_parity_failure_writes_nothing(checkpoints, tmp_path, monkeypatch):
    monkeypatch.setattr(export_module, "check_parity", lambda *args: (0.5, False, 0.5, 0.9))
    out = tmp_path / "m.onnx"
    with pytest.raises(DigitcmpError) as error:
        export_onnx(checkpoints["shallow-fc"], out, load_source(None), pairs=50)
    assert error.value.exit_code == 1 and "nothing written" in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_default_checkpoint_is_the_newest_of_train_and_bench_runs(tmp_path, checkpoints):
    with pytest.raises(DigitcmpError, match="no checkpoint found"):
        latest_checkpoint(tmp_path)
    for name, file, age in (
        ("bench-old", "best.pt", 200),
        ("train-new", "checkpoint.pt", 0),
        ("bench", "best.pt", 100),
    ):
        (tmp_path / name).mkdir()
        path = tmp_path / name / file
        path.write_bytes(checkpoints["shallow-fc"].read_bytes())
        os.utime(path, (1e9 - age, 1e9 - age))
    assert latest_checkpoint(tmp_path) == tmp_path / "train-new" / "checkpoint.pt"
    os.utime(tmp_path / "bench" / "best.pt", (2e9, 2e9))
    assert latest_checkpoint(tmp_path) == tmp_path / "bench" / "best.pt"


def test_export_cli_reports_and_refuses_bad_input(checkpoints, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli.onnx"
    result = runner.invoke(
        app, ["export", str(checkpoints["shallow-fc"]), "--out", str(out)], env={"DIGITCMP_DATA": ""}
    )
    assert result.exit_code == 0, result.output
    assert "identical decisions" in result.stdout and out.is_file()
    assert f"digitcmp predict first.png second.png --model {out}" in result.output
    untrained_digits = create_variant("shallow-fc", True, 0.0)
    noaux = save_checkpoint(tmp_path / "noaux.pt", ComparisonNet(untrained_digits).state_dict(), untrained_digits, {})
    for args, words in (
        ([str(noaux)], "without an auxiliary loss"),
        (["/nonexistent.pt"], "does not exist"),
        ([str(checkpoints["vgg4"]), "--opset", "11"], "--opset"),
    ):
        bad = runner.invoke(app, ["export", *args, "--out", str(tmp_path / "x.onnx")], env={"DIGITCMP_DATA": ""})
        assert_one_line_error(bad, 2, words)
