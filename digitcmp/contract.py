"""The ONNX contract: what an exported model takes and returns, and where its metadata lives.

``export`` writes models to this contract and ``predict`` refuses models that break it; both read it from here
(no torch, no onnxruntime: it is plain data).
"""

from __future__ import annotations

from .preprocess import INPUT_SIZE
from .variant import Resolution

METADATA_KEY = "digitcmp"  # metadata_props key of the JSON document export writes and predict requires
METADATA_FORMAT = "digitcmp-onnx/1"
INPUT_NAME = "pairs"
BATCH_AXIS = "batch"
# The sides of the digits a model may read (``Resolution``): the graph's input shape says which; the metadata's
# "input" describes it.
INPUT_SIZES = tuple(resolution.size for resolution in Resolution)
OUTPUT_NAMES = ("le_probability", "digit_probabilities")
# An optional boolean input (an initializer, true unless fed) of models with test-time views: false reads each pair
# in its first view alone, a fraction of the cost, for predict's early exit (digitcmp.predict.Model.run).
VIEWS_INPUT = "all_views"
POLARITY = "white digit on black background"
MNIST_STYLE = "28×28 MNIST-style digit (fitted in a 20×20 box, centred by mass)"
OUTPUTS = {"le_probability": "P(first digit ≤ second digit)", "digit_probabilities": "softmax over 0-9, per digit"}
LABELS = "le_probability > 0.5 means the first digit is ≤ the second"


def input_shape(size: int) -> tuple[str, int, int, int]:
    return (BATCH_AXIS, 2, size, size)


def input_contract(size: int) -> dict:
    """What a model of this input side takes, as its metadata and ``/api/model`` describe it."""
    return {
        "name": INPUT_NAME,
        "shape": list(input_shape(size)),
        "dtype": "float32",
        "range": [0.0, 1.0],
        "polarity": POLARITY,
        "preprocessing": MNIST_STYLE + (", 2×2 average-pooled to 14×14" if size == INPUT_SIZE else ""),
        "normalisation": "inside the graph",
    }


def describe_violation(input_shapes: list[list], output_names: list[str]) -> str | None:
    """What keeps a graph with these inputs and outputs from being a digitcmp model, or None if nothing does.

    The batch axis may be named or fixed; the rest of the input shape and the output names must match."""
    if len(input_shapes) != 1 or list(input_shapes[0][1:]) not in [list(input_shape(s)[1:]) for s in INPUT_SIZES]:
        return f"it does not take {INPUT_NAME} " + " or ".join(f"N×2×{size}×{size}" for size in INPUT_SIZES)
    if list(output_names) != list(OUTPUT_NAMES):
        return f"it does not return {', '.join(OUTPUT_NAMES)}"
    return None
