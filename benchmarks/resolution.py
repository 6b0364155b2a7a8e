"""Does a network that sees the 28×28 digit read real handwriting better than the same network on its 14×14 pooling?

The study's input (and every digitcmp model's) is the 2×2 average pool of the MNIST-style 28×28 digit. Pooling
halves the resolution: a thin stroke that nearly touches another, such as a 6 whose top curls back towards its
loop, can merge with it at 14×14. This trains one digit classifier per resolution and seed on the 60,000 MNIST
training digits, the same network, augmentations (rotation, scale, shear, shift, thicker or thinner strokes, all
applied at 28×28 before any pooling) and schedule for both, and scores each on the MNIST test digits and on every
style of a folder of real handwriting prepared exactly as `digitcmp predict` prepares it.

The network: two 3×3 convolutions of 16 channels (at 28×28 followed by a 2×2 max-pool, so both resolutions go on
at 14×14), then two stages of two 3×3 convolutions (32, 64 channels) and a 2×2 max-pool each, a hidden layer of
256 units, dropout 0.3 and ten outputs; batch norm after every convolution. AdamW with a one-cycle schedule peaking
at 3e-3, weight decay 5e-4, batches of 128, label smoothing 0.05.

    python benchmarks/resolution.py FOLDER --data-dir mnist-full                # 2 seeds, 12 epochs (about 25 min)
    python benchmarks/resolution.py FOLDER --data-dir mnist-full --seeds 3 --json

FOLDER holds images of single handwritten digits and a `labels.csv` (`path,digit,source,style`), as for
benchmarks/realworld.py.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from realworld import read_labels
from torch import nn

from digitcmp.data import load_source
from digitcmp.environment import machine
from digitcmp.errors import DigitcmpError
from digitcmp.predict import load_digit
from digitcmp.preprocess import MNIST_MEAN, MNIST_STD

RESOLUTIONS = (28, 14)
BATCH = 128


def conv(inputs: int, outputs: int) -> list[nn.Module]:
    return [nn.Conv2d(inputs, outputs, 3, padding=1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU()]


def network(resolution: int) -> nn.Sequential:
    """The same layers for both resolutions; at 28×28 the first stage ends in a max-pool down to 14×14."""
    stem = [*conv(1, 16), *conv(16, 16), *([nn.MaxPool2d(2)] if resolution == 28 else [])]
    return nn.Sequential(
        *stem,
        *conv(16, 32),
        *conv(32, 32),
        nn.MaxPool2d(2),
        *conv(32, 64),
        *conv(64, 64),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 3 * 3, 256),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(256, 10),
    )


def network_input(digits: torch.Tensor, resolution: int) -> torch.Tensor:
    """28×28 digits N×1×28×28 in [0, 1] → the network's input: normalised, pooled 2×2 for the 14×14 network."""
    normalised = (digits - MNIST_MEAN) / MNIST_STD
    return normalised if resolution == 28 else F.avg_pool2d(normalised, 2)


