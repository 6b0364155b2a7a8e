"""How `digitcmp predict` reads real handwriting: digit and comparison accuracy per style and per source.

FOLDER holds images of single handwritten digits and a `labels.csv` with the columns `path,digit,source,style`
(path relative to FOLDER; style such as photo, drawn or scan). Every image is prepared exactly as `digitcmp predict`
prepares it and read by the model; comparison pairs are formed within each style (each image against the next one
of a seeded shuffle, so every image is a first and a second digit once).

It also reads each pair as one picture holding both digits, as `digitcmp predict SHEET` does: the two images of a
pair, from the same source (the same paper, pen and camera), side by side with a digit's width between them, and
counts the single-digit images refused as holding several digits.

Calibration: the expected calibration error of the digit probabilities over every read, with the reliability table
behind it. Refusal: the real digits refused as not a digit, and non-digit pictures refused (``--nondigits N``:
letters, symbols and signs in the machine's DejaVu fonts, and shapes, dark ink on noisy paper: fonts and paper
that training's generator does not use, which prints in Pillow's own font, STIX and Computer Modern on black).

    python benchmarks/realworld.py FOLDER                          # the shipped model
    python benchmarks/realworld.py FOLDER --model models/mine.onnx --json
    python benchmarks/realworld.py FOLDER --sheet sheet.png   # inputs beside the digits the model saw
    python benchmarks/realworld.py FOLDER --nondigits 600     # also 600 generated non-digit pictures
    python benchmarks/realworld.py FOLDER --mnist mnist       # also every official MNIST test digit
    python benchmarks/realworld.py FOLDER --scans-8x8         # also 1,797 8×8 scans (needs scikit-learn)
    python benchmarks/realworld.py FOLDER --reliability r.png  # the reliability diagram of the digit reads
    python benchmarks/realworld.py FOLDER --all-views         # every view for every read: predict's early exit off
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import statistics
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from digitcmp.calibration import expected_calibration_error, reliability
from digitcmp.environment import machine
from digitcmp.errors import DigitcmpError
from digitcmp.nondigits import CANVAS, LETTERS, SHAPES, SYMBOLS, draw_shape
from digitcmp.predict import Digit, Model, digit_from_bytes, load_digit, load_model, pair_from_bytes, run_pairs


def read_labels(folder: Path) -> list[dict]:
    with (folder / "labels.csv").open(newline="", encoding="utf-8") as handle:
        return [{**row, "digit": int(row["digit"])} for row in csv.DictReader(handle)]


def score(folder: Path, model: Model, seed: int, nondigits: int = 0) -> tuple[dict, list[tuple[dict, Digit | None]]]:
    rows = read_labels(folder)
    prepared: list[tuple[dict, Digit | None]] = []
    seconds = []
    several = 0  # single-digit images refused as holding several digits
    for row in rows:
        started = time.perf_counter()
        try:
            digit = load_digit(folder / row["path"])
        except DigitcmpError as exc:
            digit = None  # refused: counts as a wrong read
            several += " digits; crop it" in str(exc)
        seconds.append(time.perf_counter() - started)
        prepared.append((row, digit))
    by_style: dict[str, list[int]] = defaultdict(list)
    for index, (row, _) in enumerate(prepared):
        by_style[row["style"]].append(index)
    reads: dict[int, int | None] = {}  # None: refused as not a digit
    flagged: dict[int, bool] = {}  # the read was reported as unsure (below predict's SURE probability)
    confidence: dict[int, float] = {}
    pair_hits: dict[int, bool] = {}
    rng = random.Random(seed)
    for indices in by_style.values():
        order = indices[:]
        rng.shuffle(order)
        pairs = [(order[i], order[(i + 1) % len(order)]) for i in range(len(order))]
        usable = [(a, b) for a, b in pairs if prepared[a][1] is not None and prepared[b][1] is not None]
        for (a, b), prediction in zip(usable, run_pairs(model, [(prepared[a][1], prepared[b][1]) for a, b in usable]),
                                      strict=True):  # fmt: skip
            truth = prepared[a][0]["digit"] <= prepared[b][0]["digit"]
            pair_hits[a] = prediction.first_le_second == truth
            for which, index in enumerate((a, b)):
                read = prediction.read(which)
                reads[index] = read["digit"] if prediction.is_digit(which) else None
                flagged[index], confidence[index] = read["unsure"], read["probability"]
    groups: dict[str, dict[str, list[int]]] = {"style": defaultdict(list), "source": defaultdict(list)}
    for index, (row, _) in enumerate(prepared):
        groups["style"][row["style"]].append(index)
        groups["source"][f"{row['style']}/{row['source']}"].append(index)
    read_right = [(confidence[i], reads[i] == prepared[i][0]["digit"]) for i in confidence if reads[i] is not None]
    figures: dict = {"images": len(rows), "refused": sum(d is None for _, d in prepared),
                     "refused_as_several_digits": several,
                     "refused_as_not_a_digit": sum(read is None for read in reads.values()),
                     "digit_ece": round(expected_calibration_error(*np.array(read_right).T), 4),
                     "reliability": reliability(*np.array(read_right).T),
                     "median_ms_per_image": round(1000 * statistics.median(seconds), 1),
                     "one_picture_pairs": one_picture_pairs(folder, rows, model, seed),
                     "nondigits": nondigit_refusals(model, nondigits, seed) if nondigits else None}  # fmt: skip
    right = {i: reads.get(i) == row["digit"] for i, (row, _) in enumerate(prepared)}
    for name, unsure in (("sure", False), ("unsure", True)):
        indices = [i for i in flagged if flagged[i] == unsure]
        figures[f"{name}_reads"] = {
            "images": len(indices),
            "digit_accuracy": round(float(np.mean([right[i] for i in indices])), 4) if indices else None,
        }
    for kind, members in groups.items():
        figures[kind] = {
            name: {
                "images": len(indices),
                "digit_accuracy": round(float(np.mean([right[i] for i in indices])), 4),
                "pair_accuracy": round(float(np.mean([pair_hits.get(i, False) for i in indices])), 4),
            }
            for name, indices in sorted(members.items())
        }
    return figures, prepared


def png_bytes(image: Image.Image) -> bytes:
    """The picture as a PNG file's bytes, as a user would hand it to predict."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def nondigit_picture(kind: str, generator: np.random.Generator, fonts: list[Path]) -> bytes:
    """One non-digit as a user might photograph or scan it: dark ink on light, noisy, slightly blurred paper. A
    character in one of ``fonts``, or a shape drawn at the training generator's scale and enlarged."""
    from PIL import ImageDraw, ImageFilter, ImageFont

    size = 160
    if kind == "shape" or not fonts:
        small = Image.new("L", (CANVAS, CANVAS), 0)
        draw_shape(ImageDraw.Draw(small), str(generator.choice(SHAPES)), int(generator.integers(2, 6)), generator)
        image = small.resize((size, size), Image.Resampling.BICUBIC)
    else:
        image = Image.new("L", (size, size), 0)
        font = ImageFont.truetype(str(generator.choice(fonts)), int(generator.integers(70, 120)))
        text = str(generator.choice(list(LETTERS + SYMBOLS + "£§¶ΩπΣλ€")))
        ImageDraw.Draw(image).text((size / 2, size / 2), text, fill=255, font=font, anchor="mm")
    image = image.rotate(float(generator.uniform(-15, 15)), fillcolor=0).filter(ImageFilter.GaussianBlur(1.2))
    ink = np.asarray(image, np.float32) / 255
    paper = 0.85 + 0.1 * generator.random() + generator.normal(0, 0.03, ink.shape)
    picture = np.clip(paper * (1 - 0.8 * ink), 0, 1)
    return png_bytes(Image.fromarray((255 * picture).astype(np.uint8)))


