"""Real MNIST digits of every class, for tests that must tell digits apart.

The bundled test pool is sorted by class (its first 250 digits are all zeros), so digits are taken by label: for
each class, the first ones in the pool that the shipped model reads as that class with a clear margin. The choice
is deterministic and runs the model file directly, not through the comparison code under test.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from digitcmp.data import load_source
from digitcmp.predict import load_model
from digitcmp.preprocess import model_digits

CLEAR = 0.95  # the shipped model's probability of the right class for a digit to be picked
PER_CLASS = 2  # digits picked per class, so that an equal pair holds two different pictures
SCANNED = 8  # digits of each class read to pick from (the model takes about 10 ms a pair on a CPU)
# (first, second) labels: first < second, first = second, first > second. No two pairs share a label, so digits
# that were swapped, mixed up between pairs or taken from another answer show.
PAIRS = ((2, 7), (5, 5), (9, 3))


@dataclass(frozen=True)
class LabelledDigit:
    """One digit of the bundled test pool: its class, its picture (uint8 28×28, white on black) and its index."""

    label: int
    image: np.ndarray
    index: int


@functools.cache
def clear_digits() -> dict[int, tuple[LabelledDigit, ...]]:
    """PER_CLASS digits of every class 0-9 that the shipped model reads right with probability ≥ CLEAR."""
    test = load_source(None).test
    scanned = np.concatenate([np.flatnonzero(test.labels == label)[:SCANNED] for label in range(10)])
    model = load_model()
    seen = model_digits(test.images[scanned], model.size)
    _, probabilities = model.run(np.stack([seen, seen], axis=1))
    read = probabilities[:, 0]
    labels = test.labels[scanned]
    picked = {}
    for label in range(10):
        clear = scanned[(labels == label) & (read.argmax(-1) == label) & (read.max(-1) >= CLEAR)]
        assert len(clear) >= PER_CLASS, f"the shipped model reads fewer than {PER_CLASS} of {SCANNED} {label}s clearly"
        picked[label] = tuple(LabelledDigit(label, test.images[i], int(i)) for i in clear[:PER_CLASS])
    return picked


def digit(label: int, which: int = 0) -> LabelledDigit:
    """The ``which``-th clearly read digit of class ``label``."""
    return clear_digits()[label][which]


def labelled_pair(first: int, second: int) -> tuple[LabelledDigit, LabelledDigit]:
    """Digits of classes ``first`` and ``second``: two different pictures when the classes are equal."""
    return digit(first), digit(second, 1 if first == second else 0)


def png(array: np.ndarray) -> bytes:
    """A PNG file of a uint8 array."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def write_pair(folder: Path, first: LabelledDigit, second: LabelledDigit) -> tuple[Path, Path]:
    """The pair as two image files in ``folder``: the first white on black, the second black on white, as photos
    and scans of paper come."""
    folder.mkdir(parents=True, exist_ok=True)
    a, b = folder / "a.png", folder / "b.png"
    a.write_bytes(png(first.image))
    b.write_bytes(png(255 - second.image))
    return a, b


def sheet(digits: list[LabelledDigit], stacked: bool = False, scale: int = 4) -> np.ndarray:
    """One picture holding ``digits`` in a row (or a column), dark ink on white paper, a digit's width apart and
    drawn ``scale`` times MNIST's size, as a photo of a sheet would hold them (uint8, grey)."""
    side = 28 * scale
    cells = [255 - np.asarray(Image.fromarray(d.image).resize((side, side), Image.BILINEAR)) for d in digits]
    gap = np.full((side, side), 255, np.uint8)
    line = [part for cell in cells for part in (cell, gap)][:-1]
    paper = np.concatenate(line, axis=0 if stacked else 1)
    return np.pad(paper, side // 2, constant_values=255)
