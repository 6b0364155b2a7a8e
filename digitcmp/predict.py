"""Compare the digits in two image files with an exported ONNX model: onnxruntime, numpy and Pillow only.

This module must not import torch (``tests/test_predict.py`` checks it), so that ``digitcmp predict`` starts fast
and runs where torch is not installed.
"""

from __future__ import annotations

import csv
import importlib.resources
import io
import json
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .contract import METADATA_KEY, VIEWS_INPUT, describe_violation
from .errors import DigitcmpError, TooLarge
from .files import atomic_write
from .ink import WORK_SIDE, Ink, NoDigit, SeveralDigits
from .preprocess import (
    INPUT_SIZE,
    MAX_FILE_BYTES,
    MAX_PIXELS,
    model_digits,
    picture_digit,
    picture_pair,
    pool_digits,
    prepared_array,
)
from .schema import problems

BATCH = 256
# Pairs per call that reads every test-time view: 37 views of a full-resolution ensemble take about 1 GB of memory
# for 32 pairs, and larger calls are no faster on a CPU (docs/performance.md).
VIEWS_BATCH = 32


def shipped_model() -> Path:
    """The model that ships with digitcmp: ``models/digitcmp.onnx`` (models/README.md is its card).

    A wheel installs models/ as the package ``digitcmp.shipped``; an editable install or a source checkout reads
    the folder itself.
    """
    try:
        return Path(str(importlib.resources.files("digitcmp.shipped") / "digitcmp.onnx"))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[1] / "models" / "digitcmp.onnx"


@dataclass
class Digit:
    """One input prepared for the model: what it came from, the 28×28 digit the model sees, and its pooling."""

    source: str  # the file's path (or an upload's name)
    image: np.ndarray  # uint8 28×28, white on black: the MNIST-style digit (saved by --save-digits)
    pooled: np.ndarray  # float32 14×14 in [0, 1]: what a pooled model reads (``pixels``)
    picture: dict | None = None  # for a picture: how its ink was isolated (for --json, and for finding out why)
    place: str | None = None  # where it stood in a picture holding both digits: left, right, top or bottom

    def pixels(self, size: int) -> np.ndarray:
        """The digit as a model of that input side reads it: the pooled 14×14, or the 28×28 digit in [0, 1]."""
        return self.pooled if size == INPUT_SIZE else model_digits(self.image[None], size)[0]


def read_file(path: Path) -> bytes:
    """A picture file's bytes, refusing what cannot be one: a missing path, a folder, an empty or oversized file."""
    path = Path(path)
    if not path.exists():
        raise DigitcmpError(f"{path} does not exist; pass the path of an image or .npy file")
    if path.is_dir():
        raise DigitcmpError(f"{path} is a directory; pass an image file")
    size = path.stat().st_size
    if size == 0:
        raise DigitcmpError(f"{path} is empty; pass an image file")
    if size > MAX_FILE_BYTES:
        raise TooLarge(f"{path} is {size:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit for a digit image")
    return path.read_bytes()


def load_digit(path: Path) -> Digit:
    """One file (an image, or a .npy digit) → the digit the model sees, exactly as training digits are prepared."""
    data = read_file(path)
    if Path(path).suffix.lower() == ".npy":
        try:
            image, pooled = prepared_array(np.load(io.BytesIO(data), allow_pickle=False), str(path))
        except (ValueError, OSError, EOFError) as exc:
            raise DigitcmpError(f"{path} is not a usable .npy digit: {str(exc).splitlines()[0]}") from None
        return Digit(str(path), image, pooled)
    return digit_from_bytes(data, str(path))


def load_pair(path: Path) -> tuple[Digit, Digit]:
    """One picture holding both digits of a pair → the two digits the model sees, in reading order."""
    if Path(path).suffix.lower() == ".npy":
        raise DigitcmpError(f"{path}: a .npy file holds one digit; give two files, or one picture with both digits")
    return pair_from_bytes(read_file(path), str(path))


def digit_from_bytes(data: bytes, name: str) -> Digit:
    """Image file contents → the digit the model sees; ``name`` is what errors and results call it."""
    try:
        image, ink = picture_digit(decode_image(data, name))
    except NoDigit:
        raise DigitcmpError(f"no digit found in {name}; photograph or scan one digit on plain paper") from None
    except SeveralDigits as exc:
        raise DigitcmpError(
            f"{name} holds {exc.count} digits; crop it to one, or give it alone to compare the two digits in it"
        ) from None
    return Digit(name, image, pool_digits(image[None])[0], how_found(ink))