def nondigit_refusals(model, count: int, seed: int) -> dict:
    """How many of ``count`` generated non-digit pictures predict refuses, per kind (letter or symbol, shape)."""
    fonts = sorted(Path("/usr/share/fonts/truetype/dejavu").glob("*.ttf"))
    generator = np.random.default_rng(seed)
    outcome: dict[str, list[bool]] = defaultdict(list)
    read: list[tuple[str, Digit]] = []
    for i in range(count):
        kind = "shape" if i % 2 else "character"
        try:
            read.append((kind, digit_from_bytes(nondigit_picture(kind, generator, fonts), f"nondigit-{i}")))
        except DigitcmpError:
            outcome[kind].append(True)  # refused before the model (no ink found)
    for (kind, _), answer in zip(read, run_pairs(model, [(d, d) for _, d in read]), strict=True):
        outcome[kind].append(not answer.is_digit(0))
    return {kind: {"pictures": len(v), "refused": round(float(np.mean(v)), 4)} for kind, v in sorted(outcome.items())}


def mnist_digits(data_dir: Path, model) -> dict:
    """Every MNIST test digit as the model's input (MNIST's own 28×28 image, pooled): digit accuracy, the share
    refused as not a digit, the expected calibration error of the digit probabilities, and the comparison accuracy
    of the pairs they make in file order (each digit in one pair), with its 95% Wilson interval."""
    from scipy.stats import binomtest

    from digitcmp.data import load_source
    from digitcmp.preprocess import pool_digits

    test = load_source(data_dir).test
    pooled = pool_digits(test.images)
    digits = [Digit("mnist", image, p) for image, p in zip(test.images, pooled, strict=True)]
    answers = run_pairs(model, list(zip(digits[0::2], digits[1::2], strict=True)))
    probabilities = np.concatenate([a.digit_probabilities for a in answers])
    labels = test.labels[: len(probabilities)]
    read = [a.is_digit(which) for a in answers for which in (0, 1)]
    right = probabilities.argmax(-1) == labels
    compared = [a.first_le_second == (first <= second) for a, first, second in
                zip(answers, labels[0::2], labels[1::2], strict=True)]  # fmt: skip
    interval = binomtest(int(sum(compared)), len(compared)).proportion_ci(method="wilson")
    return {"digits": len(labels), "digit_accuracy": round(float(right.mean()), 4),
            "pairs": len(compared), "pair_accuracy": round(float(np.mean(compared)), 4),
            "pair_accuracy_interval": [round(interval.low, 4), round(interval.high, 4)],
            "refused_as_not_a_digit": int(len(read) - sum(read)),
            "digit_ece": round(expected_calibration_error(probabilities.max(-1), right), 4)}  # fmt: skip


