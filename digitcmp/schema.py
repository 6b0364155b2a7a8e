"""JSON Schemas of the files digitcmp writes for machines: results.json of train, bench and tune, and the metadata
document inside an exported ONNX model.

The schemas ship with the package (``digitcmp/schemas``) so that other programs can validate against the same
contract; predict refuses a model whose metadata breaks it. No torch here.
"""

from __future__ import annotations

import importlib.resources
import json
from functools import cache

SCHEMA_VERSION = 1  # of the results files; bumped when a field changes meaning or goes away
SCHEMAS = ("common", "train-results", "bench-results", "tune-results", "onnx-metadata")


def schema_text(name: str) -> str:
    """The schema file ``<name>.schema.json`` as shipped."""
    return (importlib.resources.files("digitcmp.schemas") / f"{name}.schema.json").read_text(encoding="utf-8")


@cache
def validator(name: str):
    """A validator for one schema, with the shared definitions resolvable by their ``urn:digitcmp:`` ids."""
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    documents = {other: json.loads(schema_text(other)) for other in SCHEMAS}
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
