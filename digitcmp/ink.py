"""Finding a handwritten digit in a real picture: paper and shading removed, ink separated from paper, the digit's
strokes kept and everything else dropped, stroke width brought to MNIST's.

OpenCV (headless) does the image work: thresholds, morphology, connected components, resizing. No torch: this is
predict's code. The result is a float image, white digit on black, for ``preprocess.mnist_digit`` to frame as
MNIST was framed. A clean image of an MNIST-like digit passes through with its grey levels untouched.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

# The pictures are small (at most WORK_SIDE pixels a side once reduced): OpenCV's own threads do not read them
# faster, and their waiting doubles the processor time a picture takes, time a server's concurrent requests need.
cv2.setNumThreads(1)

WORK_SIDE = 512  # pictures are reduced to at most this many pixels a side before any work
MIN_BLOCKS = 8  # a picture of blocks is read at one pixel per block when that leaves an 8×8 scan or more
WORK_BOX = 64  # the digit's box at the resolution where stroke width is measured and normalised
# MNIST's stroke width relative to its digit's box, measured with ``relative_width`` on the 10,000 MNIST test
# digits: 10th percentile 0.086, median 0.117, 90th percentile 0.162. Strokes outside that range are dilated or
# eroded to the median; strokes inside it are left as drawn.
MNIST_STROKE = (0.086, 0.117, 0.162)
# Below these, an image holds no digit: the ink's contrast over the paper's noise, and the ink's share of the image.
MIN_CONTRAST = 6.0
MIN_INK_SHARE = 0.001
CLEAN_NOISE = 0.02  # paper this even (robust std of the ink map off the digit) keeps its grey levels as they are
GROUP_GAP = 0.15  # pieces of ink nearer than this share of a digit's box belong to that digit
# A group of ink is a digit with at least these shares of the largest group's ink and of the tallest one's height
# (a stray mark holds little ink, and is short).
GROUP_INK, GROUP_HEIGHT = 0.25, 0.5
# In a picture asked for two digits where only one group passes those shares, the lower shares a second digit may
# have beside the first: a thin 1 beside a bold 0 holds little ink, and a writer's two digits may differ in size.
PAIR_INK, PAIR_HEIGHT = 0.1, 0.3


class NoDigit(ValueError):
    """The picture holds nothing that reads as ink on paper (blank paper, noise only)."""


class SeveralDigits(ValueError):
    """The picture holds another number of digits than asked for (``count``)."""

    def __init__(self, count: int) -> None:
        super().__init__(f"{count} digits")
        self.count = count


@dataclass
class Ink:
    """A digit isolated from its picture: ``image`` float, white on black in [0, 1]; what was decided on the way."""

    image: np.ndarray
    clean: bool  # an even background: the picture's own grey levels were kept
    stroke_scale: float  # stroke width relative to MNIST's median, before normalisation
    dropped: int  # connected components dropped (specks, lines, other digits' fragments)


def block_size(picture: np.ndarray) -> int:
    """k when every pixel of the picture is repeated in k×k blocks (a small scan enlarged by nearest neighbour) and
    one pixel per block leaves at least ``MIN_BLOCKS`` a side, else 1.

    Every edge of such a picture falls on a multiple of k: the middle row and column give k cheaply (a photo's noise
    gives 1 at once), and the whole picture confirms it."""
    height, width = picture.shape[:2]
    steps = []
    for line in (picture[height // 2], picture[:, width // 2]):
        line = line.reshape(len(line), -1)
        edges = np.flatnonzero((line[1:] != line[:-1]).any(axis=1)) + 1
        steps.append(math.gcd(len(line), *edges.tolist()))
    k = math.gcd(*steps)
    if k < 2 or min(height, width) // k < MIN_BLOCKS:
        return 1
    return k if np.array_equal(picture, np.repeat(np.repeat(picture[::k, ::k], k, axis=0), k, axis=1)) else 1


def reduce(picture: np.ndarray) -> np.ndarray:
    """The picture at the resolution it is worked at: one pixel per block of a picture enlarged as blocks (nothing
    is lost, and the blocks' square steps are no edge a pen draws), and at most ``WORK_SIDE`` a side (area
    averaging: thin strokes fade, not vanish)."""
    k = block_size(picture)
    picture = picture[::k, ::k]
    side = max(picture.shape[:2])
    if side <= WORK_SIDE:
        return picture
    scale = WORK_SIDE / side
    size = (max(1, round(picture.shape[1] * scale)), max(1, round(picture.shape[0] * scale)))
    return cv2.resize(picture, size, interpolation=cv2.INTER_AREA)


def ink_map(rgb: np.ndarray) -> np.ndarray:
    """How far each pixel's colour is from the paper's, in [0, 1].

    Colour distance rather than brightness: dark ink on light paper, light ink on dark paper, and blue ink on
    yellow paper all come out as bright ink on black. The paper's colour is the median of the outermost pixels,
    or of a frame a tenth of the picture wide where that leaves less than half as much ink: the outermost pixels
    of a form cell cropped along its box are the box's."""
    height, width = rgb.shape[:2]
    inner = np.zeros((height, width), bool)
    inner[1:-1, 1:-1] = True
    frame = np.ones((height, width), bool)
    frame[height // 10 : height - height // 10, width // 10 : width - width // 10] = False
    maps = []
    for edge in (~inner, frame):
        paper = np.median(rgb[edge] if edge.any() else rgb.reshape(-1, rgb.shape[-1]), axis=0)
        maps.append(np.sqrt(((rgb - paper) ** 2).sum(axis=-1) / rgb.shape[-1]).astype(np.float32))
    border, framed = maps
    return framed if framed.mean() < 0.5 * border.mean() else border


def stroke_width(mask: np.ndarray) -> float:
    """Typical stroke width of a binary mask in pixels: twice the median distance to the background along the
    strokes' ridges (the local maxima of the distance transform)."""
    distance = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
    ridge = (distance > 0) & (distance >= cv2.dilate(distance, np.ones((3, 3), np.uint8)))
    return 2.0 * float(np.median(distance[ridge])) if ridge.any() else 0.0


def flatten(ink: np.ndarray) -> np.ndarray:
    """Remove shading and uneven illumination: a white top-hat (the map minus its morphological opening) with a
    structuring element three times wider than the strokes, so strokes stay and smooth background goes. The
    strokes are measured without ruled lines or a form's box, which are thinner than most pens' strokes."""
    mask = remove_lines(otsu(ink))
    width = stroke_width(mask) if mask.any() else 3.0
    size = int(min(3 * width + 3, min(ink.shape) // 2)) | 1
    if size < 3:
        return ink
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    return cv2.morphologyEx(ink, cv2.MORPH_TOPHAT, kernel)


def otsu(ink: np.ndarray) -> np.ndarray:
    """Ink against paper by Otsu's threshold (on the map scaled to its own range)."""
    top = float(ink.max())
    if top <= 0:
        return np.zeros(ink.shape, dtype=bool)
    scaled = np.clip(ink / top * 255, 0, 255).astype(np.uint8)
    _, mask = cv2.threshold(scaled, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return mask.astype(bool)


def robust_std(values: np.ndarray) -> float:
    return 1.4826 * float(np.median(np.abs(values - np.median(values)))) if values.size else 0.0


def line_runs(mask: np.ndarray, horizontal: bool) -> np.ndarray:
    """The ruled or grid lines (or a form cell's box) of one direction: thin straight runs across at least three
    quarters of the picture (a morphological opening with a line that long, at most 3 pixels or 5% of the picture
    thick), where there are two or more of them. A digit has at most one bar that long, and a bold one (in a tight
    crop: a 1, the stem of a 4, the bar of a 5 or 7), while ruled and squared paper show several thin parallel
    lines. The runs need not reach the borders, since shading often fades a line before the edge."""
    height, width = mask.shape
    side, across = (width, height) if horizontal else (height, width)
    length = int(0.75 * side) | 1  # odd: the opening gives back whole runs
    if length < 2:
        return np.zeros_like(mask)
    kernel = np.ones((1, length) if horizontal else (length, 1), np.uint8)
    # Outside the picture counts as paper: OpenCV's default border would let a stroke that meets the border pass
    # for a run twice as long as it is.
    runs = cv2.morphologyEx(
        mask.astype(np.uint8), cv2.MORPH_OPEN, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0
    )
    _, labels, stats, _ = cv2.connectedComponentsWithStats(runs, connectivity=8)
    thickness = stats[1:, cv2.CC_STAT_HEIGHT if horizontal else cv2.CC_STAT_WIDTH]
    thin = 1 + np.flatnonzero(thickness <= max(3, 0.05 * across))
    return np.isin(labels, thin) if len(thin) >= 2 else np.zeros_like(mask)


def remove_lines(mask: np.ndarray) -> np.ndarray:
    """Drop ruled and grid lines and the box of a form cell (``line_runs``, both directions at once) where they
    run on past the digit's body (the largest piece left) on both sides, as such lines do. A line goes with the
    pixel on either side of it (its faded edges); where it crossed a stroke, the stroke keeps a gap that thin,
    which mostly vanishes as the digit shrinks to MNIST's 20×20 box."""
    bands: dict[bool, tuple[np.ndarray, np.ndarray]] = {}  # direction → (its lines, the lines' pixels to drop)
    for horizontal in (True, False):
        found = line_runs(mask, horizontal)
        if found.any():
            either_side = np.ones((3, 1) if horizontal else (1, 3), np.uint8)
            bands[horizontal] = found, cv2.dilate(found.astype(np.uint8), either_side).astype(bool) & mask
    if not bands:
        return mask
    rest = mask & ~np.logical_or.reduce([band for _, band in bands.values()])
    if not rest.any():
        return mask
    stats = cv2.connectedComponentsWithStats(rest.astype(np.uint8), connectivity=8)[2]
    x, y, w, h = stats[1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))][:4]  # the digit's body
    kept = mask
    for horizontal, (found, band) in bands.items():
        along = np.flatnonzero(found.any(axis=0 if horizontal else 1))  # where the lines run
        start, end, side = (x, x + w, mask.shape[1]) if horizontal else (y, y + h, mask.shape[0])
        if along[0] < start - 0.05 * side and along[-1] >= end + 0.05 * side:  # past the digit on both sides
            kept = kept & ~band
    return kept


@dataclass(frozen=True)
class Components:
    """A mask's connected pieces of ink (8-connected), found once for every question asked of them."""

    labels: np.ndarray
    stats: np.ndarray  # per piece: x, y, width, height, area
    centroids: np.ndarray
    parts: list[int]  # the pieces that are not specks, largest first

    @property
    def count(self) -> int:
        return len(self.stats) - 1

    def box(self, p: int) -> list[int]:
        x, y, w, h = (int(v) for v in self.stats[p, :4])
        return [x, y, x + w, y + h]

    def touches_border(self, box: list[int]) -> bool:
        height, width = self.labels.shape
        return box[0] == 0 or box[1] == 0 or box[2] == width or box[3] == height

    def mask(self, members: list[int]) -> np.ndarray:
        return np.isin(self.labels, sorted(members))

    def grown(self, seed: int, share: float, joins: Callable[[int, list[int]], bool]) -> tuple[list[int], list[int]]:
        """``seed`` and the pieces close to it, repeatedly (strokes the pen left apart): a piece joins when its box
        meets the group's grown by ``share`` of the group's longer side, and ``joins`` agrees. The result does not
        depend on the order pieces are tried in, since a group only grows. Returns the members and their box."""
        members, group = [seed], self.box(seed)
        grew = True
        while grew:
            margin = share * max(group[2] - group[0], group[3] - group[1])
            near = [p for p in self.parts if p not in members and meet(self.box(p), group, margin) and joins(p, group)]
            for p in near:
                x0, y0, x1, y1 = self.box(p)
                group = [min(group[0], x0), min(group[1], y0), max(group[2], x1), max(group[3], y1)]
            members += near
            grew = bool(near)
        return members, group


def components(mask: np.ndarray) -> Components:
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    areas = stats[:, cv2.CC_STAT_AREA]
    largest = areas[1:].max(initial=0)
    parts = sorted((p for p in range(1, count) if areas[p] >= max(3, 0.03 * largest)), key=lambda p: -areas[p])
    return Components(labels, stats, centroids, parts)


def digit_components(found: Components) -> tuple[np.ndarray, int]:
    """The connected components that make the digit, and how many others were dropped: specks, and fragments
    touching the border away from the digit (a neighbouring digit)."""
    if not found.parts:  # no ink, or only specks
        return np.zeros(found.labels.shape, bool), found.count
    height, width = found.labels.shape
    centre = np.array([width / 2, height / 2])
    diagonal = float(np.hypot(width, height))

    def score(p: int) -> float:  # large and near the middle, where people put the digit they photograph
        return found.stats[p, cv2.CC_STAT_AREA] * (1.5 - np.linalg.norm(found.centroids[p] - centre) / diagonal)

    def joins(p: int, group: list[int]) -> bool:  # a piece cut by the border only where it touches the digit
        return meet(found.box(p), group, 0) or not found.touches_border(found.box(p))

    chosen, _ = found.grown(max(found.parts, key=score), 0.3, joins)
    return found.mask(chosen), found.count - len(chosen)


def meet(a: tuple[int, ...] | list[int], b: tuple[int, ...] | list[int], margin: float) -> bool:
    """Whether two boxes (x0, y0, x1, y1) overlap once the second is grown by ``margin`` on every side."""
    return a[0] < b[2] + margin and a[2] > b[0] - margin and a[1] < b[3] + margin and a[3] > b[1] - margin


def to_work_box(image: np.ndarray) -> np.ndarray:
    """The digit cropped to its ink and scaled so that its longer side is ``WORK_BOX`` pixels (area averaging when
    shrinking, so a thin line keeps its ink as grey), with a margin for dilation."""
    rows, cols = np.flatnonzero(image.max(axis=1) > 0), np.flatnonzero(image.max(axis=0) > 0)
    crop = image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    scale = WORK_BOX / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    work = cv2.resize(crop, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return cv2.copyMakeBorder(work, 8, 8, 8, 8, cv2.BORDER_CONSTANT, value=0)


def relative_width(work: np.ndarray) -> float:
    """Mean stroke width of a digit at the work size, as a share of its box: twice its ink (a stroke of length L
    and width w holds L·w) over the length of its outline (2L). Ink, not a thresholded mask, so that a faint thin
    line counts as thin rather than vanishing."""
    contours, _ = cv2.findContours((work > 0.35).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    outline = sum(cv2.arcLength(c, True) for c in contours)
    return 2 * float(work.sum()) / max(outline, 1.0) / WORK_BOX


def normalise_strokes(image: np.ndarray) -> tuple[np.ndarray, float]:
    """Bring the stroke width, relative to the digit's box, into MNIST's range: at the work size, dilate thin
    strokes or erode heavy ones to MNIST's median. Returns the image (at the work size when it changed) and the
    width before, as a multiple of MNIST's median."""
    work = to_work_box(image)
    low, median, high = MNIST_STROKE
    width = relative_width(work)
    if low <= width <= high:
        return image, width / median
    change = round(abs(median - width) * WORK_BOX)
    if change < 1:
        return image, width / median
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (change + 1, change + 1))
    work = (cv2.dilate if width < low else cv2.erode)(work, kernel)
    return np.clip(work / max(float(work.max()), 1e-6), 0.0, 1.0), width / median  # a thin line's grey becomes ink


def ink_and_mask(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """A picture's ink map (shading removed), its ink mask, the paper's noise and the ink's level. Raises
    ``NoDigit`` when nothing in the picture reads as ink on paper."""
    ink = flatten(ink_map(rgb))
    mask = otsu(ink)
    if mask.mean() < MIN_INK_SHARE:
        raise NoDigit("no ink")
    around = ~cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    background = ink[around] if around.sum() >= 64 else ink[~mask]  # paper away from the ink, if there is any
    noise = robust_std(background)
    level = float(np.median(ink[mask]))
    if level - float(np.median(background) if background.size else 0.0) < MIN_CONTRAST * max(noise, 0.01):
        raise NoDigit("ink indistinguishable from the paper")
    return ink, mask, noise, level


def digit_ink(ink: np.ndarray, mask: np.ndarray, digit: np.ndarray, noise: float, level: float, dropped: int) -> Ink:
    """One digit's strokes (``digit``, a mask) as a float image, white on black, its stroke width normalised."""
    region = cv2.dilate(digit.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    clean = noise < CLEAN_NOISE
    if clean:  # keep the picture's own grey levels, scaled so that the strokes reach full white
        image = np.clip(ink / max(level, 1e-6), 0.0, 1.0) * region
    else:  # textured paper: a soft threshold around Otsu's keeps anti-aliased edges and drops the texture
        threshold = float(ink[mask].min())
        image = np.clip((ink - 0.5 * threshold) / max(level - 0.5 * threshold, 1e-6), 0.0, 1.0) * region
    image, relative = normalise_strokes(image.astype(np.float32))
    return Ink(image.astype(np.float32), clean, relative, dropped)


def isolate(rgb: np.ndarray) -> Ink:
    """The digit of a picture (float RGB H×W×3 in [0, 1]) as a float image, white on black.

    Raises ``NoDigit`` when nothing in the picture reads as ink on paper, ``SeveralDigits`` when it holds more than
    one digit (``digit_groups``)."""
    ink, mask, noise, level = ink_and_mask(rgb)
    found = components(remove_lines(mask))
    groups = digit_groups(found)
    if len(groups) > 1:
        raise SeveralDigits(len(groups))
    digit, dropped = digit_components(found)
    if not digit.any():
        raise NoDigit("no digit-sized ink")
    return digit_ink(ink, mask, digit, noise, level, dropped)


def isolate_pair(rgb: np.ndarray) -> list[tuple[str, Ink]]:
    """The two digits of one picture, in reading order (left to right, or top to bottom when they are stacked),
    each with its place. Raises ``NoDigit`` without ink, ``SeveralDigits`` with a count other than two."""
    ink, mask, noise, level = ink_and_mask(rgb)
    found = components(remove_lines(mask))
    groups = digit_groups(found)
    if len(groups) == 1 and len(paired := digit_groups(found, PAIR_INK, PAIR_HEIGHT)) == 2:
        groups = paired
    if len(groups) != 2:
        raise SeveralDigits(len(groups))
    (x_a, y_a), (x_b, y_b) = (centre(box) for _, box in groups)
    stacked = abs(y_a - y_b) > abs(x_a - x_b)
    axis = 1 if stacked else 0
    ordered = sorted(groups, key=lambda group: centre(group[1])[axis])
    places = ("top", "bottom") if stacked else ("left", "right")
    return [
        (place, digit_ink(ink, mask, digit, noise, level, 0)) for place, (digit, _) in zip(places, ordered, strict=True)
    ]


def centre(box: list[int]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def digit_groups(
    found: Components, ink_share: float = GROUP_INK, height_share: float = GROUP_HEIGHT
) -> list[tuple[np.ndarray, list[int]]]:
    """The digits of a picture: its pieces of ink grown into groups by the pieces close to them (a pen lifted
    within a digit leaves pieces a small gap apart; two written digits stand further apart), keeping the groups of
    a digit's size (at least ``ink_share`` of the most ink and ``height_share`` of the tallest group's height) away
    from the border (a neighbouring digit cut off by the frame). Each group is (its mask, its box x0, y0, x1, y1)."""
    groups, grouped = [], set()
    for seed in found.parts:  # the largest piece not yet in a group starts the next
        if seed in grouped:
            continue
        members, box = found.grown(seed, GROUP_GAP, lambda p, group: p not in grouped)
        grouped.update(members)
        groups.append((members, box, int(found.stats[members, cv2.CC_STAT_AREA].sum())))
    if not groups:
        return []
    most_ink = max(ink for _, _, ink in groups)
    tallest = max(box[3] - box[1] for _, box, _ in groups)
    return [
        (found.mask(members), box)
        for members, box, ink in groups
        if ink >= ink_share * most_ink and box[3] - box[1] >= height_share * tallest and not found.touches_border(box)
    ]
