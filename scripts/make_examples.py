"""Make the example pictures in docs/examples: a 3 and a 7 from the bundled MNIST sample, written onto photo-like
sheets (benchmarks/photo_like.py), and both on one sheet, so that `digitcmp predict` has something to read before
the user has pictures of their own. The shipped model learned from these digits (they are MNIST training
digits): the pictures demonstrate the command, they measure nothing.

    python scripts/make_examples.py      # rewrites docs/examples/{three,seven,three-and-seven}.jpg
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from digitcmp.data import bundled_digits

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "examples"
PICTURES = {"three": (3, "pen, shaded photo"), "seven": (7, "blue ink on yellow paper")}


def photo_like():
    """benchmarks/photo_like.py as a module (the benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("photo_like", ROOT / "benchmarks" / "photo_like.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def main() -> None:
    sheets = photo_like()
    digits = bundled_digits()
    rng = np.random.default_rng(3)
    OUT.mkdir(parents=True, exist_ok=True)
    pictures = {}
    for name, (label, condition) in PICTURES.items():
        digit = digits.images[np.flatnonzero(digits.labels == label)[0]]
        pictures[name] = sheets.photograph(digit, sheets.CONDITIONS[condition], rng)
        (OUT / f"{name}.jpg").write_bytes(pictures[name])
    both = np.zeros((sheets.SHEET, 2 * sheets.SHEET), np.float32)  # one sheet of paper, the 3 left of the 7
    for place, label in enumerate((3, 7)):
        ink = sheets.strokes(digits.images[np.flatnonzero(digits.labels == label)[1]], "pen", rng)
        ink = ink[: sheets.SHEET, : sheets.SHEET]
        top, left = (sheets.SHEET - ink.shape[0]) // 2, place * sheets.SHEET + (sheets.SHEET - ink.shape[1]) // 2
        both[top : top + ink.shape[0], left : left + ink.shape[1]] = ink
    light = 1.0 - 0.25 * np.linspace(0, 1, both.shape[1])[None, :]  # a little darker towards the right
    paper, pen = np.array([0.93, 0.92, 0.88]), np.array([0.08, 0.08, 0.2])
    rgb = (paper * (1 - both[..., None]) + pen * both[..., None]) * light[..., None]
    Image.fromarray((rgb * 255).astype(np.uint8)).save(OUT / "three-and-seven.jpg", "JPEG", quality=85)
    for path in sorted(OUT.glob("*.jpg")):
        print(path.relative_to(ROOT), f"{path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
