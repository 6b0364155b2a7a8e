"""How much of the model's accuracy survives the trip through paper: MNIST test digits rendered as photo-like
JPEGs (pen, pencil, marker, chalk; shading, grain, blur, coloured and ruled paper, a form's box), read by
`digitcmp predict`'s own preparation, against the same digits given to the model as MNIST's clean 28×28 images.

Real photos of other people's handwriting (benchmarks/realworld.py) mix two things: how well the picture is turned
into an MNIST-like digit, and how the writer's style differs from MNIST's. Here the writing is MNIST's own, so any
loss against the clean digits is the preparation's. Every condition renders the same digits, each with its own
random scale (a digit 110-200 pixels tall on a 256-pixel sheet), offset, rotation (±8°) and paper grain.

    python benchmarks/photo_like.py --data-dir mnist             # 500 MNIST test digits per condition
    python benchmarks/photo_like.py --digits 2000 --json         # without --data-dir: the bundled test pool

Without --data-dir the digits come from the bundled sample, which is part of MNIST's training set: the shipped
model learned from them, so only a --data-dir run measures it on digits it never saw.
"""

from __future__ import annotations

import argparse
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from digitcmp.data import load_source
from digitcmp.environment import machine
from digitcmp.errors import DigitcmpError
from digitcmp.predict import Digit, digit_from_bytes, load_model, run_pairs
from digitcmp.preprocess import pool_digits

SHEET = 256  # pixels a side, as the development photos of benchmarks/realworld.py were saved


@dataclass(frozen=True)
class Condition:
    """How a digit is written and photographed: colours in RGB [0, 1], strength of each effect."""

    pen: str  # "pen" (thin line), "marker" (heavy line) or "mnist" (MNIST's own stroke, scaled up)
    paper: tuple[float, float, float]
    ink: tuple[float, float, float]
    shading: float = 0.0  # how much darker the far corner of the sheet is
    grain: float = 0.0  # paper texture, std of smoothed noise
    blur: float = 0.0  # camera blur, Gaussian sigma in pixels
    ruled: tuple[float, float, float] | None = None  # colour of ruled lines across the sheet, if any
    box: bool = False  # a form's printed box around the digit, in the ink's colour, 0-12 pixels inside the edges


CONDITIONS = {
    "pen on white paper": Condition("pen", (0.93, 0.93, 0.9), (0.1, 0.1, 0.15)),
    "pen, shaded photo": Condition("pen", (0.93, 0.93, 0.9), (0.15, 0.15, 0.35), 0.5, 0.04, 1.0),
    "pencil on grey paper": Condition("pen", (0.7, 0.7, 0.68), (0.35, 0.35, 0.37), 0.3, 0.05, 1.5),
    "marker": Condition("marker", (0.95, 0.95, 0.95), (0.05, 0.05, 0.05), 0.2, 0.03, 1.0),
    "blue ink on yellow paper": Condition("mnist", (0.95, 0.88, 0.45), (0.1, 0.2, 0.75), 0.2, 0.03, 0.8),
    "chalk on a board": Condition("mnist", (0.12, 0.14, 0.12), (0.9, 0.9, 0.85), 0.2, 0.05, 1.0),
    "ruled paper": Condition("pen", (0.95, 0.95, 0.93), (0.1, 0.1, 0.3), 0.2, 0.02, 0.8, (0.55, 0.7, 0.95)),
    "form cell (boxed, scanned)": Condition("mnist", (0.97, 0.97, 0.97), (0.1, 0.1, 0.1), blur=0.7, box=True),
}


def strokes(digit: np.ndarray, pen: str, rng: np.random.Generator) -> np.ndarray:
    """An MNIST digit scaled up to photo size as float ink in [0, 1], with the condition's stroke."""
    scale = rng.uniform(4.0, 7.0)
    ink = np.clip(cv2.resize(digit, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC) / 255.0, 0, 1)
    ink = ink.astype(np.float32)
    if pen != "mnist":
        side = int(rng.integers(3, 7) if pen == "pen" else rng.integers(5, 11))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
        ink = np.clip(cv2.erode(ink, kernel) * 1.5, 0, 1) if pen == "pen" else cv2.dilate(ink, kernel)
    turn = cv2.getRotationMatrix2D((ink.shape[1] / 2, ink.shape[0] / 2), rng.uniform(-8, 8), 1.0)
    return cv2.warpAffine(ink, turn, (ink.shape[1], ink.shape[0]))