def pair_from_bytes(data: bytes, name: str) -> tuple[Digit, Digit]:
    """Contents of one picture holding both digits → the two digits the model sees, in reading order."""
    try:
        found = picture_pair(decode_image(data, name))
    except NoDigit:
        raise DigitcmpError(f"no digit found in {name}; photograph or scan the two digits on plain paper") from None
    except SeveralDigits as exc:
        raise DigitcmpError(
            f"{name} holds {exc.count} digit{'s' * (exc.count != 1)}, not 2; write the two digits side by side or one "
            "above the other, apart, or give two image files"
        ) from None
    first, second = (
        Digit(name, image, pool_digits(image[None])[0], how_found(ink), place) for place, image, ink in found
    )
    return first, second


def how_found(ink: Ink) -> dict:
    """How a picture's digit was isolated (for --json and the API: to find out why a picture reads wrong)."""
    return {"even_background": ink.clean, "stroke_scale": round(ink.stroke_scale, 3), "parts_dropped": ink.dropped}


def decode_image(data: bytes, name: str):
    """Decode image bytes safely: the pixel count is checked before decoding, large JPEGs are decoded at a reduced
    scale (a 12-megapixel photo at an eighth of its pixels, in a fraction of the time), and the camera's EXIF
    orientation is applied."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with warnings.catch_warnings():  # Pillow warns about large images; they are refused below, in one line
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise TooLarge(f"{name} is {width}×{height} pixels, over the {MAX_PIXELS:,}-pixel limit")
            if image.format == "JPEG":
                image.draft("RGB", (2 * WORK_SIDE, 2 * WORK_SIDE))
            image.load()
            return ImageOps.exif_transpose(image)
    except UnidentifiedImageError:
        raise DigitcmpError(f"{name} is not an image Pillow can read (PNG, JPEG, BMP, GIF, TIFF, WebP, .npy)") from None
    except Image.DecompressionBombError:
        raise TooLarge(f"{name} would decode to more than {MAX_PIXELS:,} pixels; refusing it") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DigitcmpError(f"{name} is damaged or truncated ({str(exc).splitlines()[0]})") from None


# A pair whose first view alone reads both digits and the comparison at this probability or above is answered from
# that view (early exit); the others from every test-time view (docs/predict.md gives the accuracy of either rule).
EARLY_EXIT = 0.999


@dataclass
class Model:
    """An onnxruntime session with the metadata digitcmp wrote into the file."""

    path: Path
    session: object
    input_name: str
    metadata: dict
    size: int = INPUT_SIZE  # the side of the digits the graph reads: 14 (pooled) or 28 (full resolution)
    first_view: bool = False  # whether the graph can read a pair in its first view alone (contract.VIEWS_INPUT)
    all_views: bool = False  # read every pair in every view, never exiting early (to measure the rule)

    def run(self, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Comparison and digit probabilities of pairs N×2×S×S: the first view alone where it is sure
        (``EARLY_EXIT``), every view for the rest, at a fraction of the cost of every view for all."""
        pairs = pairs.astype(np.float32, copy=False)
        if not self.first_view or self.all_views:
            return self.every_view(pairs)
        le, digits = self.session.run(None, {self.input_name: pairs, VIEWS_INPUT: np.array(False)})
        unsure = ~((digits.max(-1) >= EARLY_EXIT).all(-1) & (np.maximum(le, 1 - le) >= EARLY_EXIT))
        if unsure.any():
            le[unsure], digits[unsure] = self.every_view(pairs[unsure])
        return le, digits

    def every_view(self, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The graph's full reading, VIEWS_BATCH pairs at a time, so its memory stays bounded for any batch."""
        parts = [
            self.session.run(None, {self.input_name: pairs[i : i + VIEWS_BATCH]})
            for i in range(0, len(pairs), VIEWS_BATCH)
        ]
        return np.concatenate([part[0] for part in parts]), np.concatenate([part[1] for part in parts])

    @property
    def refuses_nondigits(self) -> bool:
        """Whether the model learned to spread its probability over the digits for a picture that is no digit
        (``--nondigits`` in training), so that a low ``digit_mass`` means 'not a digit'."""
        return bool((self.metadata.get("train_config") or {}).get("nondigits"))


def load_model(path: Path | None = None, threads: int | None = None) -> Model:
    """Open an exported model, refusing files that are missing, damaged, or not digitcmp's contract. ``threads``:
    onnxruntime's threads for one call (its default, one per core, without)."""
    import onnxruntime as ort

    path = Path(path) if path is not None else shipped_model()
    if not path.is_file():
        raise DigitcmpError(f"model {path} does not exist; export one with 'digitcmp export' or drop --model")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
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
    broken = problems(metadata, "onnx-metadata")
    if broken:
        raise DigitcmpError(
            f"model {path} has digitcmp metadata that breaks its contract ({broken[0]}); export it again"
        )
    switches = {i.name for i in session.get_overridable_initializers()}
    size = inputs[0].shape[-1]
    return Model(path, session, inputs[0].name, metadata, size, first_view=VIEWS_INPUT in switches)


# A digit read below this probability, or a comparison answered below it, is reported as unsure (with the
# runner-up digit) rather than stated as fact (docs/predict.md gives the measured accuracy on either side).
SURE = 0.8
# A picture whose two likeliest digits hold less than this share of the probability is refused as no digit (by a
# model trained with --nondigits): such a model spreads its probability over all ten for letters, symbols, shapes
# and faces, while a real digit, even one between two readings, keeps it on one or two (docs/predict.md gives
# the measured refusals of either kind).
DIGIT_MASS = 0.5


def digit_mass(probabilities: np.ndarray) -> np.ndarray:
    """The share of probability on the two likeliest digits (…×10 → …)."""
    return np.sort(probabilities, axis=-1)[..., -2:].sum(-1)


@dataclass
class Prediction:
    """One pair's answer: the comparison and both digits' distributions."""

    first: Digit
    second: Digit
    le_probability: float
    digit_probabilities: np.ndarray  # 2×10
    refuses_nondigits: bool = False  # the model's (Model.refuses_nondigits)

    @property
    def digits(self) -> tuple[int, int]:
        return int(self.digit_probabilities[0].argmax()), int(self.digit_probabilities[1].argmax())

    @property
    def first_le_second(self) -> bool:
        return self.le_probability > 0.5

    @property
    def probability(self) -> float:
        """The probability of the answer given (≤ or >)."""
        return self.le_probability if self.first_le_second else 1.0 - self.le_probability

    @property
    def consistent(self) -> bool:
        """Whether the comparison head agrees with the comparison of the two predicted digits."""
        a, b = self.digits
        return (a <= b) == self.first_le_second

    def read(self, which: int) -> dict:
        """One digit's read: the digit, its probability, the runner-up, whether it is unsure and, for a picture,
        how its ink was isolated."""
        digit, p = (self.first, self.second)[which], self.digit_probabilities[which]
        best, runner_up = (int(i) for i in np.argsort(p)[::-1][:2])
        read = {
            "path": digit.source,
            "digit": best,
            "probability": round(float(p[best]), 6),
            "runner_up": runner_up,
            "runner_up_probability": round(float(p[runner_up]), 6),
            "unsure": bool(p[best] < SURE),
        }
        if digit.place:
            read["place"] = digit.place
        return {**read, "picture": digit.picture} if digit.picture else read

    def is_digit(self, which: int) -> bool:
        """Whether the picture reads as a digit: always, unless the model learned to tell (``DIGIT_MASS``)."""
        return not self.refuses_nondigits or bool(digit_mass(self.digit_probabilities[which]) >= DIGIT_MASS)

    @property
    def nondigit(self) -> Digit | None:
        """The first of the pair's pictures that does not read as a digit, if any."""
        return next((d for which, d in enumerate((self.first, self.second)) if not self.is_digit(which)), None)

    @property
    def unsure(self) -> bool:
        return self.probability < SURE or any(self.read(which)["unsure"] for which in (0, 1))

    def to_dict(self) -> dict:
        return {
            "first": self.read(0),
            "second": self.read(1),
            "first_le_second": self.first_le_second,
            "probability": round(float(self.probability), 6),
            "consistent": self.consistent,
            "unsure": self.unsure,
        }


def run_pairs(model: Model, pairs: list[tuple[Digit, Digit]]) -> list[Prediction]:
    """Run prepared pairs through the model in batches."""
    return [answer for start in range(0, len(pairs), BATCH) for answer in run_batch(model, pairs[start:][:BATCH])]


def run_batch(model: Model, pairs: list[tuple[Digit, Digit]]) -> list[Prediction]:
    """One model call for every pair given (the server's batches too)."""
    le, digits = model.run(np.stack([np.stack([a.pixels(model.size), b.pixels(model.size)]) for a, b in pairs]))
    refuses = model.refuses_nondigits
    return [Prediction(a, b, float(p), d, refuses) for (a, b), p, d in zip(pairs, le, digits, strict=True)]


def refused(prediction: Prediction, files: tuple[Path, ...], keep_going: bool) -> Prediction | Failed:
    """The prediction, or where one of its pictures is no digit (``Prediction.nondigit``) the refusal: an error
    that stops all, or with ``keep_going`` the pair's ``Failed`` row."""
    if prediction.nondigit is None:
        return prediction
    message = f"no digit in {prediction.nondigit.source}: it does not look like a handwritten digit"
    if not keep_going:
        raise DigitcmpError(message)
    return Failed(tuple(Path(f) for f in files), message)


@dataclass
class Failed:
    """A pair of a batch that could not be read (a damaged, empty or digit-less picture): its files and why."""

    files: tuple[Path, ...]  # the two files, or the one picture meant to hold both digits
    error: str

    def to_dict(self) -> dict:
        first, second = (self.files * 2)[:2]
        return {"first": {"path": str(first)}, "second": {"path": str(second)}, "error": self.error}


def read_pair(files: tuple[Path, ...], keep_going: bool, pool: Executor | None = None) -> tuple[Digit, Digit] | Failed:
    """Two files' digits (both at once in ``pool``, if given; a failure names the first file that fails), or one
    picture's two digits."""
    try:
        if len(files) == 1:
            return load_pair(files[0])
        first, second = (pool.map if pool is not None else map)(load_digit, files)
        return first, second
    except DigitcmpError as exc:
        if not keep_going:
            raise
        return Failed(tuple(Path(f) for f in files), str(exc))


def predict_pairs(
    model: Model | Future[Model], pairs: list[tuple[Path, ...]], keep_going: bool = False
) -> Iterator[Prediction | Failed]:
    """Prepare and run pairs (two files, or one picture holding both digits) in batches through the one loaded
    model, in order. ``model`` may still be loading (a Future): it is waited for once the first pictures are read.
    A lone pair's two pictures are read at once: for camera photos, decoding and finding the ink take most of a
    process's time, in calls that let the other thread run; a batch's pictures are read one after another, as
    small pictures read slower in threads of one process (docs/performance.md). ``keep_going`` (a batch): a pair
    whose picture cannot be read becomes a ``Failed`` row and the others are still answered; else it stops all."""
    with ThreadPoolExecutor(2) if len(pairs) == 1 else nullcontext() as pool:
        for start in range(0, len(pairs), BATCH):
            chunk = pairs[start : start + BATCH]
            read = [read_pair(files, keep_going, pool) for files in chunk]
            loaded = model.result() if isinstance(model, Future) else model
            answers = iter(run_pairs(loaded, [pair for pair in read if not isinstance(pair, Failed)]))
            for files, pair in zip(chunk, read, strict=True):
                yield pair if isinstance(pair, Failed) else refused(next(answers), files, keep_going)


def save_digits(predictions: list[Prediction], folder: Path) -> list[Path]:
    """Write the 28×28 digit the model saw for every input as a PNG: ``first-NAME.png`` and ``second-NAME.png``,
    numbered by pair when there are several."""
    from PIL import Image

    written = []
    for number, prediction in enumerate(predictions, start=1):
        prefix = f"{number:04d}-" if len(predictions) > 1 else ""
        for side, digit in (("first", prediction.first), ("second", prediction.second)):
            path = Path(folder) / f"{prefix}{side}-{Path(digit.source).stem}.png"
            written.append(atomic_write(path, lambda tmp, d=digit: Image.fromarray(d.image).save(tmp, format="PNG")))
    return written


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


def pairs_to_read(images: list[Path] | None, csv: Path | None) -> list[tuple[Path, ...]]:
    """What predict was asked to read: two image files, one picture holding both digits, or a CSV's pairs."""
    if csv is None and len(images or []) not in (1, 2):
        raise DigitcmpError("predict needs two image files, one picture with both digits, or --pairs CSV")
    if csv is not None and images:
        raise DigitcmpError("give either image files or --pairs CSV, not both")
    return read_pairs_csv(csv) if csv is not None else [tuple(images)]


def timed(
    model: Path | None, pairs: list[tuple[Path, ...]], keep_going: bool = False
) -> tuple[list[Prediction | Failed], float]:
    """Every pair's prediction (or failure, with ``keep_going``) with the model in ``model`` (the shipped one for
    None), and the seconds they took (the throughput line). The model loads in a thread while the first pictures
    are read."""
    started = time.perf_counter()
    with ThreadPoolExecutor(1) as loader:
        results = list(predict_pairs(loader.submit(load_model, model), pairs, keep_going))
    return results, time.perf_counter() - started
