"""The ONNX contract: what an exported model takes and returns, and where its metadata lives.

``export`` writes models to this contract and ``predict`` refuses models that break it; both read it from here
(no torch, no onnxruntime: it is plain data).
"""

from __future__ import annotations

from .preprocess import INPUT_SIZE

METADATA_KEY = "digitcmp"  # metadata_props key of the JSON document export writes and predict requires
METADATA_FORMAT = "digitcmp-onnx/1"
INPUT_NAME = "pairs"
INPUT_SHAPE = ("batch", 2, INPUT_SIZE, INPUT_SIZE)
OUTPUT_NAMES = ("le_probability", "digit_probabilities")
# An optional boolean input (an initializer, true unless fed) of models with test-time views: false reads each pair
# in its first view alone, a fraction of the cost, for predict's early exit (digitcmp.predict.Model.run).
VIEWS_INPUT = "all_views"
INPUT_CONTRACT = {
    "name": INPUT_NAME,
    "shape": list(INPUT_SHAPE),
    "dtype": "float32",
    "range": [0.0, 1.0],
    "polarity": "white digit on black background",
    "preprocessing": "28×28 MNIST-style digit (fitted in a 20×20 box, centred by mass), 2×2 average-pooled to 14×14",
    "normalisation": "inside the graph",
}
OUTPUTS = {"le_probability": "P(first digit ≤ second digit)", "digit_probabilities": "softmax over 0-9, per digit"}
LABELS = "le_probability > 0.5 means the first digit is ≤ the second"


def describe_violation(input_shapes: list[list], output_names: list[str]) -> str | None:
    """What keeps a graph with these inputs and outputs from being a digitcmp model, or None if nothing does.

    The batch axis may be named or fixed; the rest of the input shape and the output names must match."""
    if len(input_shapes) != 1 or list(input_shapes[0][1:]) != list(INPUT_SHAPE[1:]):
        return f"it does not take {INPUT_NAME} N×2×{INPUT_SIZE}×{INPUT_SIZE}"
    if list(output_names) != list(OUTPUT_NAMES):
        return f"it does not return {', '.join(OUTPUT_NAMES)}"
    return None
