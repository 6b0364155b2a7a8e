"""How `digitcmp predict` reads real handwriting: digit and comparison accuracy per style and per source.

FOLDER holds images of single handwritten digits and a `labels.csv` with the columns `path,digit,source,style`
(path relative to FOLDER; style such as photo, drawn or scan). Every image is prepared exactly as `digitcmp predict`
prepares it and read by the model; comparison pairs are formed within each style (each image against the next one
of a seeded shuffle, so every image is a first and a second digit once).

    python benchmarks/realworld.py FOLDER                          # the shipped model
    python benchmarks/realworld.py FOLDER --model models/mine.onnx --json
    python benchmarks/realworld.py FOLDER --sheet sheet.png   # inputs beside the digits the model saw
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from digitcmp.errors import DigitcmpError
from digitcmp.predict import Digit, load_digit, load_model, run_pairs


def read_labels(folder: Path) -> list[dict]:
    with (folder / "labels.csv").open(newline="", encoding="utf-8") as handle:
        return [{**row, "digit": int(row["digit"])} for row in csv.DictReader(handle)]


def score(folder: Path, model_path: Path | None, seed: int) -> tuple[dict, list[tuple[dict, Digit | None]]]:
    model = load_model(model_path)
    rows = read_labels(folder)
    prepared: list[tuple[dict, Digit | None]] = []
    seconds = []
    for row in rows:
        started = time.perf_counter()
        try:
            digit = load_digit(folder / row["path"])
        except DigitcmpError:
            digit = None  # refused: counts as a wrong read
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
                     "median_ms_per_image": round(1000 * statistics.median(seconds), 1)}  # fmt: skip
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
    print(f"{figures['images']} images, {figures['refused']} refused, {each} ms each to prepare (median)")
    for name in ("sure", "unsure"):
        f = figures[f"{name}_reads"]
        accuracy = "—" if f["digit_accuracy"] is None else f"{100 * f['digit_accuracy']:.1f}%"
        print(f"reads reported as {name}: {f['images']}, {accuracy} of them right")
    for kind in ("style", "source"):
        print(f"{kind:28} {'images':>7} {'digits':>8} {'pairs':>8}")
        for name, f in figures[kind].items():
            print(f"{name:28} {f['images']:>7} {100 * f['digit_accuracy']:>7.1f}% {100 * f['pair_accuracy']:>7.1f}%")


if __name__ == "__main__":
    main()
