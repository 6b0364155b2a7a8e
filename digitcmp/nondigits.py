"""Generated pictures that are not digits: letters, symbols, shapes, faces and scribbles, framed as MNIST digits.

Training shows them to the digit head with a target of "no digit more than another" (a uniform distribution,
outlier exposure), so that at predict time a letter or a smiley spreads its probability over the digits instead of
naming one with confidence, and ``digitcmp.predict`` refuses it. Letters and symbols that are written like a digit
(O, I, l, S, Z, B, G, g, q, /, |, ...) are left out: teaching the head to doubt them would teach it to doubt the digit
they resemble. numpy and Pillow only: predict's tests and benchmarks draw them without torch.
"""

from __future__ import annotations

import math

import numpy as np

from .preprocess import mnist_digit

# Characters that look like no digit in common handwriting: left out are those written like one (0: O o Q D C c;
# 1: I i l j J | / ( ); 2: Z z ?; 5: S s $; 6: b G; 8: B &; 9: g q; 4: y; 7: T).
LETTERS = "AEFHKMNPRUVWXYaefhkmnrtuvwx"
SYMBOLS = "#@%*+=~<>^"
# The same kind of characters as a hand writes them: strokes (polylines in a unit box, y down) drawn with a wobble.
STROKES: dict[str, tuple[tuple[tuple[float, float], ...], ...]] = {
    "A": (((0, 1), (0.5, 0), (1, 1)), ((0.25, 0.6), (0.75, 0.6))),
    "E": (((1, 0), (0, 0), (0, 1), (1, 1)), ((0, 0.5), (0.7, 0.5))),
    "F": (((1, 0), (0, 0), (0, 1)), ((0, 0.5), (0.7, 0.5))),
    "H": (((0, 0), (0, 1)), ((1, 0), (1, 1)), ((0, 0.5), (1, 0.5))),
    "K": (((0, 0), (0, 1)), ((1, 0), (0, 0.55), (1, 1))),
    "M": (((0, 1), (0, 0), (0.5, 0.6), (1, 0), (1, 1)),),
    "N": (((0, 1), (0, 0), (1, 1), (1, 0)),),
    "P": (((0, 1), (0, 0), (0.7, 0), (0.95, 0.15), (0.95, 0.35), (0.7, 0.5), (0, 0.5)),),
    "R": (((0, 1), (0, 0), (0.7, 0), (0.95, 0.15), (0.95, 0.35), (0.7, 0.5), (0, 0.5)), ((0.4, 0.5), (1, 1))),
    "V": (((0, 0), (0.5, 1), (1, 0)),),
    "W": (((0, 0), (0.25, 1), (0.5, 0.4), (0.75, 1), (1, 0)),),
    "X": (((0, 0), (1, 1)), ((1, 0), (0, 1))),
    "Y": (((0, 0), (0.5, 0.5), (1, 0)), ((0.5, 0.5), (0.5, 1))),
    "h": (((0, 0), (0, 1)), ((0, 0.6), (0.3, 0.42), (0.7, 0.42), (1, 0.6), (1, 1))),
    "m": (
        ((0, 0.35), (0, 1)),
        ((0, 0.5), (0.25, 0.35), (0.5, 0.5), (0.5, 1)),
        ((0.5, 0.5), (0.75, 0.35), (1, 0.5), (1, 1)),
    ),
    "n": (((0, 0.35), (0, 1)), ((0, 0.5), (0.4, 0.35), (0.9, 0.45), (1, 1))),
    "r": (((0, 0.35), (0, 1)), ((0, 0.6), (0.4, 0.38), (0.9, 0.4))),
    "k": (((0, 0), (0, 1)), ((0.9, 0.35), (0, 0.7), (0.9, 1))),
    "#": (((0.35, 0), (0.25, 1)), ((0.75, 0), (0.65, 1)), ((0, 0.35), (1, 0.35)), ((0, 0.65), (1, 0.65))),
    "Σ": (((1, 0), (0, 0), (0.5, 0.5), (0, 1), (1, 1)),),
    "π": (((0, 0.25), (1, 0.2)), ((0.3, 0.22), (0.25, 1)), ((0.7, 0.21), (0.8, 1))),
    "λ": (((0.1, 0), (1, 1)), ((0.5, 0.45), (0, 1))),
    "*": (((0.5, 0), (0.5, 1)), ((0, 0.25), (1, 0.75)), ((1, 0.25), (0, 0.75))),
    "<": (((1, 0), (0, 0.5), (1, 1)),),
    ">": (((0, 0), (1, 0.5), (0, 1)),),
}
SHAPES = ("rectangle", "triangle", "star", "cross", "plus", "heart", "arrow", "spiral", "zigzag", "wave", "face",
          "grid", "disk", "scribble")  # fmt: skip
KINDS = ("letter", "symbol", "shape", "stroke")
CANVAS = 64


def nondigits(count: int, seed: int) -> np.ndarray:
    """``count`` non-digit pictures as uint8 count×28×28 MNIST-style images (white on black, 20×20 box, centred by
    mass), the same for the same seed: a quarter each letters and symbols in a font, shapes, and characters drawn
    as strokes."""
    generator = np.random.default_rng(seed)
    return np.stack([mnist_digit(draw(KINDS[i % len(KINDS)], generator)) for i in range(count)])


