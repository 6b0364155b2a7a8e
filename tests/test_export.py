"""Export: a checked ONNX file with metadata and a dynamic batch, parity with torch measured and enforced (nothing
written when an ONNX file differs), and the exported file working with predict."""

from __future__ import annotations

import json
import math
import os
import re
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import assert_one_line_error
from digits import PAIRS, labelled_pair, write_pair
from torch import nn
from typer.testing import CliRunner

import digitcmp.export as export_module
from digitcmp.cli import app
from digitcmp.config import TrainConfig
from digitcmp.data import draw_rounds, load_source
from digitcmp.errors import DigitcmpError
from digitcmp.export import (
    PARITY_TOLERANCE,
    ProbabilityModel,
    build_metadata,
    check_parity,
    export_onnx,
    latest_checkpoint,
    parity_pairs,
    write_onnx,
)
from digitcmp.model.checkpoint import load_checkpoint, save_checkpoint
from digitcmp.model.network import ComparisonNet
from digitcmp.predict import load_model, predict_pairs, shipped_model
from digitcmp.report import trained_accuracy
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
        result = train_variant(variant, data, TrainConfig(epochs=2, curves="off"), torch.device("cpu"))
        paths[variant.arch] = save_checkpoint(folder / f"{variant.arch}.pt", result.best_state, result.variant,
                                              {"params": result.params, "summary": result.summary()})  # fmt: skip
    return paths


def test_the_metadata_carries_each_figure_of_the_checkpoint_under_its_own_name(tmp_path):
    net = ComparisonNet(create_variant("shallow-fc", True, 1.0))
    meta = {"params": 1234, "config": {"epochs": 3}, "data": "bundled sample", "round_count": 4,
            "summary": {"test_accuracy_mean": 0.91, "test_accuracy_std": 0.02}}  # fmt: skip
    metadata = build_metadata(net, meta, tmp_path / "c.pt", 17)
    assert (metadata["test_accuracy_mean"], metadata["test_accuracy_std"], metadata["test_rounds"]) == (0.91, 0.02, 4)
    assert (metadata["params"], metadata["train_config"], metadata["data"]) == (1234, {"epochs": 3}, "bundled sample")
    assert metadata["variant"] == net.variant.to_dict() and metadata["variant_name"] == net.variant.name
    assert metadata["source_checkpoint"] == str(tmp_path / "c.pt") and metadata["opset"] == 17


@pytest.mark.parametrize(
    ("rounds", "text"),
    [
        (1, "99.8% test accuracy in one round"),
        (10, "98.9 ± 0.3% test accuracy over 10 rounds"),
        (None, "98.9 ± 0.3% test accuracy"),
    ],
)
def test_the_trained_accuracy_shows_a_spread_only_over_several_rounds(rounds, text):
    mean = 0.998 if rounds == 1 else 0.989
    metadata = {"test_accuracy_mean": mean, "test_accuracy_std": 0.0 if rounds == 1 else 0.003, "test_rounds": rounds}
    assert trained_accuracy(metadata) == text  # None: a file exported before the metadata named its rounds


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["shallow-fc", "vgg4"])
def test_export_is_checked_has_metadata_and_a_dynamic_batch(checkpoints, tmp_path, arch):
    out = tmp_path / "m.onnx"
    summary = export_onnx(checkpoints[arch], out, load_source(None), pairs=200)
    assert summary.parity_max_difference <= 1e-5
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


@pytest.fixture(scope="module")
def zero_network(tmp_path_factory) -> Path:
    """The checkpoint of a shallow-fc network with every weight zero: its comparison probability is exactly 0.5
    (a '>' answer) and its ten digit probabilities are exactly 0.1 (read as a 0, the first), so a distortion of
    its outputs changes probabilities and decisions by amounts known in advance."""
    variant = create_variant("shallow-fc", True, 1.0)
    zero = ComparisonNet(variant, generators=[torch.Generator().manual_seed(0)])
    with torch.no_grad():
        for parameter in zero.parameters():
            parameter.zero_()
    return save_checkpoint(tmp_path_factory.mktemp("zero") / "zero.pt", zero.state_dict(), variant, {})


