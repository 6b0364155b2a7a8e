"""Generated pictures that are not digits: letters, symbols, shapes, faces and scribbles, framed as MNIST digits.

Training shows them to the digit head with a target of "no digit more than another" (a uniform distribution,
outlier exposure), so that at predict time a letter or a smiley spreads its probability over the digits instead of
naming one with confidence, and ``digitcmp.predict`` refuses it. Letters and symbols that are written like a digit
(O, I, l, S, Z, B, G, g, q, /, |, ...) are left out: teaching the head to doubt them would teach it to doubt the digit
they resemble. Printed characters come in Pillow's own font and, where matplotlib is installed (the train extra),
in the STIX and Computer Modern fonts it ships, upright, bold and italic, squeezed or stretched: a user's letter or
symbol is printed in some font training never saw, and variety is what carries over. numpy and Pillow only:
predict's tests and benchmarks draw them without torch.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np

from .preprocess import mnist_digit

# Characters that look like no digit in common handwriting: left out are those written like one (0: O o Q D C c;
# 1: I i l j J | / ( ); 2: Z z ?; 5: S s $; 6: b G; 8: B &; 9: g q; 4: y; 7: T).
LETTERS = "AEFHKMNPRUVWXYaefhkmnrtuvwx"
SYMBOLS = "#@%*+=~<>^"
# Printed only, in the fonts that have them: Greek letters, currency, typographic and mathematical signs, card suits.
# Left out as written like a digit: Θ θ σ δ ∂ (0, 6), ι τ † (1, 7), ζ ξ ς (2, 3, 5), β (8), γ (8, y), ¢ ° (0).
GLYPHS = "ΓΔΛΞΠΣΦΨΩαεηκλμπφχψω£¥€§¶‡©®™±×÷√∞≈≠≤≥∑∏∇♠♣♥♦★☺"
# matplotlib's fonts that print characters: STIX (Times-like, with the glyphs above) for every kind, Computer Modern
# for letters only (its files place TeX's glyphs at some symbols' code points: < prints as ¡).
STIX = ("STIXGeneral", "STIXGeneralBol", "STIXGeneralItalic", "STIXGeneralBolIta")
COMPUTER_MODERN = ("cmr10", "cmb10", "cmss10", "cmtt10", "cmti10")
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
    mass), the same for the same seed and fonts: a quarter each letters, symbols (and other printed characters),
    shapes, and characters drawn as strokes."""
    generator = np.random.default_rng(seed)
    return np.stack([mnist_digit(draw(KINDS[i % len(KINDS)], generator)) for i in range(count)])


def draw(kind: str, generator: np.random.Generator) -> np.ndarray:
    """One non-digit of ``kind`` on a CANVAS×CANVAS float canvas in [0, 1], white on black, slightly rotated."""
    from PIL import Image, ImageDraw

    image = Image.new("L", (CANVAS, CANVAS), 0)
    pen = ImageDraw.Draw(image)
    width = int(generator.integers(3, 9))
    if kind == "shape":
        draw_shape(pen, str(generator.choice(SHAPES)), width, generator)
    elif kind == "stroke":
        draw_strokes(pen, STROKES[str(generator.choice(list(STROKES)))], width, generator)
    else:
        font, text = printed(kind, generator)
        size = int(generator.integers(36, 56))
        pen.text((CANVAS / 2, CANVAS / 2), text, fill=255, font=face(font, size), anchor="mm", stroke_width=width // 3,
                 stroke_fill=255)  # fmt: skip
        # squeezed or stretched, upright or slanted: the shapes of other fonts' glyphs
        image = image.transform(image.size, Image.Transform.AFFINE, affine(generator), Image.Resampling.BILINEAR)
    angle = float(generator.uniform(-20, 20))
    return np.asarray(image.rotate(angle, resample=Image.Resampling.BILINEAR), dtype=np.float32) / 255.0


def printed(kind: str, generator: np.random.Generator) -> tuple[Path | None, str]:
    """A font (None: Pillow's own) and a character of ``kind`` it prints: a letter, or a symbol or other glyph."""
    fonts = [None, *font_files(STIX + COMPUTER_MODERN if kind == "letter" else STIX)]
    font = fonts[int(generator.integers(len(fonts)))]
    pool = LETTERS if kind == "letter" else SYMBOLS + GLYPHS
    return font, str(generator.choice([c for c in pool if c in prints(font)]))


def affine(generator: np.random.Generator) -> tuple[float, ...]:
    """Pillow's inverse affine coefficients for a horizontal scale of 0.6-1.4 and a slant of up to 0.3, about the
    canvas centre."""
    scale, slant = generator.uniform(0.6, 1.4), generator.uniform(-0.3, 0.3)
    c = CANVAS / 2
    a, b = 1 / scale, -slant / scale
    return (a, b, c - a * c - b * c, 0.0, 1.0, 0.0)


@functools.cache
def font_files(names: tuple[str, ...]) -> tuple[Path, ...]:
    """The files of matplotlib's fonts ``names`` where matplotlib is installed, else none."""
    try:
        import matplotlib
    except ImportError:
        return ()
    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return tuple(path for name in names if (path := folder / f"{name}.ttf").is_file())


@functools.cache
def face(font: Path | None, size: int):
    """The font file (None: Pillow's own font) at ``size`` pixels, loaded once per process."""
    from PIL import ImageFont

    return ImageFont.load_default(size=size) if font is None else ImageFont.truetype(str(font), size)


@functools.cache
def prints(font: Path | None) -> frozenset[str]:
    """The characters of LETTERS, SYMBOLS and GLYPHS that ``font`` draws as a glyph of its own, not as its
    missing-glyph box or as nothing."""
    from PIL import Image, ImageDraw

    def ink(text: str) -> bytes:
        image = Image.new("L", (CANVAS, CANVAS), 0)
        ImageDraw.Draw(image).text((CANVAS / 2, CANVAS / 2), text, fill=255, font=face(font, 40), anchor="mm")
        return image.tobytes()

    missing = ink("\U000f0000")  # a private-use code point no font draws
    return frozenset(c for c in LETTERS + SYMBOLS + GLYPHS if (picture := ink(c)) != missing and any(picture))


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
