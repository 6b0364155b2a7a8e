"""JSON Schemas of the files digitcmp writes for machines: results.json of train, bench and tune, and the metadata
document inside an exported ONNX model.

The schemas ship with the package (``digitcmp/schemas``) so that other programs can validate against the same
contract; predict refuses a model whose metadata breaks it. No torch here.
"""

from __future__ import annotations

import importlib.resources
import json
from functools import cache
from typing import Any

from .settings import Knob, base_type, choice_type, declared, is_layers

SCHEMA_VERSION = 2  # of the results files; bumped when a field changes meaning or goes away
SCHEMAS = ("common", "train-results", "bench-results", "tune-results", "onnx-metadata")


def schema_text(name: str) -> str:
    """The schema file ``<name>.schema.json`` as shipped."""
    return (importlib.resources.files("digitcmp.schemas") / f"{name}.schema.json").read_text(encoding="utf-8")


def document(name: str) -> dict:
    """Schema ``name`` in full: the shipped file, with the properties of the variant's and the training's declared
    settings filled in from their declarations (digitcmp.settings), so that a setting is declared once."""
    from .config import TrainConfig
    from .variant import Variant

    schema = json.loads(schema_text(name))
    if name == "common":
        for definition, cls in (("variant", Variant), ("train_config", TrainConfig)):
            properties = schema["$defs"][definition]["properties"]
            properties |= {key: setting_schema(knob, kind) for key, (knob, kind, _) in declared(cls).items()}
    return schema


def setting_schema(knob: Knob, kind: Any) -> dict:
    """The JSON Schema of one declared setting's values: its type, its choices, its range."""
    base, choices = base_type(kind), choice_type(kind)
    if choices is not None:
        return {"enum": [*(choice.value for choice in choices), *choices.legacy()]}
    if is_layers(base):
        return {"$ref": "#/$defs/layers"}
    json_type = {bool: "boolean", int: "integer", float: "number", str: "string"}[base]
    schema: dict = {"type": json_type if base is kind else [json_type, "null"]}
    if knob.low is not None:
        schema["exclusiveMinimum" if knob.low_open else "minimum"] = knob.low
    if knob.high is not None:
        schema["exclusiveMaximum" if knob.high_open else "maximum"] = knob.high
    return schema


@cache
def validator(name: str):
    """A validator for one schema, with the shared definitions resolvable by their ``urn:digitcmp:`` ids."""
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    documents = {other: document(other) for other in SCHEMAS}
    registry = Registry().with_resources(
        (document["$id"], Resource.from_contents(document)) for document in documents.values()
    )
    return Draft202012Validator(documents[name], registry=registry)


def problems(document: object, name: str) -> list[str]:
    """Every way ``document`` breaks schema ``name``, as 'where: what' lines (empty when it conforms)."""
    errors = sorted(validator(name).iter_errors(document), key=lambda error: list(error.absolute_path))
    return [f"{error.json_path}: {error.message}" for error in errors]


def results_schema(document: dict) -> str:
    """Which schema a results.json follows, from its ``kind``."""
    return f"{document.get('kind', 'bench')}-results"
