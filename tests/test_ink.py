"""Real pictures: each step of finding a digit, on synthetic photo-like images made here, judged by how well the
prepared 28×28 digit overlaps the one prepared from a clean drawing of the same strokes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from digitcmp.data import load_source
from digitcmp.ink import (
    WORK_SIDE,
    NoDigit,
    block_size,
    components,
    digit_components,
    reduce,
    remove_lines,
    stroke_width,
)
from digitcmp.preprocess import picture_digit

SIZE = 240
SEVEN = [np.array([[70, 62], [172, 62], [112, 190]], np.int32)]  # a 7 as one polyline
FOUR = [np.array([[150, 190], [150, 50], [68, 150], [182, 150]], np.int32)]
CLEAN_STROKE = 16  # about MNIST's stroke width for a digit box of this size


def strokes(shape: list[np.ndarray], thickness: int, size: int = SIZE) -> np.ndarray:
    """The digit's ink as a float mask in [0, 1], anti-aliased."""
    canvas = np.zeros((size, size), np.uint8)
    cv2.polylines(canvas, shape, isClosed=False, color=255, thickness=thickness, lineType=cv2.LINE_AA)
    return canvas.astype(np.float32) / 255


def paper(ink: np.ndarray, paper_rgb=(0.92, 0.92, 0.9), ink_rgb=(0.12, 0.12, 0.18), shading=0.0, texture=0.0,
          seed: int = 0) -> Image.Image:  # fmt: skip
    """Ink on paper as an RGB photo: a brightness gradient across the sheet and grain of the given strength."""
    rng = np.random.default_rng(seed)
    height, width = ink.shape
    light = 1.0 - shading * np.linspace(0, 1, width)[None, :] * np.linspace(0.6, 1, height)[:, None]
    grain = cv2.GaussianBlur(rng.normal(0, texture, (height, width)).astype(np.float32), (0, 0), 1.5) if texture else 0
    base = np.asarray(paper_rgb, np.float32) * (light + grain)[..., None]
    rgb = base * (1 - ink[..., None]) + np.asarray(ink_rgb, np.float32) * light[..., None] * ink[..., None]
    return Image.fromarray(np.clip(rgb * 255, 0, 255).astype(np.uint8))


def width(digit: np.ndarray) -> float:
    """Stroke width of a prepared digit in its own pixels (measured at four times the resolution)."""
    return stroke_width(cv2.resize(digit, (112, 112), interpolation=cv2.INTER_LINEAR) > 127) / 4


def prepared(image: Image.Image) -> np.ndarray:
    return picture_digit(image)[0]


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two prepared digits' ink (pixels above 30% of white)."""
    inked_a, inked_b = a > 76, b > 76
    return (inked_a & inked_b).sum() / max(1, (inked_a | inked_b).sum())


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """The 7 drawn cleanly, white on black, with an MNIST-like stroke."""
    return prepared(Image.fromarray((strokes(SEVEN, CLEAN_STROKE) * 255).astype(np.uint8)))


def test_a_clean_drawing_is_framed_as_mnist(reference):
    rows, cols = np.flatnonzero(reference.max(1) > 0), np.flatnonzero(reference.max(0) > 0)
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 in (20, 21)  # fitted to a 20×20 box
    mass = reference.astype(float) / reference.sum()
    centre = (mass.sum(1) * np.arange(28)).sum(), (mass.sum(0) * np.arange(28)).sum()
    assert np.allclose(centre, (14, 14), atol=0.75)  # centred by mass, as MNIST
    assert reference.max() == 255


def test_shading_and_paper_texture_are_removed(reference):
    photo = paper(strokes(SEVEN, 6), shading=0.45, texture=0.05)
    digit = prepared(photo)
    assert overlap(digit, reference) > 0.6
    assert digit[:, :3].max() < 40 and digit[:, -3:].max() < 40  # no shadow or grain left around the digit