class Distorted(nn.Module):
    """A network whose comparison logit is shifted, and the logit of one digit class too: exported in place of the
    real one, it makes an ONNX file that differs from torch in a known way."""

    def __init__(
        self, net: ComparisonNet, shift: float = 0.0, digit: int = 0, digit_shift: float = 0.0, alone: bool = False
    ) -> None:
        super().__init__()
        self.net, self.shift, self.alone = net, shift, alone
        self.register_buffer("digit_offsets", torch.zeros(10).index_fill_(0, torch.tensor([digit]), digit_shift))

    def views(self, tta: bool | None = None) -> int:
        return self.net.views(tta)

    @property
    def size(self) -> int:
        return self.net.size

    def forward(self, pairs: torch.Tensor, tta: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``alone``: distorted only when a pair comes on its own (batch size 1), as a graph whose result depends on
        the batch size would be; the size is read with tensor operations so that it stays in the exported graph."""
        logits, digits = self.net(pairs, tta=tta)
        on = (pairs.new_ones(pairs.shape[1]).sum() == 1).to(pairs.dtype) if self.alone else 1.0
        return logits + self.shift * on, digits + self.digit_offsets * on


def export_distorted(monkeypatch, **distortion: float) -> None:
    """Make export write the distorted network's graph while it compares with the real one."""
    write = export_module.write_onnx
    monkeypatch.setattr(
        export_module,
        "write_onnx",
        lambda model, path, *rest: write(ProbabilityModel(Distorted(model.net, **distortion)).eval(), path, *rest),
    )


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def softmax_first(x: float) -> float:
    """The probability of a class whose logit is ``x`` among nine others at 0."""
    return math.exp(x) / (math.exp(x) + 9)


# Distortions of the zero network that export must refuse: Distorted's arguments, and whether the probabilities
# differ beyond PARITY_TOLERANCE and the decisions are identical.
DIVERGENT = {
    # The 0 becomes more likely by 9e-5, about twice the tolerance; it was already the digit read.
    "probability only": ({"digit": 0, "digit_shift": 1e-3}, True, True),
    # 0.5 becomes 0.5 + 1e-6, a fiftieth of the tolerance, yet every '>' answer turns into '≤'.
    "decisions only": ({"shift": 4e-6}, False, False),
    # The same two, at batch size 1 only: the checks at the other batch sizes must not hide them.
    "probability only, one pair at a time": ({"digit": 0, "digit_shift": 1e-3, "alone": True}, True, True),
    "decisions only, one pair at a time": ({"shift": 4e-6, "alone": True}, False, False),
}


@pytest.mark.parametrize("case", list(DIVERGENT))
def test_an_onnx_file_that_differs_from_torch_is_refused_and_nothing_written(zero_network, tmp_path, monkeypatch, case):
    """Either difference alone, in probability beyond the tolerance or in a decision, refuses the export."""
    distortion, beyond, same = DIVERGENT[case]
    export_distorted(monkeypatch, **distortion)
    with pytest.raises(DigitcmpError) as error:
        export_onnx(zero_network, tmp_path / "m.onnx", load_source(None), pairs=50)
    message = str(error.value)
    assert error.value.exit_code == 1 and "nothing written" in message, message
    assert f"identical decisions: {same}" in message
    assert (float(re.search(r"max \|Δp\| (\S+),", message).group(1)) > PARITY_TOLERANCE) is beyond
    assert list(tmp_path.iterdir()) == []


def test_a_difference_within_the_tolerance_is_written(zero_network, tmp_path, monkeypatch):
    """The 0 more likely by 1.8e-5, under half the tolerance, with the same decisions: the file is kept."""
    export_distorted(monkeypatch, digit=0, digit_shift=2e-4)
    summary = export_onnx(zero_network, tmp_path / "m.onnx", load_source(None), pairs=50)
    assert summary.parity_max_difference == pytest.approx(softmax_first(2e-4) - 0.1, abs=1e-7)
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_export_by_default_checks_1000_pairs_in_batches_of_1_7_and_100_and_writes_the_variant_beside_the_checkpoint(
    zero_network,
):
    """With no --out, the file goes to <variant>.onnx beside the checkpoint (never into models/), opset 17, and its
    metadata names the checkpoint it came from."""
    summary = export_onnx(zero_network, None, load_source(None))
    assert summary.path == zero_network.parent / "shallow-fc-ws-aux1.onnx" and summary.path.is_file()
    assert not Path("models").exists()
    assert summary.pairs_checked == 1000 and summary.batch_sizes == (1, 7, 100) and summary.opset == 17
    proto = onnx.load(str(summary.path))
    assert [o.version for o in proto.opset_import] == [17]
    metadata = json.loads({p.key: p.value for p in proto.metadata_props}["digitcmp"])
    assert metadata["source_checkpoint"] == str(zero_network) and metadata["opset"] == 17
    assert summary.metadata["export_seconds"] == round(summary.metadata["export_seconds"], 2)


def test_export_opset_option_reaches_the_file_and_its_metadata(zero_network, tmp_path):
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(app, ["export", str(zero_network), "--opset", "18", "--out", str(out), "-q"],
                                env={"DIGITCMP_DATA": ""})  # fmt: skip
    assert result.exit_code == 0, result.output
    proto = onnx.load(str(out))
    assert [o.version for o in proto.opset_import] == [18]
    assert json.loads({p.key: p.value for p in proto.metadata_props}["digitcmp"])["opset"] == 18


def test_export_reports_the_accuracy_of_both_runtimes_and_its_own_time(checkpoints, tmp_path):
    """A briefly trained network: onnxruntime and torch answer the parity pairs equally well, and the export's
    recorded time is the time it took."""
    started = time.perf_counter()
    summary = export_onnx(checkpoints["shallow-fc"], tmp_path / "m.onnx", load_source(None), pairs=200)
    elapsed = time.perf_counter() - started
    assert isinstance(summary.torch_accuracy, float) and summary.onnx_accuracy == summary.torch_accuracy
    assert 0 < summary.metadata["export_seconds"] <= elapsed + 0.01


class Measured(NamedTuple):
    distortion: dict  # Distorted's arguments, applied to the zero network
    difference: float  # the exact max |Δp|
    same_decisions: bool
    onnx_answers_le: bool  # the ONNX file answers '≤' to every pair (the zero network answers '>')


MEASURED = {
    "none": Measured({}, 0.0, True, False),
    "comparison past 0.5": Measured({"shift": 4e-6}, sigmoid(4e-6) - 0.5, False, True),
    # Ten equal digit probabilities read as a 0 (the first); a larger 0 is still a 0, a larger 3 is a 3.
    "digit 0 more likely": Measured({"digit": 0, "digit_shift": 1e-3}, softmax_first(1e-3) - 0.1, True, False),
    "digit 3 now first": Measured({"digit": 3, "digit_shift": 1e-5}, softmax_first(1e-5) - 0.1, False, False),
}


@pytest.mark.parametrize("case", list(MEASURED))
def test_check_parity_measures_probabilities_and_decisions(zero_network, tmp_path, case):
    """check_parity's numbers against differences known exactly: the zero network outputs 0.5 and ten 0.1s."""
    distortion, difference, same, onnx_answers_le = MEASURED[case]
    net, _ = load_checkpoint(zero_network)
    path = tmp_path / "m.onnx"
    write_onnx(ProbabilityModel(Distorted(net, **distortion)).eval(), path, 17, {})
    pairs = parity_pairs(load_source(None), 40, seed=0, size=14)
    worst, identical, onnx_accuracy, torch_accuracy = check_parity(
        path, ProbabilityModel(net).eval(), pairs, (1, 7, 40)
    )
    assert worst == pytest.approx(difference, abs=1e-7) and identical is same
    le_share = float((pairs.targets > 0.5).float().mean())  # the zero network answers '>' to every pair
    assert torch_accuracy == pytest.approx(1 - le_share)
    assert onnx_accuracy == pytest.approx(le_share if onnx_answers_le else 1 - le_share)


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


@pytest.fixture(scope="module")
def exported(checkpoints, tmp_path_factory):
    """``digitcmp export`` of the trained fully connected checkpoint: the command's result and the file."""
    out = tmp_path_factory.mktemp("exported") / "x.onnx"
    result = CliRunner().invoke(
        app, ["export", str(checkpoints["shallow-fc"]), "--out", str(out)], env={"DIGITCMP_DATA": ""}
    )
    return result, out


def test_export_cli_reports_and_refuses_bad_input(checkpoints, exported, tmp_path):
    runner = CliRunner()
    result, out = exported
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


def test_predict_answers_with_an_exported_model(checkpoints, exported, tmp_path):
    """``predict --model`` runs the exported file: its answer is that model's (not the shipped model's), for the
    model the metadata names."""
    result, out = exported
    assert result.exit_code == 0, result.output
    a, b = write_pair(tmp_path / "pair", *labelled_pair(*PAIRS[2]))
    answer = CliRunner().invoke(app, ["predict", "--model", str(out), str(a), str(b), "--json"])
    assert answer.exit_code == 0, answer.output
    model = load_model(out)
    assert model.metadata["source_checkpoint"] == str(checkpoints["shallow-fc"])
    assert model.metadata["variant"]["arch"] == "shallow-fc"
    expected = next(predict_pairs(model, [(a, b)])).to_dict()
    assert json.loads(answer.stdout) == expected
    assert expected != next(predict_pairs(load_model(shipped_model()), [(a, b)])).to_dict()


def test_a_model_with_test_time_views_exports_both_readings_with_its_weights_once(tmp_path):
    """The graph answers with every view unless fed all_views=false, then with the first view alone, each as torch
    does; the weights are stored once, so the file is far from twice the single graph."""
    import onnx
    import onnxruntime as ort

    from digitcmp.contract import VIEWS_INPUT
    from digitcmp.export import traced

    variant = create_variant("vgg4", True, 1.0, channels=(4,), tta=True, tta_warps=2)
    net = ComparisonNet(variant, generators=[torch.Generator().manual_seed(0)]).eval()
    model = ProbabilityModel(net).eval()
    write_onnx(model, tmp_path / "m.onnx", 17, {})
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["pairs"]
    assert [i.name for i in session.get_overridable_initializers()] == [VIEWS_INPUT]
    pairs = torch.rand(5, 2, 14, 14)
    with torch.no_grad():
        every, first = model(pairs), model.first_view()(pairs)
    fed = session.run(None, {"pairs": pairs.numpy(), VIEWS_INPUT: np.array(False)})
    for got, want in ((session.run(None, {"pairs": pairs.numpy()}), every), (fed, first)):
        for g, w in zip(got, want, strict=True):
            assert np.allclose(g, w.numpy(), atol=1e-5)
    assert not np.allclose(every[1].numpy(), first[1].numpy(), atol=1e-4)
    single = traced(model, 17).ByteSize()
    assert onnx.load(str(tmp_path / "m.onnx")).ByteSize() < 1.3 * single
