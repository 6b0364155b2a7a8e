"""Where one batched training step spends its time: torch.profiler over optimisation steps of R members.

Complements speed.py (which says how fast) with why: the operators of a step of one variant, heaviest first, and
their shares of the step. Random pairs suffice, since the time of a step does not depend on the pixels.

    python benchmarks/step_profile.py                       # lenet, weight sharing, aux loss, 10 members
    python benchmarks/step_profile.py --arch vgg4 --members 6 --rows 15
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from digitcmp.config import TrainConfig
from digitcmp.model.losses import comparison_loss
from digitcmp.model.network import ComparisonNet
from digitcmp.train import keep_freed_memory, make_optimizer
from digitcmp.variant import create_variant


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="lenet")
    parser.add_argument("--members", type=int, default=10, help="rounds in one batched model")
    parser.add_argument("--steps", type=int, default=20, help="profiled steps (after 5 warm-up steps)")
    parser.add_argument("--rows", type=int, default=12, help="operators to list")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as train_members does
    variant = create_variant(args.arch, True, 1.0)
    config = TrainConfig.for_arch(args.arch)
    model = ComparisonNet(variant, args.members).train()
    optimizer, _ = make_optimizer(model, config, args.steps + 5)
    shape = (model.networks, config.batch_size)
    pairs, targets = torch.rand(*shape, 2, 14, 14), torch.randint(0, 2, shape).float()
    classes = torch.randint(0, 10, (*shape, 2))

    def step() -> None:
        logits, digits = model.single_view(pairs)
        optimizer.zero_grad(set_to_none=True)
        comparison_loss(logits, digits, targets, classes, variant.aux_weight, config.label_smoothing).sum().backward()
        optimizer.step()

    for _ in range(5):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    per_step = total / 1000 / args.steps
    print(f"{variant.name}, {args.members} members × {config.batch_size} pairs, {args.threads} threads: ", end="")
    print(f"{per_step:.1f} ms per step, {per_step / args.members:.1f} ms per member")
    for event in events[: args.rows]:
        share = 100 * event.self_cpu_time_total / total
        print(f"{share:5.1f}%  {event.self_cpu_time_total / 1000 / args.steps:7.2f} ms/step  {event.key}")


if __name__ == "__main__":
    main()
