"""How `digitcmp predict` reads real handwriting: digit and comparison accuracy per style and per source.

FOLDER holds images of single handwritten digits and a `labels.csv` with the columns `path,digit,source,style`
(path relative to FOLDER; style such as photo, drawn or scan). Every image is prepared exactly as `digitcmp predict`
prepares it and read by the model; comparison pairs are formed within each style (each image against the next one
of a seeded shuffle, so every image is a first and a second digit once).

It also reads each pair as one picture holding both digits, as `digitcmp predict SHEET` does: the two images of a
pair, from the same source (the same paper, pen and camera), side by side with a digit's width between them, and
counts the single-digit images refused as holding several digits.

    python benchmarks/realworld.py FOLDER                          # the shipped model
    python benchmarks/realworld.py FOLDER --model models/mine.onnx --json
    python benchmarks/realworld.py FOLDER --sheet sheet.png   # inputs beside the digits the model saw
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

from digitcmp.errors import DigitcmpError
from digitcmp.predict import Digit, load_digit, load_model, pair_from_bytes, run_pairs


def read_labels(folder: Path) -> list[dict]:
    with (folder / "labels.csv").open(newline="", encoding="utf-8") as handle:
        return [{**row, "digit": int(row["digit"])} for row in csv.DictReader(handle)]


def score(folder: Path, model_path: Path | None, seed: int) -> tuple[dict, list[tuple[dict, Digit | None]]]:
    model = load_model(model_path)
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
    reads: dict[int, int] = {}
    flagged: dict[int, bool] = {}  # the read was reported as unsure (below predict's SURE probability)
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
            reads[a], reads[b] = prediction.digits
            flagged[a], flagged[b] = (prediction.read(which)["unsure"] for which in (0, 1))
    groups: dict[str, dict[str, list[int]]] = {"style": defaultdict(list), "source": defaultdict(list)}
    for index, (row, _) in enumerate(prepared):
        groups["style"][row["style"]].append(index)
        groups["source"][f"{row['style']}/{row['source']}"].append(index)
    figures: dict = {"images": len(rows), "refused": sum(d is None for _, d in prepared),
                     "refused_as_several_digits": several,
                     "median_ms_per_image": round(1000 * statistics.median(seconds), 1),
                     "one_picture_pairs": one_picture_pairs(folder, rows, model, seed)}  # fmt: skip
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
    buffer = io.BytesIO()
    Image.fromarray(np.concatenate(grown, axis=1)).save(buffer, format="PNG")
    return buffer.getvalue()


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
            hits[a["style"]].append(answer.first_le_second == (a["digit"] <= b["digit"]))
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
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    figures, prepared = score(args.folder, args.model, args.seed)
    if args.sheet:
        sheet(prepared, args.folder, args.sheet)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    each = figures["median_ms_per_image"]
    print(f"{figures['images']} images, {figures['refused']} refused ({figures['refused_as_several_digits']} as "
          f"holding several digits), {each} ms each to prepare (median)")  # fmt: skip
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