def scans_8x8(model) -> dict:
    """The 1,797 digits of the UCI optical-recognition test set (scikit-learn's ``load_digits``: forms of 13
    writers, scanned and reduced to 8×8 counts of ink, 0-16), each as dark ink on white paper given as it is and
    enlarged eight times, smoothly (bicubic) and as blocks (nearest): digit accuracy and the share refused."""
    from sklearn.datasets import load_digits

    scans = load_digits()
    figures = {}
    for name, resample in (("8x8", None), ("64x64 bicubic", Image.Resampling.BICUBIC),
                           ("64x64 nearest", Image.Resampling.NEAREST)):  # fmt: skip
        digits = []
        for i, counts in enumerate(scans.images):
            picture = Image.fromarray((255 - counts * 255 / 16).astype(np.uint8))
            picture = picture if resample is None else picture.resize((64, 64), resample)
            digits.append(digit_from_bytes(png_bytes(picture), f"scan-{i}"))
        answers = run_pairs(model, [(d, d) for d in digits])
        read = [a.digits[0] if a.is_digit(0) else None for a in answers]
        right = [r == label for r, label in zip(read, scans.target, strict=True)]
        figures[name] = {"digits": len(read), "digit_accuracy": round(float(np.mean(right)), 4),
                         "refused_as_not_a_digit": sum(r is None for r in read)}  # fmt: skip
    return figures


