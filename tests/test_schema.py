"""The files digitcmp writes for machines follow the JSON Schemas shipped with the package: results.json of train,
bench and tune (from real runs), the ONNX metadata (of the shipped model), and predict refuses metadata that breaks
its schema."""

from __future__ import annotations

import copy
import json
from dataclasses import fields
from pathlib import Path

import onnx
import pytest
from conftest import REPO
from typer.testing import CliRunner

from digitcmp.cli import app
from digitcmp.config import TrainConfig
from digitcmp.contract import METADATA_KEY
from digitcmp.errors import DigitcmpError
from digitcmp.predict import load_model, shipped_model
from digitcmp.schema import SCHEMAS, problems, results_schema, schema_text
from digitcmp.schema import document as full_schema
from digitcmp.variant import Variant

runner = CliRunner()
TINY = ["--rounds", "2", "--epochs", "1", "--pairs", "120", "--test-pairs", "100", "-q"]
COMMANDS = {
    "train": ["train", "--arch", "shallow-fc", *TINY],
    "bench": ["bench", "--arch", "shallow-fc", "--aux-weight", "0,1", *TINY],
    "tune": ["tune", "--arch", "shallow-fc", "--technique", "aux", "--lr", "1e-3,3e-3", *TINY],
}


@pytest.fixture(scope="module")
def documents(tmp_path_factory) -> dict[str, dict]:
    """results.json of a tiny real run of each command."""
    found = {}
    for kind, args in COMMANDS.items():
        out = tmp_path_factory.mktemp(kind) / "run"
        result = runner.invoke(app, [*args, "--out", str(out)])
        assert result.exit_code == 0, result.output
        found[kind] = json.loads((out / "results.json").read_text(encoding="utf-8"))
    return found


def common(name: str) -> dict:
    return json.loads(schema_text("common"))["$defs"][name]


def test_every_schema_is_valid_json_schema_with_its_own_id():
    from jsonschema import Draft202012Validator

    for name in SCHEMAS:
        schema = json.loads(schema_text(name))
        Draft202012Validator.check_schema(schema)
        assert schema["$id"] == f"urn:digitcmp:{name}"


@pytest.mark.parametrize("kind", list(COMMANDS))
def test_results_of_every_command_follow_their_schema(documents, kind):
    document = documents[kind]
    assert results_schema(document) == f"{kind}-results"
    assert problems(document, f"{kind}-results") == []


def test_the_schemas_describe_every_field_of_a_variant_and_a_training_configuration():
    """A field added to the code and not to the schema (or the other way round) shows here."""
    assert set(common("variant")["properties"]) == {f.name for f in fields(Variant)}
    assert set(common("variant_fields")["properties"]) == {f.name for f in fields(Variant)}
    assert set(common("train_config")["properties"]) == {f.name for f in fields(TrainConfig)}


def test_the_published_schema_states_each_setting_as_its_declaration_does():
    """Validation takes each declared setting's type, choices and range from its declaration; the published file
    must say the same (a new setting: paste the line printed here into digitcmp/schemas/common.schema.json)."""
    full = full_schema("common")["$defs"]
    for definition in ("variant", "train_config"):
        published, declared = common(definition)["properties"], full[definition]["properties"]
        for name, expected in declared.items():
            assert published.get(name) == expected, f'{definition}: "{name}": {json.dumps(expected)}'


def test_published_results_files_follow_the_schema():
    for path in (REPO / "docs" / "results" / "results.json", REPO / "benchmarks" / "baseline.json"):
        document = json.loads(path.read_text(encoding="utf-8"))
        assert problems(document, results_schema(document)) == [], path


def broken(document: dict, change) -> list[str]:
    copied = copy.deepcopy(document)
    change(copied)
    return problems(copied, results_schema(copied))


def first_ok(records: list[dict]) -> dict:
    return next(record for record in records if record["status"] == "ok")


