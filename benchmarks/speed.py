"""Seconds per round: digitcmp's batched training against a plain per-round loop, in one run, same data.

The plain loop is what the course reports did: one standard ``nn.Module`` per round (LeNet-style siamese towers,
auxiliary loss), mini-batches of 100, Adam, ``loss.item()`` every step. digitcmp trains the same variant with the
same hyper-parameters, all rounds together. Both see identical rounds; the script prints seconds per round, test
accuracy (mean ± std) and the speed-up (and exits 1 below --min-speedup, when given).

    python benchmarks/speed.py                      # lenet, weight sharing, aux loss, 10 rounds × 25 epochs
    python benchmarks/speed.py --rounds 4 --epochs 10 --repeats 1   # a shorter check
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from digitcmp.config import TrainConfig
from digitcmp.data import RoundData, draw_rounds, load_source
from digitcmp.preprocess import MNIST_MEAN, MNIST_STD
from digitcmp.train import keep_freed_memory, train_variant
from digitcmp.variant import create_variant


class PlainLeNet(nn.Module):
    """The reports' model: one LeNet tower shared by both digits, a 20-64-1 comparison head."""

    def __init__(self) -> None:
        super().__init__()
        self.tower = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.MaxPool2d(2), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.MaxPool2d(2), nn.ReLU(),
            nn.Flatten(), nn.Linear(256, 200), nn.ReLU(), nn.Linear(200, 10),
        )  # fmt: skip
        self.head = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 1))

    def forward(self, pairs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (pairs - MNIST_MEAN) / MNIST_STD
        a, b = self.tower(x[:, 0:1]), self.tower(x[:, 1:2])
        return self.head(torch.cat([a, b], 1)).squeeze(1), torch.stack([a, b], 1)


def plain_round(data: RoundData, epochs: int, batch: int, lr: float, aux: float) -> tuple[float, float]:
    """Train one round the plain way; return (seconds, test accuracy)."""
    started = time.perf_counter()
    model = PlainLeNet()
    optimizer = torch.optim.Adam(model.parameters(), lr)
    x, y, c = data.train.inputs, data.train.targets, data.train.classes
    for _ in range(epochs):
        order = torch.randperm(len(y))
        total = 0.0
        for start in range(0, len(y), batch):
            idx = order[start : start + batch]
            logits, digits = model(x[idx])
            main = F.binary_cross_entropy_with_logits(logits, y[idx])
            extra = F.cross_entropy(digits[:, 0], c[idx, 0]) + F.cross_entropy(digits[:, 1], c[idx, 1])
            loss = (main + aux * extra) / (1 + aux)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
    model.eval()
    with torch.no_grad():
        accuracy = ((model(data.test.inputs)[0] > 0).float() == data.test.targets).float().mean().item()
    return time.perf_counter() - started, accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=3, help="measure each side this many times; report medians")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for both sides")
    parser.add_argument("--min-speedup", type=float, help="exit 1 below this speed-up (a CI floor; unset: report)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # the same allocator for both sides (train_variant would set it only after the plain loop)
    data = draw_rounds(load_source(None), args.rounds, 1000, 1000, 0.0, seed=0)
    variant = create_variant("lenet", True, 1.0, head="mlp")
    config = TrainConfig(epochs=args.epochs, val_fraction=0.0, curves=False)
    plain_times, batched_times, plain_acc, batched_acc = [], [], [], []
    for repeat in range(args.repeats):
        torch.manual_seed(repeat)
        rounds = [plain_round(r, args.epochs, 100, 1e-3, 1.0) for r in data]
        plain_times.append(statistics.fmean(s for s, _ in rounds))
        plain_acc = [a for _, a in rounds]
        result = train_variant(variant, data, config, torch.device("cpu"), seed=repeat)
        batched_times.append(result.summary()["seconds_per_round"])
        batched_acc = [r.test_accuracy for r in result.rounds]
        print(
            f"repeat {repeat}: plain {plain_times[-1]:.2f} s/round, batched {batched_times[-1]:.2f} s/round",
            file=sys.stderr,
        )
    plain, batched = statistics.median(plain_times), statistics.median(batched_times)
    figures = {
        "variant": variant.to_dict(),
        "rounds": args.rounds,
        "epochs": args.epochs,
        "threads": args.threads,
        "torch_version": str(torch.__version__),
        "plain_seconds_per_round": round(plain, 3),
        "batched_seconds_per_round": round(batched, 3),
        "speedup": round(plain / batched, 2),
        "plain_test_accuracy": [round(statistics.fmean(plain_acc), 4), round(statistics.stdev(plain_acc), 4)],
        "batched_test_accuracy": [round(statistics.fmean(batched_acc), 4), round(statistics.stdev(batched_acc), 4)],
    }
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for label, seconds, key in (("plain loop", plain, "plain"), ("digitcmp", batched, "batched")):
            mean, std = figures[f"{key}_test_accuracy"]
            print(f"{label:12} : {seconds:.2f} s/round, test accuracy {100 * mean:.1f} ± {100 * std:.1f}%")
        print(f"speed-up     : {plain / batched:.2f}× (median of {args.repeats})")
    if args.min_speedup is not None and plain / batched < args.min_speedup:
        sys.exit(f"error: speed-up {plain / batched:.2f}× is below --min-speedup {args.min_speedup}")


if __name__ == "__main__":
    main()
