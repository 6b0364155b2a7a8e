"""The OpenAPI 3.1 description of ``digitcmp serve``'s API, served at ``GET /openapi.json``.

The response schemas are JSON Schema (2020-12), so a program, and the tests, can check real answers against them.
"""

from __future__ import annotations

from functools import cache

from . import __version__
from .contract import LABELS, MNIST_STYLE

PROBABILITY = {"type": "number", "minimum": 0, "maximum": 1}
DIGIT = {"type": "integer", "minimum": 0, "maximum": 9}
NULLABLE_NUMBER = {"type": ["number", "null"]}

READ = {
    "type": "object",
    "description": "How one digit was read.",
    "required": ["path", "digit", "probability", "runner_up", "runner_up_probability", "unsure"],
    "properties": {
        "path": {"type": "string", "description": "The form field the picture came in."},
        "digit": DIGIT,
        "probability": PROBABILITY,
        "runner_up": DIGIT,
        "runner_up_probability": PROBABILITY,
        "unsure": {"type": "boolean", "description": "The digit's probability is under 0.8."},
        "place": {"enum": ["left", "right", "top", "bottom"], "description": "Where it stood on a sheet."},
        "picture": {
            "type": "object",
            "description": "How its ink was isolated from the picture.",
            "required": ["even_background", "stroke_scale", "parts_dropped"],
            "properties": {
                "even_background": {"type": "boolean"},
                "stroke_scale": {"type": "number"},
                "parts_dropped": {"type": "integer", "minimum": 0},
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}

COMPARISON = {
    "type": "object",
    "description": "The answer: the object 'digitcmp predict --json' prints. " + LABELS + ".",
    "required": ["first", "second", "first_le_second", "probability", "consistent", "unsure"],
    "properties": {
        "first": {"$ref": "#/components/schemas/Read"},
        "second": {"$ref": "#/components/schemas/Read"},
        "first_le_second": {"type": "boolean"},
        "probability": {**PROBABILITY, "description": "The probability of the answer given (≤ or >)."},
        "consistent": {"type": "boolean", "description": "The comparison agrees with the two digits read."},
        "unsure": {"type": "boolean"},
        "seen": {
            "type": "object",
            "description": "With ?include=digits: the 28×28 digits the model saw, as PNG data URLs.",
            "required": ["first", "second"],
            "properties": {
                "first": {"type": "string", "pattern": "^data:image/png;base64,"},
                "second": {"type": "string", "pattern": "^data:image/png;base64,"},
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}

ERROR = {
    "type": "object",
    "description": "What is wrong, naming the field or the limit, in one line.",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
    "additionalProperties": False,
}

MODEL = {
    "type": "object",
    "description": "The model the server answers with: its variant, accuracy and input contract.",
    "required": ["model", "variant", "variant_name", "input", "outputs", "labels", "server_version"],
    "properties": {
        "model": {"type": "string", "description": "The ONNX file's name."},
        "variant": {"type": "object"},
        "variant_name": {"type": "string"},
        "params": {"type": ["integer", "null"]},
        "test_accuracy_mean": NULLABLE_NUMBER,
        "test_accuracy_std": NULLABLE_NUMBER,
        "test_rounds": {"type": ["integer", "null"], "description": "The training rounds that mean and std are over."},
        "data": {"type": ["string", "null"], "description": "The digits it was trained and tested on."},
        "input": {
            "type": "object",
            "description": f"The graph's input: pairs of digits, each a {MNIST_STYLE}, 2×2 average-pooled to "
            "14×14 or (a model of full resolution) as it is.",
        },
        "outputs": {"type": "object"},
        "labels": {"type": "string"},
        "digitcmp_version": {"type": ["string", "null"]},
        "opset": {"type": ["integer", "null"]},
        "server_version": {"type": "string"},
    },
    "additionalProperties": False,
}

HEALTH = {
    "type": "object",
    "required": ["status", "version"],
    "properties": {"status": {"const": "ok"}, "version": {"type": "string"}},
    "additionalProperties": False,
}


def json_content(schema: str, description: str) -> dict:
    reference = {"$ref": f"#/components/schemas/{schema}"}
    return {"description": description, "content": {"application/json": {"schema": reference}}}


def error_response(description: str) -> dict:
    return json_content("Error", description)


@cache
def openapi_document() -> dict:
    """The API's description: paths, request fields, response and error bodies."""
    image = {"type": "string", "contentMediaType": "application/octet-stream", "description": "An image file."}
    compare = {
        "summary": "Is the first digit ≤ the second?",
        "description": "Send two pictures of one digit each ('first' and 'second'), or one picture holding both "
        "digits ('sheet'), as multipart/form-data; at most 10,000,000 bytes an image. The answer is the object "
        "'digitcmp predict --json' prints. A picture that holds no digit, or several, is a 400 naming its field.",
        "parameters": [{
            "name": "include", "in": "query", "required": False,
            "schema": {"enum": ["digits"]}, "description": "'digits' adds the digits the model saw (PNG data URLs).",
        }],
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": {
                "type": "object",
                "properties": {
                    "first": {**image, "description": "The picture of the first digit."},
                    "second": {**image, "description": "The picture of the second digit."},
                    "sheet": {**image, "description": "One picture holding both digits, side by side or stacked."},
                },
                "oneOf": [{"required": ["first", "second"]}, {"required": ["sheet"]}],
            }}},
        },
        "responses": {
            "200": json_content("Comparison", "The comparison and both digits."),
            "400": error_response("A field missing, empty, damaged or not an image; no digit, or several, in it."),
            "408": error_response("The request's body did not arrive in time."),
            "413": error_response("An image over the byte or pixel limit, or a request over the size limit."),
            "415": error_response("The body is not multipart/form-data."),
            "500": error_response("The server failed on this request; it goes on serving."),
        },
    }  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "digitcmp",
            "version": __version__,
            "description": "Is the first handwritten digit ≤ the second? The API of 'digitcmp serve'. It has no "
            "authentication: keep it on 127.0.0.1, or behind a proxy that authenticates.",
        },
        "paths": {
            "/api/compare": {"post": {**compare, "operationId": "compare"}},
            "/api/model": {
                "get": {
                    "operationId": "model",
                    "summary": "The model the server answers with.",
                    "responses": {"200": json_content("Model", "The model's variant, accuracy and input contract.")},
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "summary": "Whether the server is up, and its version.",
                    "responses": {"200": json_content("Health", "The server is up.")},
                }
            },
        },
        "components": {
            "schemas": {"Comparison": COMPARISON, "Read": READ, "Error": ERROR, "Model": MODEL, "Health": HEALTH}
        },
    }