def draw(kind: str, generator: np.random.Generator) -> np.ndarray:
    """One non-digit of ``kind`` on a CANVAS×CANVAS float canvas in [0, 1], white on black, slightly rotated."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("L", (CANVAS, CANVAS), 0)
    pen = ImageDraw.Draw(image)
    width = int(generator.integers(3, 9))
    if kind == "shape":
        draw_shape(pen, str(generator.choice(SHAPES)), width, generator)
    elif kind == "stroke":
        draw_strokes(pen, STROKES[str(generator.choice(list(STROKES)))], width, generator)
    else:
        text = str(generator.choice(list(LETTERS if kind == "letter" else SYMBOLS)))
        font = ImageFont.load_default(size=int(generator.integers(36, 56)))
        pen.text((CANVAS / 2, CANVAS / 2), text, fill=255, font=font, anchor="mm", stroke_width=width // 3,
                 stroke_fill=255)  # fmt: skip
    angle = float(generator.uniform(-20, 20))
    return np.asarray(image.rotate(angle, resample=Image.Resampling.BILINEAR), dtype=np.float32) / 255.0


def draw_strokes(pen, strokes, width: int, generator: np.random.Generator) -> None:
    """A character's strokes in a box of random proportions, every point moved by a hand's wobble."""
    box_width = CANVAS * generator.uniform(0.35, 0.75)
    left, top, height = (CANVAS - box_width) / 2, 10.0, CANVAS - 20.0
    for stroke in strokes:
        points = [(left + box_width * (x + generator.normal(0, 0.04)), top + height * (y + generator.normal(0, 0.04)))
                  for x, y in stroke]  # fmt: skip
        pen.line(points, fill=255, width=width, joint="curve")


def draw_shape(pen, shape: str, width: int, generator: np.random.Generator) -> None:
    """Draw one shape with stroke ``width`` across most of the canvas, its proportions drawn at random."""
    lo, hi = 8 + generator.uniform(0, 6, 2), CANVAS - 8 - generator.uniform(0, 6, 2)
    (x0, y0), (x1, y1) = lo, hi
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2

    def around(points: int, radius: list[float], turn: float = -math.pi / 2) -> list[tuple[float, float]]:
        angles = [turn + 2 * math.pi * i / points for i in range(points)]
        scales = [radius[i % len(radius)] for i in range(points)]
        return [(cx + rx * r * math.cos(a), cy + ry * r * math.sin(a)) for r, a in zip(scales, angles, strict=True)]

    def line(points: list[tuple[float, float]], closed: bool = False) -> None:
        pen.line(points + points[:1] if closed else points, fill=255, width=width, joint="curve")

    if shape == "rectangle":
        pen.rectangle((x0, y0 + ry / 3, x1, y1 - ry / 3), outline=255, width=width)
    elif shape == "triangle":
        line(around(3, [1.0]), closed=True)
    elif shape == "star":
        line(around(10, [1.0, 0.4]), closed=True)
    elif shape == "cross":
        line([(x0, y0), (x1, y1)])
        line([(x0, y1), (x1, y0)])
    elif shape == "plus":
        line([(cx, y0), (cx, y1)])
        line([(x0, cy), (x1, cy)])
    elif shape == "heart":
        t = np.linspace(0, 2 * math.pi, 40)
        xs, ys = 16 * np.sin(t) ** 3, -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        line([(cx + rx * x / 17, cy + ry * y / 17) for x, y in zip(xs, ys, strict=True)], closed=True)
    elif shape == "arrow":
        line([(x0, cy), (x1, cy)])
        line([(x1 - rx / 2, y0 + ry / 2), (x1, cy), (x1 - rx / 2, y1 - ry / 2)])
    elif shape == "spiral":
        t = np.linspace(0, 5 * math.pi, 80)
        line([(cx + rx * (a / t[-1]) * math.cos(a), cy + ry * (a / t[-1]) * math.sin(a)) for a in t])
    elif shape == "zigzag":
        line([(x0 + 2 * rx * i / 6, y0 if i % 2 else y1) for i in range(7)])
    elif shape == "wave":
        line([(x0 + 2 * rx * i / 40, cy + ry / 2 * math.sin(i / 40 * 4 * math.pi)) for i in range(41)])
    elif shape == "face":
        pen.ellipse((x0, y0, x1, y1), outline=255, width=width)
        for side in (-1, 1):
            pen.ellipse(
                (cx + side * rx / 2.5 - 3, cy - ry / 3 - 3, cx + side * rx / 2.5 + 3, cy - ry / 3 + 3), fill=255
            )
        pen.arc((cx - rx / 2, cy - ry / 4, cx + rx / 2, cy + ry / 2), 20, 160, fill=255, width=max(2, width // 2))
    elif shape == "grid":
        for f in (1 / 3, 2 / 3):
            line([(x0 + 2 * rx * f, y0), (x0 + 2 * rx * f, y1)])
            line([(x0, y0 + 2 * ry * f), (x1, y0 + 2 * ry * f)])
    elif shape == "disk":
        pen.ellipse((cx - rx / 2, cy - ry / 2, cx + rx / 2, cy + ry / 2), fill=255)
    else:  # scribble: a tangle of many strokes, never one digit-like curve
        points = generator.uniform(lo, hi, (int(generator.integers(12, 20)), 2))
        line([tuple(p) for p in points])
