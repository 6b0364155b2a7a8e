"""Seconds per round: digitcmp against the plain per-round loop of the reports, in one run, on the same rounds.

The plain loop is what the course reports did: one standard ``nn.Module`` per round (LeNet-style towers, shared or
separate, a 20-64-1 comparison head), mini-batches of 100, Adam 1e-3, ``loss.item()`` every step. Two comparisons:

- training alone: lenet with weight sharing and auxiliary loss, the plain loop against ``train_variant`` (all
  rounds as one batched model), both without per-epoch curves;
- the bench end to end: the four lenet variants with learning curves (training loss and error, validation and test
  error after every epoch). The plain loop measures its curves as the reports did, on every validation and test
  pair; a whole ``digitcmp bench --arch lenet`` process (start-up, training, evaluation, files and plots included)
  records its default curves (``--curves light``: a fixed 100-pair test sample each epoch; ``--curves full`` here runs
  the bench with every pair instead).

Both sides train on identical rounds; the script prints seconds per round, test accuracy (mean ± std) and the
speed-ups, and exits 1 when the end-to-end speed-up is below --min-speedup (when given).

    python benchmarks/speed.py                         # lenet, 10 rounds × 25 epochs, both comparisons
    python benchmarks/speed.py --part training --repeats 3
    python benchmarks/speed.py --part bench --curves full   # the bench's curves on every pair, as the plain loop's
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from digitcmp.config import TrainConfig
from digitcmp.data import PairSet, RoundData, draw_rounds, load_source
from digitcmp.environment import machine
from digitcmp.preprocess import MNIST_MEAN, MNIST_STD
from digitcmp.train import keep_freed_memory, train_variant
from digitcmp.variant import create_variant

BATCH, LR = 100, 1e-3


def plain_tower() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.MaxPool2d(2), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.MaxPool2d(2), nn.ReLU(),
        nn.Flatten(), nn.Linear(256, 200), nn.ReLU(), nn.Linear(200, 10),
    )  # fmt: skip


class PlainLeNet(nn.Module):
    """The reports' model: LeNet towers (one shared, or one per digit) and a 20-64-1 comparison head."""

    def __init__(self, shared: bool) -> None:
        super().__init__()
        self.tower_a = plain_tower()
        self.tower_b = self.tower_a if shared else plain_tower()
        self.head = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 1))

    def forward(self, pairs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (pairs - MNIST_MEAN) / MNIST_STD
        a, b = self.tower_a(x[:, 0:1]), self.tower_b(x[:, 1:2])
        return self.head(torch.cat([a, b], 1)).squeeze(1), torch.stack([a, b], 1)


def error(model: PlainLeNet, pairs: PairSet) -> float:
    model.eval()
    with torch.no_grad():
        wrong = ((model(pairs.inputs)[0] > 0).float() != pairs.targets).float().mean().item()
    model.train()
    return wrong


def plain_round(data: RoundData, epochs: int, shared: bool, aux: float, curves: bool) -> tuple[float, float]:
    """Train one round the plain way (with the bench's per-epoch curves if ``curves``); (seconds, test accuracy)."""
    started = time.perf_counter()
    model = PlainLeNet(shared)
    optimizer = torch.optim.Adam(model.parameters(), LR)
    x, y, c = data.train.inputs, data.train.targets, data.train.classes
    history: dict[str, list[float]] = {"train_loss": [], "train_error": [], "val_error": [], "test_error": []}
    for _ in range(epochs):
        order = torch.randperm(len(y))
        total, wrong = 0.0, 0.0
        for start in range(0, len(y), BATCH):
            idx = order[start : start + BATCH]
            logits, digits = model(x[idx])
            main = F.binary_cross_entropy_with_logits(logits, y[idx])
            extra = F.cross_entropy(digits[:, 0], c[idx, 0]) + F.cross_entropy(digits[:, 1], c[idx, 1])
            loss = (main + aux * extra) / (1 + aux)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
            wrong += ((logits.detach() > 0).float() != y[idx]).sum().item()
        if curves:
            history["train_loss"].append(total / len(y))
            history["train_error"].append(wrong / len(y))
            history["val_error"].append(error(model, data.val))
            history["test_error"].append(error(model, data.test))
    accuracy = 1 - error(model, data.test)
    return time.perf_counter() - started, accuracy


def mean_std(values: list[float]) -> list[float]:
    return [round(statistics.fmean(values), 4), round(statistics.stdev(values), 4) if len(values) > 1 else 0.0]


def training_alone(data: list[RoundData], epochs: int, repeat: int) -> dict:
    """lenet with weight sharing and auxiliary loss, no curves: the plain loop against train_variant."""
    torch.manual_seed(repeat)
    plain = [plain_round(r, epochs, shared=True, aux=1.0, curves="off") for r in data]
    variant = create_variant("lenet", True, 1.0)
    result = train_variant(variant, data, TrainConfig(epochs=epochs, curves="off"), torch.device("cpu"), seed=repeat)
    return {
        "plain_seconds_per_round": statistics.fmean(s for s, _ in plain),
        "digitcmp_seconds_per_round": result.summary()["seconds_per_round"],
        "plain_test_accuracy": mean_std([a for _, a in plain]),
        "digitcmp_test_accuracy": mean_std([r.test_accuracy for r in result.rounds]),
    }


def bench_end_to_end(data: list[RoundData], rounds: int, epochs: int, repeat: int, curves: str) -> dict:
    """The four lenet variants with curves: the plain loop against a whole 'digitcmp bench --arch lenet'."""
    torch.manual_seed(repeat)
    plain = [plain_round(r, epochs, shared, aux, curves=True) for shared in (False, True) for aux in (0.0, 1.0)
             for r in data]  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        flags = ["--arch", "lenet", "--rounds", str(rounds), "--epochs", str(epochs), "--seed", str(repeat),
                 "--curves", curves]  # fmt: skip
        command = [sys.executable, "-m", "digitcmp", "bench", *flags, "--device", "cpu", "--out", folder, "-q"]
        started = time.perf_counter()
        environ = {key: value for key, value in os.environ.items() if key != "DIGITCMP_DATA"}  # bundled digits
        subprocess.run(command, check=True, capture_output=True, env=environ)
        seconds = time.perf_counter() - started
        document = json.loads((Path(folder) / "results.json").read_text())
    accuracies = [r["test_accuracy"] for v in document["variants"] for r in v["rounds"]]
    return {
        "plain_seconds_per_round": statistics.fmean(s for s, _ in plain),
        "digitcmp_seconds_per_round": seconds / (4 * rounds),
        "plain_test_accuracy": mean_std([a for _, a in plain]),
        "digitcmp_test_accuracy": mean_std(accuracies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("training", "bench", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=1, help="measure each side this many times; report medians")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for both sides")
    parser.add_argument("--curves", choices=("light", "full"), default="light", help="the bench's learning curves")
    parser.add_argument("--min-speedup", type=float, help="exit 1 when the end-to-end speed-up is below this")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # the same allocator for both sides (train_variant would set it only after the plain loop)
    chosen = ["training", "bench"] if args.part == "both" else [args.part]
    figures: dict = {"rounds": args.rounds, "epochs": args.epochs, "threads": args.threads, "curves": args.curves,
                     "torch_version": str(torch.__version__)}  # fmt: skip
    for part in chosen:
        runs = []
        for repeat in range(args.repeats):
            # The bench's rounds for its seed: 1,000 training pairs of which 10% validate, 1,000 test pairs.
            data = draw_rounds(load_source(None), args.rounds, 1000, 1000, 0.1, seed=repeat)
            run = (
                training_alone(data, args.epochs, repeat)
                if part == "training"
                else bench_end_to_end(data, args.rounds, args.epochs, repeat, args.curves)
            )
            runs.append(run)
            print(f"{part}, repeat {repeat}: plain {run['plain_seconds_per_round']:.2f} s/round, digitcmp "
                  f"{run['digitcmp_seconds_per_round']:.2f} s/round", file=sys.stderr)  # fmt: skip
        ratios = [r["plain_seconds_per_round"] / r["digitcmp_seconds_per_round"] for r in runs]
        figures[part] = {
            "plain_seconds_per_round": round(statistics.median(r["plain_seconds_per_round"] for r in runs), 3),
            "digitcmp_seconds_per_round": round(statistics.median(r["digitcmp_seconds_per_round"] for r in runs), 3),
            "speedup": round(statistics.median(ratios), 2),
            "speedups": [round(x, 2) for x in ratios],
            "plain_test_accuracy": runs[-1]["plain_test_accuracy"],
            "digitcmp_test_accuracy": runs[-1]["digitcmp_test_accuracy"],
        }
    if args.json:
        print(json.dumps({**figures, "environment": machine()}, indent=2))
    else:
        titles = {"training": "training alone (lenet, ws + aux)", "bench": "bench end to end (4 lenet variants)"}
        for part in chosen:
            f = figures[part]
            print(f"{titles[part]}:")
            for side in ("plain", "digitcmp"):
                mean, std = f[f"{side}_test_accuracy"]
                print(f"  {side:9}: {f[f'{side}_seconds_per_round']:.2f} s/round, test accuracy "
                      f"{100 * mean:.1f} ± {100 * std:.1f}%")  # fmt: skip
            print(f"  speed-up : {f['speedup']:.2f}× (median of {args.repeats})")
    bench = figures.get("bench")
    if args.min_speedup is not None and bench and bench["speedup"] < args.min_speedup:
        sys.exit(f"error: end-to-end speed-up {bench['speedup']:.2f}× is below --min-speedup {args.min_speedup}")


if __name__ == "__main__":
    main()