@pytest.mark.parametrize("thickness", [1, 30], ids=["1-px pen", "marker"])
def test_thin_and_thick_strokes_come_out_like_mnist(reference, thickness):
    digit = prepared(paper(strokes(SEVEN, thickness)))
    assert overlap(digit, reference) > 0.55
    assert 0.7 < width(digit) / width(reference) < 1.4


def test_ruled_lines_specks_and_a_neighbours_fragment_are_dropped(reference):
    ink = strokes(SEVEN, 8)
    cv2.line(ink, (0, 120), (SIZE - 1, 120), 0.8, 2)  # a ruled line across the sheet, through the digit
    cv2.line(ink, (0, 215), (SIZE - 1, 215), 0.8, 2)  # and one below it
    cv2.circle(ink, (30, 200), 3, 1.0, -1)  # a speck
    fragment = strokes([np.array([[SIZE - 1, 40], [212, 90], [SIZE - 1, 140]], np.int32)], 8)
    digit = prepared(paper(np.maximum(ink, fragment), texture=0.02))  # a piece of the next digit at the edge
    assert overlap(digit, reference) > 0.55
    lone_line = prepared(paper(strokes(SEVEN, 8)))
    assert overlap(digit, lone_line) > 0.6


@pytest.mark.parametrize(
    ("paper_rgb", "ink_rgb"),
    [
        ((0.95, 0.88, 0.45), (0.1, 0.2, 0.75)),
        ((0.55, 0.75, 0.95), (0.85, 0.1, 0.1)),
        ((0.1, 0.12, 0.1), (0.9, 0.9, 0.85)),
    ],
    ids=["blue on yellow", "red on blue", "chalk on a board"],
)
def test_coloured_paper_and_ink_and_either_polarity(reference, paper_rgb, ink_rgb):
    digit = prepared(paper(strokes(SEVEN, 8), paper_rgb=paper_rgb, ink_rgb=ink_rgb, texture=0.02))
    assert overlap(digit, reference) > 0.6


def test_a_digit_is_told_from_another(reference):
    four = prepared(paper(strokes(FOUR, 8)))
    assert overlap(four, reference) < 0.35  # the overlap measure does separate different digits


@pytest.mark.parametrize("blank", ["white paper", "textured paper", "noise"])
def test_a_picture_without_a_digit_is_refused(blank):
    rng = np.random.default_rng(1)
    image = {
        "white paper": lambda: paper(np.zeros((SIZE, SIZE), np.float32)),
        "textured paper": lambda: paper(np.zeros((SIZE, SIZE), np.float32), shading=0.3, texture=0.06),
        "noise": lambda: Image.fromarray(rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8)),
    }[blank]()
    with pytest.raises(NoDigit):
        prepared(image)


def ruled(ink: np.ndarray, colour: float = 0.8, faded: int = 0) -> np.ndarray:
    """Ink with ruled lines every 40 pixels (clear of the 7's bar), each stopping ``faded`` pixels short of the
    left border."""
    lined = ink.copy()
    for y in range(40, SIZE, 40):
        cv2.line(lined, (faded, y), (SIZE - 1, y), colour, 2)
    return lined


def test_ruled_lines_that_fade_before_the_border_are_dropped(reference):
    digit = prepared(paper(ruled(strokes(SEVEN, 8), faded=40), texture=0.02))
    assert overlap(digit, reference) > 0.6
    assert digit[:, :4].max() < 40 and digit[:, -4:].max() < 40  # no piece of a line beside the digit


def test_ruled_lines_across_a_stroke_go_and_the_stroke_stays_whole():
    one = strokes([np.array([[120, 30], [120, 210]], np.int32)], 8)  # a 1 crossed by the lines at 40, 80, …
    digit = prepared(paper(ruled(one, colour=1.0)))
    assert cv2.connectedComponents((digit > 76).astype(np.uint8))[0] - 1 == 1  # one stroke, no gaps
    columns = np.flatnonzero(digit.max(axis=0) > 76)
    assert columns[-1] - columns[0] < 8  # and no line left across it