def plot_reliability(rows: list[dict], ece: float, path: Path) -> None:
    """The reliability diagram: per confidence bin, the share of reads that were right against the probability
    the model gave them (the diagonal: calibrated), with how many reads each bin holds."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.6, 4.2), layout="constrained")
    axes = figure.subplots()
    axes.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="calibrated")
    centres = [(r["low"] + r["high"]) / 2 for r in rows]
    axes.bar(centres, [r["accuracy"] for r in rows], width=0.09, color="#4c72b0", alpha=0.8, label="reads right")
    axes.plot([r["confidence"] for r in rows], [r["accuracy"] for r in rows], "o", color="#c44e52",
              label="mean probability given")  # fmt: skip
    for centre, row in zip(centres, rows, strict=True):
        axes.annotate(f"{row['count']}", (centre, min(row["accuracy"], 0.93) + 0.02), ha="center", fontsize=7)
    axes.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="probability of the digit read", ylabel="share read right",
             title=f"Digit reads of real handwriting (ECE {100 * ece:.1f}%)")  # fmt: skip
    axes.legend(loc="center left", fontsize=8)
    figure.savefig(path, dpi=110)


def side_by_side(first: Path, second: Path) -> bytes:
    """Two pictures of one source as one: scaled to the same height, each grown by half a digit's width on every
    side in its own paper's colour (the median of its border), and put side by side."""
    pictures = [Image.open(path).convert("RGB") for path in (first, second)]
    height = max(picture.height for picture in pictures)
    margin = height // 4
    grown = []
    for picture in pictures:
        scaled = np.asarray(picture.resize((max(1, round(picture.width * height / picture.height)), height)))
        border = np.concatenate([scaled[0], scaled[-1], scaled[:, 0], scaled[:, -1]])
        canvas = np.empty((height + 2 * margin, scaled.shape[1] + 2 * margin, 3), np.uint8)
        canvas[:] = np.median(border, axis=0).astype(np.uint8)
        canvas[margin:-margin, margin:-margin] = scaled
        grown.append(canvas)
    return png_bytes(Image.fromarray(np.concatenate(grown, axis=1)))


def one_picture_pairs(folder: Path, rows: list[dict], model, seed: int) -> dict:
    """Each source's images paired (a seeded shuffle, each image first once) and read as one picture each: how
    often the comparison is right (a refused picture counts as wrong), per style."""
    rng = random.Random(seed)
    by_source: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_source[f"{row['style']}/{row['source']}"].append(row)
    hits: dict[str, list[bool]] = defaultdict(list)
    for _, members in sorted(by_source.items()):
        order = members[:]
        rng.shuffle(order)
        for a, b in zip(order, order[1:] + order[:1], strict=True):
            try:
                pair = pair_from_bytes(side_by_side(folder / a["path"], folder / b["path"]), "sheet")
            except DigitcmpError:
                hits[a["style"]].append(False)
                continue
            [answer] = run_pairs(model, [pair])
            hits[a["style"]].append(answer.nondigit is None and answer.first_le_second == (a["digit"] <= b["digit"]))
    return {style: {"pairs": len(h), "pair_accuracy": round(float(np.mean(h)), 4)} for style, h in sorted(hits.items())}


