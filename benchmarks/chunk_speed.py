"""Milliseconds per network-step of batched training as the number of networks in one model grows.

digitcmp trains many networks (rounds × ensemble) as the members of one batched model. On a GPU more members
means better use of the device; on a few CPU cores there is an optimum, after which every network costs more
(cache pressure). This measures it for one variant, in one run, so the numbers compare with each other: one
epoch of real training (the architecture's recipe) per configuration, several repeats, medians.

    python benchmarks/chunk_speed.py                          # the default variant (vgg4, one network per round)
    python benchmarks/chunk_speed.py --arch lenet --rounds 1,5,10,20
    python benchmarks/chunk_speed.py --ensemble 2 --rounds 1,2,4,6,10  # two networks per round
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from digitcmp.config import TrainConfig
from digitcmp.data import draw_rounds, load_source
from digitcmp.train import train_members
from digitcmp.variant import create_variant


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="vgg4")
    parser.add_argument("--ensemble", type=int, default=1, help="networks per round")
    parser.add_argument("--rounds", default="1,2,4,8,12,16", help="rounds per model, a comma list")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    counts = [int(r) for r in args.rounds.split(",")]
    data = draw_rounds(load_source(None), max(counts), 1000, 1000, 0.0, seed=0)
    variant = create_variant(args.arch, True, 1.0, ensemble=args.ensemble)
    config = TrainConfig.for_arch(args.arch, epochs=1, curves="off")
    pairs = len(data[0].train) * (2 if config.swap else 1)
    steps = math.ceil(pairs / config.batch_size)
    cpu = torch.device("cpu")
    print(f"{variant.name}: 1 epoch = {steps} steps of {config.batch_size} pairs per network, {args.threads} threads")
    print(f"{'rounds':>6} {'networks':>8} {'ms/step':>8} {'ms/network-step':>16}")
    for count in counts:
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            train_members(variant, data[:count], config, cpu)
            times.append((time.perf_counter() - started) / steps)
        step = statistics.median(times)
        networks = count * variant.ensemble
        print(f"{count:>6} {networks:>8} {1000 * step:>8.1f} {1000 * step / networks:>16.2f}")


if __name__ == "__main__":
    main()