BENCH_BREAKS = {
    "no variants": lambda d: d.pop("variants"),
    "accuracy above 1": lambda d: first_ok(d["variants"]).update(test_accuracy_mean=1.5),
    "finished without a summary": lambda d: first_ok(d["variants"]).pop("test_accuracy_mean"),
    "failed without an error": lambda d: d["variants"][0].update(status="failed"),
    "unknown status": lambda d: d["variants"][0].update(status="done"),
    "a training setting nobody knows": lambda d: d["variants"][0]["train_config"].update(epochz=3),
    "a round without its test accuracy": lambda d: first_ok(d["variants"])["rounds"][0].pop("test_accuracy"),
    "digit accuracy without the auxiliary loss": lambda d: next(
        v for v in d["variants"] if v["aux_weight"] == 0
    ).update(digit_accuracy_mean=0.5),
    "another schema version": lambda d: d.update(schema_version=3),
    "best keeps its rounds": lambda d: d["best"].update(rounds=[]),
    "environment without torch": lambda d: d["environment"].pop("torch_version"),
}


@pytest.mark.parametrize("change", list(BENCH_BREAKS))
def test_the_bench_schema_refuses_a_broken_document(documents, change):
    assert broken(documents["bench"], BENCH_BREAKS[change])


def test_the_train_and_tune_schemas_refuse_broken_documents(documents):
    assert broken(documents["train"], lambda d: d.pop("best_round"))
    assert broken(documents["train"], lambda d: d["variant"].update(head="linear"))
    assert broken(documents["tune"], lambda d: d["cells"][0].pop("trials"))
    assert broken(documents["tune"], lambda d: d["cells"][0]["trials"][0].update(val_accuracy=2))


def test_a_failed_cell_with_its_error_is_valid(documents):
    def fail(document: dict) -> None:
        cell = document["variants"][0]
        for key in ("technique", "params", "rounds", "test_accuracy_mean"):
            cell.pop(key)
        cell.update(status="failed", error="RuntimeError: out of memory")

    assert broken(documents["bench"], fail) == []


def test_the_shipped_model_metadata_follows_the_schema():
    metadata = load_model().metadata
    assert problems(metadata, "onnx-metadata") == []
    for change in (
        lambda m: m.update(format="digitcmp-onnx/2"),
        lambda m: m["input"].update(shape=["batch", 2, 20, 20]),
        lambda m: m["input"].update(polarity="black digit on white background"),
        lambda m: m.pop("labels"),
        lambda m: m["variant"].update(arch=""),
        lambda m: m.update(opset=11),
    ):
        copied = copy.deepcopy(metadata)
        change(copied)
        assert problems(copied, "onnx-metadata"), copied


def with_metadata(path: Path, metadata: dict) -> Path:
    """A copy of the shipped model whose digitcmp metadata is ``metadata``."""
    model = onnx.load(str(shipped_model()))
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = json.dumps(metadata)
    onnx.save(model, str(path))
    return path


def test_predict_refuses_a_model_whose_metadata_breaks_the_contract(tmp_path):
    metadata = load_model().metadata
    assert load_model(with_metadata(tmp_path / "same.onnx", metadata)).metadata == metadata
    for name, document in (("empty", {}), ("other-format", {**metadata, "format": "something/1"})):
        path = with_metadata(tmp_path / f"{name}.onnx", document)
        with pytest.raises(DigitcmpError, match="breaks its contract") as caught:
            load_model(path)
        assert str(path) in str(caught.value)


def test_the_docs_publish_every_schema():
    docs = "\n".join(page.read_text(encoding="utf-8") for page in (REPO / "docs").glob("*.md"))
    for name in SCHEMAS:
        assert f"digitcmp/schemas/{name}.schema.json" in docs, name


def test_a_reproduction_row_needs_the_runs_figure_under_either_versions_name():
    document = json.loads((REPO / "benchmarks" / "baseline.json").read_text(encoding="utf-8"))
    row = {"report": "r", "cell": "c", "published_mean": 0.9, "published_std": 0.01, "run_mean": 0.9,
           "run_std": 0.01, "metric": "last", "within": True, "command": "digitcmp bench --preset x"}  # fmt: skip
    legacy = {**{k: v for k, v in row.items() if not k.startswith("run_")}, "ours_mean": 0.9, "ours_std": 0.01}
    for rows, valid in (([row], True), ([legacy], True), ([{k: v for k, v in row.items() if k != "run_mean"}], False)):
        assert (problems({**document, "reproduction": rows}, "bench-results") == []) == valid