def augment(digits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each 28×28 digit turned (±12°), scaled (0.85-1.1), sheared (±0.2) and shifted (±2 px); a quarter of them
    with strokes up to half a dilation thicker, a quarter up to half an erosion thinner."""
    n = len(digits)

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, *shape, generator=generator)

    angle, scale, shear = uniform(-math.radians(12), math.radians(12)), uniform(0.85, 1.1), uniform(-0.2, 0.2)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = angle.cos() / scale, -angle.sin() / scale + shear
    theta[:, 1, 0], theta[:, 1, 1] = angle.sin() / scale, angle.cos() / scale
    theta[:, :, 2] = uniform(-2 / 14, 2 / 14, 2)  # ±2 pixels of 28, in affine_grid's [-1, 1] coordinates
    grid = F.affine_grid(theta, list(digits.shape), align_corners=False)
    moved = F.grid_sample(digits, grid, align_corners=False)
    choice, weight = uniform(0, 1)[:, None, None, None], uniform(0, 0.5)[:, None, None, None]
    thicker = moved * (1 - weight) + F.max_pool2d(moved, 3, 1, 1) * weight
    thinner = moved * (1 - weight) - F.max_pool2d(-moved, 3, 1, 1) * weight
    return torch.where(choice < 0.25, thicker, torch.where(choice > 0.75, thinner, moved))


def train(images: torch.Tensor, labels: torch.Tensor, resolution: int, epochs: int, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    model = network(resolution)
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(model.parameters(), 3e-3, weight_decay=5e-4)
    steps = epochs * math.ceil(len(images) / BATCH)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, 3e-3, total_steps=steps)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(images), BATCH):
            batch = order[start : start + BATCH]
            logits = model(network_input(augment(images[batch], generator), resolution))
            loss = F.cross_entropy(logits, labels[batch], label_smoothing=0.05)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
    return model.eval()


@torch.no_grad()
def read(model: nn.Sequential, images: torch.Tensor, resolution: int) -> torch.Tensor:
    return torch.cat([model(network_input(chunk, resolution)).argmax(1) for chunk in images.split(1000)])


def as_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 N×28×28 → float32 N×1×28×28 in [0, 1]."""
    return torch.tensor(images, dtype=torch.float32).div(255).unsqueeze(1)


def real_digits(folder: Path) -> tuple[list[dict], torch.Tensor, list[bool]]:
    """Every labelled image prepared as predict prepares it; an image predict refuses stays a wrong read."""
    rows = read_labels(folder)
    images, usable = [], []
    for row in rows:
        try:
            images.append(load_digit(folder / row["path"]).image)
            usable.append(True)
        except DigitcmpError:
            images.append(np.zeros((28, 28), np.uint8))
            usable.append(False)
    return rows, as_tensor(np.stack(images)), usable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="real handwriting: images and labels.csv")
    where = "a folder with the MNIST training and test files (default: $DIGITCMP_DATA)"
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("DIGITCMP_DATA"), help=where)
    parser.add_argument("--seeds", type=int, default=2, help="networks trained per resolution")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    try:
        source = load_source(args.data_dir, train_digits="mnist")
    except DigitcmpError as exc:
        parser.error(str(exc))
    images, labels = as_tensor(source.train.images), torch.from_numpy(source.train.labels.astype(np.int64))
    test_images, test_labels = as_tensor(source.test.images), torch.from_numpy(source.test.labels.astype(np.int64))
    rows, real, usable = real_digits(args.folder)
    truth = torch.tensor([row["digit"] for row in rows])
    runs = []
    for seed in range(args.seeds):
        for resolution in RESOLUTIONS:
            started = time.perf_counter()
            model = train(images, labels, resolution, args.epochs, seed)
            seconds = time.perf_counter() - started
            right = (read(model, real, resolution) == truth).tolist()
            styles: dict[str, list[int]] = defaultdict(lambda: [0, 0])
            for row, ok, kept in zip(rows, right, usable, strict=True):
                styles[row["style"]][0] += ok and kept
                styles[row["style"]][1] += 1
            mnist = (read(model, test_images, resolution) == test_labels).float().mean().item()
            runs.append(
                {
                    "resolution": resolution,
                    "seed": seed,
                    "training_s": round(seconds),
                    "mnist_test": mnist,
                    "styles": {style: {"right": r, "images": n} for style, (r, n) in styles.items()},
                }
            )
            if not args.json:
                read_styles = "  ".join(f"{style} {r}/{n}" for style, (r, n) in styles.items())
                print(
                    f"{resolution}×{resolution} seed {seed}: MNIST test {100 * mnist:.2f}%  {read_styles}  "
                    f"({seconds:.0f} s)",
                    flush=True,
                )
    figures = {"epochs": args.epochs, "training_digits": len(labels), "folder": str(args.folder), "runs": runs}
    if args.json:
        print(json.dumps({**figures, "environment": machine()}, indent=2))
        return
    for resolution in RESOLUTIONS:
        mine = [run for run in runs if run["resolution"] == resolution]
        styles = "  ".join(
            f"{style} {statistics.mean(run['styles'][style]['right'] for run in mine):.1f}"
            for style in mine[0]["styles"]
        )
        mnist = statistics.mean(run["mnist_test"] for run in mine)
        print(f"{resolution}×{resolution} mean of {len(mine)}: MNIST test {100 * mnist:.2f}%  {styles}")


if __name__ == "__main__":
    main()