def test_a_long_stroke_of_a_tightly_cropped_digit_is_not_taken_for_a_line():
    one = np.zeros((64, 36), bool)
    one[:, 15:19] = True  # a scanned 1 cropped to its stroke: it runs from border to border,
    one[25:40, 14] = one[28:38, 19] = True  # with ragged edges along its middle
    four = np.zeros((64, 64), bool)
    four[:, 44:50] = True  # a 4's stem from border to border
    four[38:44, 0:50] = True  # and its bar, three quarters of the width
    cv2.line(four.view(np.uint8), (4, 0), (0, 40), 1, 6)
    for digit in (one, four):
        assert (remove_lines(digit) == digit).all()
    page = np.zeros((160, 160), bool)
    page[48:112, 48:112] = four  # the same 4 on a page, with two ruled lines across it: several lines go
    page[[30, 31, 130, 131], :] = True
    assert not remove_lines(page)[[30, 31, 130, 131]].any() and (remove_lines(page)[48:112, 48:112] == four).all()


def test_specks_alone_are_no_digit():
    specks = np.zeros((64, 64), bool)
    specks[10, 10] = specks[30, 40:42] = specks[50, 20] = True  # pieces of one and two pixels
    digit, dropped = digit_components(components(specks))
    assert not digit.any() and dropped == 3


def test_a_lone_margin_line_beside_the_digit_is_dropped(reference):
    ink = strokes(SEVEN, 8)
    cv2.line(ink, (30, 0), (30, SIZE - 1), 1.0, 4)  # a notebook's margin line, as dark as the ink
    digit = prepared(paper(ink, texture=0.02))
    assert overlap(digit, reference) > 0.6
    assert overlap(digit, prepared(paper(strokes(SEVEN, 8), texture=0.02))) > 0.9


@pytest.mark.parametrize("inset", [10, 2, 0], ids=["box inside", "box near the edge", "cropped on the box"])
@pytest.mark.parametrize("stroke", [8, CLEAN_STROKE], ids=["pen", "bold"])
def test_a_form_cells_box_is_dropped(reference, inset, stroke):
    ink = strokes(SEVEN, stroke)
    cv2.rectangle(ink, (inset, inset), (SIZE - 1 - inset, SIZE - 1 - inset), 1.0, 3)  # the form's printed box
    digit = prepared(paper(ink, paper_rgb=(0.97, 0.97, 0.97)))
    assert overlap(digit, reference) > 0.6
    assert overlap(digit, prepared(paper(strokes(SEVEN, stroke), paper_rgb=(0.97, 0.97, 0.97)))) > 0.9


@pytest.mark.parametrize(("height", "width"), [(1000, 600), (600, 1000), (400, 300)])
def test_a_large_picture_shrinks_to_the_working_size_keeping_its_proportions(height, width):
    ramp = np.tile(np.linspace(0, 1, width, dtype=np.float32), (height, 1))  # dark on the left, light on the right
    small = reduce(ramp)
    scale = min(1.0, WORK_SIDE / max(height, width))
    assert small.shape == (round(height * scale), round(width * scale))
    assert small[:, 0].mean() < 0.05 and small[:, -1].mean() > 0.95  # not transposed


@pytest.mark.parametrize("k", [2, 3, 8])
def test_a_picture_enlarged_as_blocks_is_read_at_its_own_pixels(k):
    """A scan enlarged by nearest neighbour gives the digit its own pixels give, exactly; a smooth enlargement and
    blocks that would leave fewer than 8 pixels a side are left as they are."""
    digit = 255 - load_source(None).test.images[7]  # a bundled MNIST digit, dark ink on white, 28×28
    blocks = np.kron(digit, np.ones((k, k), np.uint8))
    assert block_size(blocks[..., None].repeat(3, -1) / 255.0) == k
    assert np.array_equal(picture_digit(Image.fromarray(blocks))[0], picture_digit(Image.fromarray(digit))[0])
    smooth = np.asarray(Image.fromarray(digit).resize((28 * k, 28 * k), Image.Resampling.BICUBIC))
    assert block_size(smooth[..., None] / 255.0) == 1
    assert block_size(np.kron(np.eye(7), np.ones((k, k)))[..., None]) == 1  # 7×7: too few pixels to be a digit