def sheet(prepared: list[tuple[dict, Digit | None]], folder: Path, path: Path, per_source: int = 4) -> None:
    """A PNG: for a few images of every source, the picture as given beside the 28×28 digit the model saw."""
    chosen: dict[str, list] = defaultdict(list)
    for row, digit in prepared:
        if len(chosen[row["source"]]) < per_source:
            chosen[row["source"]].append((row, digit))
    cell = 72
    canvas = Image.new("L", (2 * cell * per_source, cell * len(chosen)), 255)
    for r, items in enumerate(chosen.values()):
        for c, (row, digit) in enumerate(items):
            picture = Image.open(folder / row["path"]).convert("L")
            picture.thumbnail((cell - 4, cell - 4))
            canvas.paste(picture, (2 * c * cell + 2, r * cell + 2))
            if digit is not None:
                seen = Image.fromarray(digit.image).resize((cell - 4, cell - 4), Image.Resampling.NEAREST)
                canvas.paste(seen, ((2 * c + 1) * cell + 2, r * cell + 2))
    canvas.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="images and labels.csv (path,digit,source,style)")
    parser.add_argument("--model", type=Path, default=None, help="ONNX model (default: the shipped one)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pairing within each style")
    parser.add_argument("--sheet", type=Path, help="also write a PNG of inputs beside the digits the model saw")
    parser.add_argument("--nondigits", type=int, default=0, help="also this many generated non-digit pictures")
    parser.add_argument("--mnist", type=Path, help="also every digit of the MNIST test set in this folder")
    parser.add_argument("--scans-8x8", action="store_true", help="also the 8×8 scans of scikit-learn's load_digits")
    parser.add_argument("--reliability", type=Path, help="also write the reliability diagram of the reads (PNG)")
    parser.add_argument("--all-views", action="store_true", help="every test-time view for every read (no early exit)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    model = load_model(args.model)
    model.all_views = args.all_views
    figures, prepared = score(args.folder, model, args.seed, args.nondigits)
    figures["views"] = "all" if args.all_views or not model.first_view else "early exit"
    if args.mnist:
        figures["mnist"] = mnist_digits(args.mnist, model)
    if args.scans_8x8:
        figures["scans_8x8"] = scans_8x8(model)
    if args.sheet:
        sheet(prepared, args.folder, args.sheet)
    if args.reliability:
        plot_reliability(figures["reliability"], figures["digit_ece"], args.reliability)
    if args.json:
        print(json.dumps({**figures, "environment": machine()}, indent=2))
        return
    each = figures["median_ms_per_image"]
    print(f"{figures['images']} images, {figures['refused']} refused ({figures['refused_as_several_digits']} as "
          f"holding several digits), {each} ms each to prepare (median)")  # fmt: skip
    print(f"real digits refused as not a digit: {figures['refused_as_not_a_digit']}; expected calibration error of "
          f"the digit probabilities: {100 * figures['digit_ece']:.1f}%")  # fmt: skip
    if "mnist" in figures:
        f = figures["mnist"]
        print(f"MNIST test digits: {f['digits']:,}, {100 * f['digit_accuracy']:.2f}% read right, "
              f"{f['refused_as_not_a_digit']} refused as not a digit, "
              f"calibration error {100 * f['digit_ece']:.1f}%; {f['pairs']:,} pairs of them, "
              f"{100 * f['pair_accuracy']:.2f}% compared right (95% interval "
              f"{100 * f['pair_accuracy_interval'][0]:.2f}-{100 * f['pair_accuracy_interval'][1]:.2f}%)")  # fmt: skip
    for name, f in figures.get("scans_8x8", {}).items():
        print(f"8×8 scans given {name}: {f['digits']:,}, {100 * f['digit_accuracy']:.1f}% read right, "
              f"{f['refused_as_not_a_digit']} refused as not a digit")  # fmt: skip
    for kind, f in (figures["nondigits"] or {}).items():
        print(f"non-digit pictures, {kind}: {f['pictures']}, {100 * f['refused']:.1f}% refused")
    for name in ("sure", "unsure"):
        f = figures[f"{name}_reads"]
        accuracy = "—" if f["digit_accuracy"] is None else f"{100 * f['digit_accuracy']:.1f}%"
        print(f"reads reported as {name}: {f['images']}, {accuracy} of them right")
    for style, f in figures["one_picture_pairs"].items():
        print(f"one picture holding both digits, {style}: {f['pairs']} pairs, {100 * f['pair_accuracy']:.1f}% right")
    for kind in ("style", "source"):
        print(f"{kind:28} {'images':>7} {'digits':>8} {'pairs':>8}")
        for name, f in figures[kind].items():
            print(f"{name:28} {f['images']:>7} {100 * f['digit_accuracy']:>7.1f}% {100 * f['pair_accuracy']:>7.1f}%")


if __name__ == "__main__":
    main()
