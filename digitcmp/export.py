"""Export a checkpoint to ONNX, and keep the file only if it passes the checker and parity with torch.

The graph takes ``pairs`` float32 N×2×14×14 (pooled digits in [0, 1], white on black; normalisation is inside),
or N×2×28×28 for a model of full resolution (the 28×28 digits themselves), and returns ``le_probability`` (N)
and ``digit_probabilities`` (N×2×10); only the batch axis is dynamic.
A variant with test-time views exports both readings in one graph, an ``If`` on the optional boolean input
``all_views`` (true unless fed): every view, or the first view alone (predict's early exit). The weights are stored
once.
Metadata (JSON values) records the variant, training, accuracy, the input contract and versions; ``predict``
refuses a model without it.

Exporter: torch's TorchScript-based exporter (``dynamo=False``) at opset 17 by default. The dynamo exporter of
torch 2.15 fails on the batch-norm architectures and wrote an invalid Split node for lenet in our trials.
"""

from __future__ import annotations

import io
import json
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import __version__
from .contract import (
    BATCH_AXIS,
    INPUT_NAME,
    LABELS,
    METADATA_FORMAT,
    METADATA_KEY,
    OUTPUT_NAMES,
    OUTPUTS,
    POLARITY,
    VIEWS_INPUT,
    input_contract,
    input_shape,
)
from .data import DigitSource, PairSet, draw_pairs
from .errors import DigitcmpError
from .files import atomic_write
from .model.checkpoint import load_checkpoint
from .model.network import ComparisonNet
from .preprocess import model_digits

# Float32 sums in onnxruntime and torch differ: by up to about 1e-5 in a probability of a full-resolution vgg4.
PARITY_TOLERANCE = 5e-5
# The parity check's largest batch, and pairs per torch call: every test-time view of a full-resolution ensemble
# takes about 4 GB for 100 pairs, in onnxruntime as in torch, and more than a machine's memory for 1,000.
PARITY_BATCH = 100
CHECKPOINT_NAMES = ("checkpoint.pt", "best.pt")  # what train and bench write in their run folders