def photograph(digit: np.ndarray, condition: Condition, rng: np.random.Generator) -> bytes:
    """The digit written on a sheet under the condition and saved as a JPEG (quality 80), as a phone app would."""
    ink = strokes(digit, condition.pen, rng)[:SHEET, :SHEET]
    sheet = np.zeros((SHEET, SHEET), np.float32)
    height, width = ink.shape
    top = (SHEET - height) // 2 + int(rng.integers(-(SHEET - height) // 4, (SHEET - height) // 4 + 1))
    left = (SHEET - width) // 2 + int(rng.integers(-(SHEET - width) // 4, (SHEET - width) // 4 + 1))
    sheet[top : top + height, left : left + width] = ink
    if condition.box:  # inset 0: the scan was cropped along the box's lines
        inset = int(rng.integers(0, 13))
        cv2.rectangle(sheet, (inset, inset), (SHEET - 1 - inset, SHEET - 1 - inset), 1.0, int(rng.integers(2, 5)))
    across = np.linspace(0, 1, SHEET)[None, :] * np.linspace(0.6, 1, SHEET)[:, None]
    light = 1.0 - condition.shading * (across if rng.random() < 0.5 else across[:, ::-1])
    if condition.grain:
        light = light + cv2.GaussianBlur(rng.normal(0, condition.grain, (SHEET, SHEET)).astype(np.float32), (0, 0), 1.5)
    paper = np.broadcast_to(np.asarray(condition.paper, np.float32) * rng.uniform(0.85, 1.05), (SHEET, SHEET, 3))
    if condition.ruled is not None:
        paper = paper.copy()
        first = int(rng.integers(0, 32))
        paper[first::32] = condition.ruled  # a 2-pixel line every 32 pixels
        paper[first + 1 :: 32] = condition.ruled
    rgb = (paper * (1 - sheet[..., None]) + np.asarray(condition.ink, np.float32) * sheet[..., None]) * light[..., None]
    if condition.blur:
        rgb = cv2.GaussianBlur(rgb, (0, 0), condition.blur)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(rgb * 255, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def read(data: bytes, name: str) -> Digit | None:
    """The digit predict prepares from the picture, or None where predict refuses it (counted as a wrong read)."""
    try:
        return digit_from_bytes(data, name)
    except DigitcmpError:
        return None


def accuracy(model, digits: list[Digit | None], labels: np.ndarray) -> dict[str, float | int]:
    """Digit accuracy, and comparison accuracy on the pairs (i, i+1) of the list; refused pictures (before the
    model, or by it as not a digit) count as wrong."""
    n = len(digits)
    pairs = [(i, (i + 1) % n) for i in range(n) if digits[i] is not None and digits[(i + 1) % n] is not None]
    predictions = run_pairs(model, [(digits[a], digits[b]) for a, b in pairs])
    reads = [p.digits[0] == labels[a] and p.is_digit(0) for (a, _), p in zip(pairs, predictions, strict=True)]
    compared = [p.first_le_second == (labels[a] <= labels[b]) and p.nondigit is None
                for (a, b), p in zip(pairs, predictions, strict=True)]  # fmt: skip
    return {
        "refused": sum(d is None for d in digits),
        "refused_as_not_a_digit": sum(not p.is_digit(0) for p in predictions),
        "digit_accuracy": round(sum(reads) / n, 4),  # every digit is a first digit once, unless refused
        "pair_accuracy": round(sum(compared) / n, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = "the MNIST test set's folder (default: $DIGITCMP_DATA, else the bundled test pool)"
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("DIGITCMP_DATA"), help=where)
    parser.add_argument("--digits", type=int, default=500, help="test digits rendered under every condition")
    parser.add_argument("--model", type=Path, default=None, help="ONNX model (default: the shipped one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    test = load_source(args.data_dir).test
    rng = np.random.default_rng(args.seed)
    chosen = rng.choice(len(test), min(args.digits, len(test)), replace=False)
    images, labels = test.images[chosen], test.labels[chosen].astype(np.int64)
    model = load_model(args.model)
    clean = [Digit("clean", image, pooled) for image, pooled in zip(images, pool_digits(images), strict=True)]
    figures = {"digits": len(chosen), "source": test.origin, "clean": accuracy(model, clean, labels)}
    for name, condition in CONDITIONS.items():
        digits = [read(photograph(image, condition, rng), name) for image in images]
        figures[name] = accuracy(model, digits, labels)
    if args.json:
        print(json.dumps({**figures, "environment": machine()}, indent=2))
        return
    print(f"{figures['digits']} digits of the {figures['source']}")
    print(f"{'condition':26} {'digits':>8} {'pairs':>8} {'refused':>8} {'not digit':>10}")
    for name in ("clean", *CONDITIONS):
        f = figures[name]
        accuracies = f"{100 * f['digit_accuracy']:7.1f}% {100 * f['pair_accuracy']:7.1f}%"
        print(f"{name:26} {accuracies} {f['refused']:>8} {f['refused_as_not_a_digit']:>10}")


if __name__ == "__main__":
    main()
