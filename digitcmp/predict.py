"""Compare the digits in two image files with an exported ONNX model: onnxruntime, numpy and Pillow only.

This module must not import torch (``tests/test_predict.py`` checks it), so that ``digitcmp predict`` starts fast
and runs where torch is not installed.
"""

from __future__ import annotations

import csv
import importlib.resources
import json
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .contract import METADATA_KEY, describe_violation
from .errors import DigitcmpError
from .preprocess import MAX_FILE_BYTES, MAX_PIXELS, image_to_gray, mnist_digit, pool_digits, prepared_array

BATCH = 256


def shipped_model() -> Path:
    """The model that ships with digitcmp: ``models/digitcmp.onnx`` (models/README.md is its card).

    A wheel installs models/ as the package ``digitcmp.shipped``; an editable install or a source checkout reads
    the folder itself.
    """
    try:
        return Path(str(importlib.resources.files("digitcmp.shipped") / "digitcmp.onnx"))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[1] / "models" / "digitcmp.onnx"


def load_digit(path: Path) -> np.ndarray:
    """One file → a pooled 14×14 digit in [0, 1], white on black, exactly as training digits are prepared."""
    path = Path(path)
    if not path.exists():
        raise DigitcmpError(f"{path} does not exist; pass the path of an image or .npy file")
    if path.is_dir():
        raise DigitcmpError(f"{path} is a directory; pass an image file")
    size = path.stat().st_size
    if size == 0:
        raise DigitcmpError(f"{path} is empty; pass an image file")
    if size > MAX_FILE_BYTES:
        raise DigitcmpError(f"{path} is {size:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit for a digit image")
    if path.suffix.lower() == ".npy":
        try:
            return prepared_array(np.load(path, allow_pickle=False), str(path))
        except (ValueError, OSError, EOFError) as exc:
            raise DigitcmpError(f"{path} is not a usable .npy digit: {str(exc).splitlines()[0]}") from None
    return pool_digits(mnist_digit(read_image(path))[None])[0]


def read_image(path: Path) -> np.ndarray:
    """Decode an image safely (size checked before decoding) into float grayscale, white digit on black."""
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with warnings.catch_warnings():  # Pillow warns about large images; we refuse them ourselves, in one line
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise DigitcmpError(f"{path} is {width}×{height} pixels, over the {MAX_PIXELS:,}-pixel limit")
            image.load()
            return image_to_gray(image)
    except UnidentifiedImageError:
        raise DigitcmpError(f"{path} is not an image Pillow can read (PNG, JPEG, BMP, GIF, TIFF, WebP, .npy)") from None
    except Image.DecompressionBombError:
        raise DigitcmpError(f"{path} would decode to more than {MAX_PIXELS:,} pixels; refusing it") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DigitcmpError(f"{path} is damaged or truncated ({str(exc).splitlines()[0]})") from None


@dataclass
class Model:
    """An onnxruntime session with the metadata digitcmp wrote into the file."""

    path: Path
    session: object
    input_name: str
    metadata: dict

    def run(self, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        le, digits = self.session.run(None, {self.input_name: pairs.astype(np.float32, copy=False)})
        return le, digits


def load_model(path: Path | None = None) -> Model:
    """Open an exported model, refusing files that are missing, damaged, or not digitcmp's contract."""
    import onnxruntime as ort

    path = Path(path) if path is not None else shipped_model()
    if not path.is_file():
        raise DigitcmpError(f"model {path} does not exist; export one with 'digitcmp export' or drop --model")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/InvalidProtobuf types
        raise DigitcmpError(
            f"model {path} cannot be loaded ({type(exc).__name__}); it is damaged or not ONNX"
        ) from None
    raw = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if raw is None:
        raise DigitcmpError(f"model {path} has no digitcmp metadata; export it with 'digitcmp export'")
    try:
        metadata = json.loads(raw)
    except json.JSONDecodeError:
        raise DigitcmpError(f"model {path} has damaged digitcmp metadata; export it again") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    problem = describe_violation([list(i.shape) for i in inputs], [o.name for o in outputs])
    if problem is not None:
        raise DigitcmpError(f"model {path} is not a digitcmp model: {problem}; export one with 'digitcmp export'")
    return Model(path, session, inputs[0].name, metadata)


@dataclass
class Prediction:
    """One pair's answer: the comparison and both digits' distributions."""

    first: Path
    second: Path
    le_probability: float
    digit_probabilities: np.ndarray  # 2×10

    @property
    def digits(self) -> tuple[int, int]:
        return int(self.digit_probabilities[0].argmax()), int(self.digit_probabilities[1].argmax())

    @property
    def first_le_second(self) -> bool:
        return self.le_probability > 0.5

    @property
    def consistent(self) -> bool:
        """Whether the comparison head agrees with the comparison of the two predicted digits."""
        a, b = self.digits
        return (a <= b) == self.first_le_second

    def to_dict(self) -> dict:
        (a, b), p = self.digits, self.digit_probabilities
        return {
            "first": {"path": str(self.first), "digit": a, "probability": round(float(p[0, a]), 6)},
            "second": {"path": str(self.second), "digit": b, "probability": round(float(p[1, b]), 6)},
            "first_le_second": self.first_le_second,
            "probability": round(float(self.le_probability if self.first_le_second else 1 - self.le_probability), 6),
            "consistent": self.consistent,
        }


def predict_pairs(model: Model, pairs: list[tuple[Path, Path]]) -> Iterator[Prediction]:
    """Prepare and run pairs in batches through one session."""
    for start in range(0, len(pairs), BATCH):
        chunk = pairs[start : start + BATCH]
        batch = np.stack([np.stack([load_digit(a), load_digit(b)]) for a, b in chunk])
        le, digits = model.run(batch)
        for (a, b), p, d in zip(chunk, le, digits, strict=True):
            yield Prediction(a, b, float(p), d)


def read_pairs_csv(path: Path) -> list[tuple[Path, Path]]:
    """A CSV with header first,second; relative paths are taken from the CSV's folder."""
    path = Path(path)
    if not path.is_file():
        raise DigitcmpError(f"pairs file {path} does not exist; pass a CSV with header first,second")
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or not {"first", "second"} <= set(reader.fieldnames):
                raise DigitcmpError(f"{path} needs a header line 'first,second' (found {reader.fieldnames})")
            rows = [(row["first"], row["second"]) for row in reader]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DigitcmpError(f"{path} is not a readable CSV ({exc})") from None
    if not rows:
        raise DigitcmpError(f"{path} has no pairs below its header")
    for number, (a, b) in enumerate(rows, start=2):
        if not a or not b:
            raise DigitcmpError(f"{path} line {number} needs two paths")
    return [(path.parent / a, path.parent / b) for a, b in rows]


def timed(model: Model, pairs: list[tuple[Path, Path]]) -> tuple[list[Prediction], float]:
    """Every pair's prediction and the seconds they took (for the throughput line)."""
    started = time.perf_counter()
    results = list(predict_pairs(model, pairs))
    return results, time.perf_counter() - started