class ProbabilityModel(nn.Module):
    """What the ONNX graph computes: probabilities from a pair batch N×2×S×S, each output's logits divided by the
    temperature training fitted (``calibration``: digitcmp.calibration; 1 where a checkpoint has none)."""

    def __init__(self, net: ComparisonNet, calibration: dict | None = None, tta: bool | None = None) -> None:
        """``tta``: False reads the first view alone; None, the variant's views."""
        super().__init__()
        self.net = net
        self.calibration = calibration
        self.digit_temperature = (calibration or {}).get("digit_temperature", 1.0)
        self.comparison_temperature = (calibration or {}).get("comparison_temperature", 1.0)
        self.tta = tta

    @property
    def size(self) -> int:
        """The side of the digits it reads."""
        return self.net.size

    def first_view(self) -> ProbabilityModel | None:
        """The same model reading the first view alone, or None where it reads only that one anyway."""
        if self.net.views(self.tta) == 1:
            return None
        return ProbabilityModel(self.net, self.calibration, tta=False).train(self.training)

    def forward(self, pairs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, digits = self.net(pairs.unsqueeze(0), tta=self.tta)
        le = torch.sigmoid(logits[0] / self.comparison_temperature)
        return le, torch.softmax(digits[0] / self.digit_temperature, dim=-1)


@dataclass
class ExportSummary:
    """What an export wrote and what its checks measured."""

    path: Path
    size_bytes: int
    opset: int
    parity_max_difference: float  # decisions are identical: an export whose decisions differ writes nothing
    batch_sizes: tuple[int, ...]
    onnx_accuracy: float
    torch_accuracy: float
    pairs_checked: int
    metadata: dict


def latest_checkpoint(root: Path = Path("runs")) -> Path:
    """The newest checkpoint under ``root``: a train run's checkpoint.pt or a bench's best.pt."""
    candidates = [path for name in CHECKPOINT_NAMES for path in root.glob(f"*/{name}")]
    if not candidates:
        raise DigitcmpError(
            f"no checkpoint found under {root}/; pass CHECKPOINT, or run 'digitcmp train' or 'digitcmp bench' first"
        )
    return max(candidates, key=lambda p: p.stat().st_mtime)


def parity_pairs(source: DigitSource, n: int, seed: int, size: int) -> PairSet:
    """Real test pairs for the parity check, as a model of that input side reads them."""
    pooled = torch.from_numpy(model_digits(source.test.images, size))
    labels = torch.from_numpy(source.test.labels.astype(np.int64))
    return draw_pairs(pooled, labels, min(n, len(labels) // 2), torch.Generator().manual_seed(seed))


def build_metadata(net: ComparisonNet, meta: dict, checkpoint: Path, opset: int) -> dict:
    summary = meta.get("summary", {})
    return {
        "format": METADATA_FORMAT,
        "variant": net.variant.to_dict(),
        "variant_name": net.variant.name,
        "params": meta.get("params"),
        "train_config": meta.get("config"),
        "test_accuracy_mean": summary.get("test_accuracy_mean"),
        "test_accuracy_std": summary.get("test_accuracy_std"),
        "test_rounds": meta.get("round_count"),  # how many rounds the mean and std are over (absent before 0.4.1)
        "data": meta.get("data"),
        "calibration": meta.get("calibration"),
        "input": input_contract(net.size),
        "outputs": OUTPUTS,
        "labels": LABELS,
        "digitcmp_version": __version__,
        "torch_version": str(torch.__version__),
        "exporter": "torch.onnx.export(dynamo=False)",
        "opset": opset,
        "source_checkpoint": str(checkpoint),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def traced(model: ProbabilityModel, opset: int):
    """The model as an ONNX model in memory (the TorchScript exporter)."""
    import onnx

    shape = input_shape(model.size)
    example = torch.rand(3, *shape[1:])  # any batch size: the batch axis is declared dynamic
    dynamic = {name: {0: BATCH_AXIS} for name in (INPUT_NAME, *OUTPUT_NAMES)}
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the exporter's deprecation notes are for torch developers, not digitcmp's users
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            buffer,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=dynamic,
            opset_version=opset,
            dynamo=False,
        )
    return onnx.load_from_string(buffer.getvalue())


def branch(graph, prefix: str, renamed: dict[str, str]):
    """``graph`` as an ``If`` branch: no inputs of its own (it reads the outer graph's), every value it computes
    prefixed so the two branches never share a name, and the initializers in ``renamed`` under their new names."""
    import onnx
    from onnx import helper

    names = {**renamed, **{out: prefix + out for node in graph.node for out in node.output if out}}
    nodes = []
    for node in graph.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.name = prefix + node.name
        copy.input[:] = [names.get(name, name) for name in node.input]
        copy.output[:] = [names.get(name, name) for name in node.output]
        nodes.append(copy)
    outputs = []
    for output in graph.output:
        copy = onnx.ValueInfoProto()
        copy.CopyFrom(output)
        copy.name = names[output.name]
        outputs.append(copy)
    return helper.make_graph(nodes, prefix.rstrip("/"), [], outputs)


def with_first_view(every_view, first_view):
    """One model holding both readings: an ``If`` on the boolean input ``all_views`` (an initializer, true unless
    fed) between the graph of every view and that of the first view alone, with the weights they share stored once."""
    from onnx import TensorProto, helper, numpy_helper

    outer = every_view.graph
    shared = {initializer.name: initializer for initializer in outer.initializer}
    own = [i for i in first_view.graph.initializer if shared.get(i.name) != i]  # absent, or other values
    renamed = {i.name: f"first_view/{i.name}" for i in own}
    extra = []
    for initializer in own:
        copy = numpy_helper.from_array(numpy_helper.to_array(initializer), renamed[initializer.name])
        extra.append(copy)
    switch = helper.make_node(
        "If",
        [VIEWS_INPUT],
        list(OUTPUT_NAMES),
        name="views",
        then_branch=branch(outer, "all_views/", {}),
        else_branch=branch(first_view.graph, "first_view/", renamed),
    )
    flag = numpy_helper.from_array(np.array(True), VIEWS_INPUT)
    graph = helper.make_graph(
        [switch],
        outer.name,
        [*outer.input, helper.make_tensor_value_info(VIEWS_INPUT, TensorProto.BOOL, [])],
        list(outer.output),
        [*outer.initializer, *extra, flag],
    )
    return helper.make_model(graph, opset_imports=every_view.opset_import, ir_version=every_view.ir_version)


def write_onnx(model: ProbabilityModel, path: Path, opset: int, metadata: dict) -> None:
    import onnx

    proto = traced(model, opset)
    first_view = model.first_view()
    if first_view is not None:
        proto = with_first_view(proto, traced(first_view, opset))
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    proto.producer_name, proto.producer_version = "digitcmp", __version__
    proto.doc_string = (
        f"Is the first MNIST digit ≤ the second? Input '{INPUT_NAME}' N×2×{model.size}×{model.size} float32 in [0, 1], "
        f"{POLARITY}; {LABELS}."
    )
    onnx.save(proto, str(path))


def readings(session, model: ProbabilityModel) -> list[tuple[dict, ProbabilityModel]]:
    """What to compare the graph with: the feeds beside the pairs, and the torch model that reading matches."""
    first_view = model.first_view()
    names = {i.name for i in session.get_overridable_initializers()}
    if first_view is None or VIEWS_INPUT not in names:
        return [({}, model)]
    return [({}, model), ({VIEWS_INPUT: np.array(False)}, first_view)]


def check_parity(
    path: Path, model: ProbabilityModel, pairs: PairSet, batch_sizes: tuple[int, ...]
) -> tuple[float, bool, float, float]:
    """Run onnxruntime and torch on the same real pairs at several batch sizes, in every reading the graph holds
    (every view; the first view alone).

    Returns (max |Δprobability|, identical decisions, onnx accuracy, torch accuracy), the accuracies of every view.
    """
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # not the note that all_views is an input, which it is meant to be
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inputs = pairs.inputs.numpy()
    worst, same, accuracies = 0.0, True, []
    for feeds, reading in readings(session, model):
        with torch.no_grad():
            chunks = [reading(chunk) for chunk in pairs.inputs.split(PARITY_BATCH)]
        torch_le, torch_digits = (torch.cat(outputs).numpy() for outputs in zip(*chunks, strict=True))
        for batch in batch_sizes:
            parts = [
                session.run(None, {INPUT_NAME: inputs[i : i + batch], **feeds}) for i in range(0, len(inputs), batch)
            ]
            onnx_le = np.concatenate([p[0] for p in parts])
            onnx_digits = np.concatenate([p[1] for p in parts])
            differences = (np.abs(onnx_le - torch_le).max(), np.abs(onnx_digits - torch_digits).max())
            worst = max(worst, *(float(d) for d in differences))
            same &= bool(np.array_equal(onnx_le > 0.5, torch_le > 0.5))
            same &= bool(np.array_equal(onnx_digits.argmax(-1), torch_digits.argmax(-1)))
        targets = pairs.targets.numpy() > 0.5
        accuracies.append((float(((onnx_le > 0.5) == targets).mean()), float(((torch_le > 0.5) == targets).mean())))
    return worst, same, *accuracies[0]


def export_onnx(
    checkpoint: Path, out: Path | None, source: DigitSource, opset: int = 17, pairs: int = 1000, seed: int = 0
) -> ExportSummary:
    """Export, validate on real test pairs, and only then move the file into place (by default beside the
    checkpoint, as <variant>.onnx: never into a checkout's models/, which is the shipped model's package folder)."""
    if opset < 17:
        raise DigitcmpError(f"--opset {opset} is too old; use 17 or newer")
    net, meta = load_checkpoint(checkpoint)
    if not net.variant.names_digits:
        raise DigitcmpError(
            f"{net.variant.name} was trained without an auxiliary loss, so it cannot name the digits that predict "
            "reports; export a variant trained with one (digitcmp train --aux-weight 1)"
        )
    out = out or checkpoint.parent / f"{net.variant.name}.onnx"
    model = ProbabilityModel(net, meta.get("calibration")).eval()
    metadata = build_metadata(net, meta, checkpoint, opset)
    test_pairs = parity_pairs(source, pairs, seed, net.size)
    batch_sizes = (1, 7, min(PARITY_BATCH, len(test_pairs)))
    result: dict = {}

    def write_and_check(tmp: Path) -> None:
        write_onnx(model, tmp, opset, metadata)
        model.eval()  # the exporter restores the module's mode; keep eval for the comparison
        result["parity"] = check_parity(tmp, model, test_pairs, batch_sizes)
        worst, same, _, _ = result["parity"]
        if worst > PARITY_TOLERANCE or not same:
            raise DigitcmpError(
                f"ONNX output differs from torch (max |Δp| {worst:.2e}, identical decisions: {same}); nothing written",
                exit_code=1,
            )

    started = time.perf_counter()
    atomic_write(out, write_and_check)
    worst, _, onnx_accuracy, torch_accuracy = result["parity"]
    metadata["export_seconds"] = round(time.perf_counter() - started, 2)
    return ExportSummary(
        out, out.stat().st_size, opset, worst, batch_sizes, onnx_accuracy, torch_accuracy,
        len(test_pairs), metadata,
    )  # fmt: skip
