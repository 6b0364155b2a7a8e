"""Training: R rounds of one variant trained together as the R members of one model.

Each member sees its own round's pairs, its own initialisation and its own optimiser state (Adam, AdamW and SGD
act element-wise), and the loss is the sum of the members' losses, so every member's gradients are exactly those it
would get alone: batching changes the speed, not what is computed. Data stays on the device and losses are
accumulated there; the host reads them once per epoch.
"""

from __future__ import annotations

import ctypes
import functools
import math
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from . import rng
from .augment import augment
from .calibration import calibrate
from .config import LIGHT_CURVE_PAIRS, Curves, TrainConfig
from .data import DigitSource, PairSet, RoundData, draw_rounds
from .environment import machine
from .errors import DigitcmpError
from .files import write_json
from .model.checkpoint import save_checkpoint
from .model.losses import comparison_loss, uniform_loss
from .model.network import ComparisonNet, count_parameters, member_state
from .nondigits import nondigits
from .preprocess import model_digits
from .schema import SCHEMA_VERSION
from .variant import Variant

# On the CPU, a batched model of more networks than this runs slower per network (vgg4 on 2 cores: 34 ms per
# network-step at 12 networks, 47 ms at 20; benchmarks/chunk_speed.py, docs/performance.md), so rounds go in chunks.
CPU_NETWORKS = 12
# Pairs per evaluation forward on the CPU, over all networks and test-time views: forwards this small keep their
# activations in the caches (lenet's learning-curve evaluation of 10 rounds' 1,000 test pairs: 108 ms at 200 pairs
# a forward, 123 ms at 400, 138 ms at 800; vgg4 evaluates 2-2.5× faster than in forwards of 1,000 pairs per
# network; docs/performance.md). CUDA takes far larger forwards, but not unbounded ones: 12 vgg4 networks × 37
# test-time views of 1,000 pairs would hold tens of gigabytes of activations at once.
CPU_EVAL_PAIRS = 200
CUDA_EVAL_PAIRS = 20_000
# With --nondigits: the pictures of non-digits generated for a run (at most; twice its training pairs if fewer), and
# how many non-digit pairs join each batch, as a share of its pairs.
NONDIGIT_POOL = 10_000
NONDIGIT_SHARE = 0.25
# glibc mallopt parameters (malloc.h): the heap size above which free() returns memory to the OS, and how many
# blocks may be served by mmap (0: none, so large blocks come from the heap too).
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4


@dataclass
class RoundResult:
    """One round's final metrics (last epoch) and per-epoch curves."""

    round: int
    train_accuracy: float
    val_accuracy: float | None
    test_accuracy: float
    digit_accuracy: float | None  # None when training does not name the digits (Variant.names_digits)
    seconds: float
    curves: dict[str, list[float | None]] = field(default_factory=dict)

    @property
    def best_epoch_test_accuracy(self) -> float | None:
        """The best test accuracy of any epoch (single view, from the curves): what a report that picked its
        epoch by the test set would publish. Optimistic; never used to choose anything."""
        errors = [e for e in self.curves.get("test_error", []) if e is not None]
        return round(1 - min(errors), 6) if errors else None


@dataclass
class RunResult:
    """All rounds of one variant, plus the weights of the round with the best validation accuracy."""

    variant: Variant
    params: int
    config: TrainConfig
    device: str
    rounds: list[RoundResult]
    best_round: int
    best_state: dict[str, torch.Tensor]

    def mean_std(self, metric: str) -> tuple[float, float]:
        values = [getattr(r, metric) for r in self.rounds]
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    def summary(self) -> dict[str, float | None]:
        test_mean, test_std = self.mean_std("test_accuracy")
        vals = [r.val_accuracy for r in self.rounds if r.val_accuracy is not None]
        return {
            "test_accuracy_mean": test_mean,
            "test_accuracy_std": test_std,
            "train_accuracy_mean": self.mean_std("train_accuracy")[0],
            "val_accuracy_mean": statistics.fmean(vals) if vals else None,
            "digit_accuracy_mean": self.mean_std("digit_accuracy")[0] if self.variant.names_digits else None,
            "seconds_per_round": self.mean_std("seconds")[0],
            **self.best_epoch_summary(),
        }

    def best_epoch_summary(self) -> dict[str, float]:
        """Mean ± std of the best test epoch's accuracy, when the run recorded full curves (else nothing: a light
        curve's sample would make a different figure)."""
        best = [r.best_epoch_test_accuracy for r in self.rounds]
        if self.config.curves != Curves.full or None in best or not best:
            return {}
        spread = statistics.stdev(best) if len(best) > 1 else 0.0
        return {"best_epoch_test_accuracy_mean": statistics.fmean(best), "best_epoch_test_accuracy_std": spread}

    def save_best(self, path: Path, **context: object) -> Path:
        """Save the best round's weights with this run's summary (not its per-round curves, only how many rounds
        it averages) and ``context``."""
        meta = {key: value for key, value in self.to_dict().items() if key != "rounds"}
        return save_checkpoint(
            path, self.best_state, self.variant, {**meta, "round_count": len(self.rounds), **context}
        )

    def to_dict(self) -> dict:
        return {
            "variant": self.variant.to_dict(),
            "params": self.params,
            "config": self.config.to_dict(),
            "device": self.device,
            "rounds": [asdict(r) for r in self.rounds],
            "summary": self.summary(),
            "best_round": self.best_round,
        }


def rounded(*values: float | torch.Tensor | None) -> list[float | None]:
    """Plain floats rounded to 6 decimals for results files (None stays None)."""
    return [None if v is None else round(float(v), 6) for v in values]


def environment(device: str) -> dict[str, str]:
    """What every figure needs beside it to be comparable: the machine (digitcmp.environment), torch, and the GPU
    where it trained on one."""
    gpu = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else "none"
    return {
        **machine(),
        "torch_version": str(torch.__version__),
        "device": device,
        "gpu": gpu,
        "torch_threads": str(torch.get_num_threads()),
    }


def resolve_device(name: str) -> torch.device:
    """Map auto|cpu|cuda[:N] to a device, refusing CUDA where there is none."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DigitcmpError(
                f"--device {name} asked for CUDA, but torch {torch.__version__} sees no GPU; use --device cpu"
            )
        return torch.device(name)
    raise DigitcmpError(f"unknown device '{name}'; choose auto, cpu or cuda")


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc reuse freed activation memory instead of returning it to the OS; True if it applied.

    Blocks above 32 MB always come from a fresh mmap, and every step of a batched model allocates several (lenet's
    first stage at 10 rounds: 37 MB per tensor), so each step page-faulted ~17,000 times and zero-filled them in the
    kernel: a quarter of lenet's batched step on 2 cores (docs/performance.md). Process-wide and idempotent; a no-op
    where the C library is not glibc.
    """
    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL("libc.so.6")
    return bool(libc.mallopt(M_MMAP_MAX, 0) and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


def stack(pairs: list[PairSet], device: torch.device) -> PairSet:
    """Stack equally sized pair sets of several rounds into E×N tensors on the device."""
    return PairSet(*(torch.stack([getattr(p, f) for p in pairs]).to(device) for f in ("inputs", "targets", "classes")))


def stack_rounds(rounds: list[RoundData], device: torch.device) -> tuple[PairSet, PairSet | None, PairSet]:
    """The training, validation (None without a split) and test pairs of several rounds, stacked E×N."""
    val = stack([r.val for r in rounds], device) if rounds[0].val is not None else None
    return stack([r.train for r in rounds], device), val, stack([r.test for r in rounds], device)


def add_swapped(pairs: PairSet) -> PairSet:
    """Append every pair with its two digits swapped; the target follows the classes (equal digits stay 1)."""
    classes = pairs.classes.flip(-1)
    return PairSet(
        torch.cat([pairs.inputs, pairs.inputs.flip(-3)], dim=-4),
        torch.cat([pairs.targets, (classes[..., 0] <= classes[..., 1]).float()], dim=-1),
        torch.cat([pairs.classes, classes], dim=-2),
    )


@torch.no_grad()
def outputs(model: ComparisonNet, pairs: PairSet, tta: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Every member's comparison logits (E×N) and digit logits (E×N×2×10) for its pairs, in eval mode, with the
    variant's test-time averaging; ``tta=False`` forces the single view. Forwards of a bounded size."""
    was_training = model.training
    model.eval()
    per_forward = CPU_EVAL_PAIRS if pairs.targets.device.type == "cpu" else CUDA_EVAL_PAIRS
    chunk = max(1, per_forward // (model.networks * model.views(tta)))
    parts = [
        model(pairs.inputs[:, start : start + chunk], tta=tta) for start in range(0, pairs.targets.shape[1], chunk)
    ]
    model.train(was_training)
    return torch.cat([logits for logits, _ in parts], 1), torch.cat([digits for _, digits in parts], 1)


def evaluate(model: ComparisonNet, pairs: PairSet, tta: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Comparison and digit accuracy per member (E each), as ``outputs`` reads the pairs (``tta=False`` for the
    per-epoch curves, where the test-time views would cost more than the training itself)."""
    logits, digits = outputs(model, pairs, tta)
    correct = ((logits > 0).float() == pairs.targets).float().mean(1)
    return correct, (digits.argmax(-1) == pairs.classes).float().mean((1, 2))


def curve_pairs(pairs: PairSet, curves: Curves) -> PairSet:
    """The pairs a learning curve is measured on: all of them, or (light) the first ``LIGHT_CURVE_PAIRS``, a fixed
    random sample since pairs are drawn at random. Only the curves use it: final figures use every pair."""
    if curves != Curves.light or pairs.targets.shape[1] <= LIGHT_CURVE_PAIRS:
        return pairs
    return PairSet(*(t[:, :LIGHT_CURVE_PAIRS] for t in (pairs.inputs, pairs.targets, pairs.classes)))


def nondigit_pool(config: TrainConfig, variant: Variant, pairs: int, seed: int, device: torch.device):
    """The non-digits (P×S×S, as the model reads digits) a run shows its digit head, or None where --nondigits is
    off or the variant names no digits; generated from the run's seed, so every round of it sees the same pictures."""
    if not config.nondigits or not variant.names_digits:
        return None
    return model_nondigits(min(NONDIGIT_POOL, 2 * pairs), seed, variant.resolution.size).to(device)


@functools.cache
def model_nondigits(count: int, seed: int, size: int) -> torch.Tensor:
    """The run's non-digits as the model reads digits, drawn once per process (seconds for a full pool) and shared
    by every chunk of rounds and every cell of a bench that asks for the same ones."""
    return torch.from_numpy(model_digits(nondigits(count, rng.derive_seed(seed, 0, 0, "nondigits")), size))


def with_nondigits(inputs: torch.Tensor, pool: torch.Tensor | None, generators: list[torch.Generator]) -> torch.Tensor:
    """A batch of pairs (networks × B × 2 × S × S) with NONDIGIT_SHARE·B pairs of random non-digits appended, each
    network's own draw."""
    if pool is None:
        return inputs
    extra = math.ceil(inputs.shape[1] * NONDIGIT_SHARE)
    picks = torch.stack([torch.randint(len(pool), (2 * extra,), generator=g) for g in generators])
    return torch.cat([inputs, pool[picks.to(pool.device)].unflatten(1, (extra, 2))], dim=1)


def make_optimizer(model: ComparisonNet, config: TrainConfig, steps: int):
    """The optimiser (and one-cycle schedule) of a batched model. Fused kernels update every parameter in one
    pass per tensor: element-wise, so each member still gets exactly its own update, 3-5% faster a step."""
    params = model.parameters()
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            params, config.lr, momentum=config.momentum, weight_decay=config.weight_decay, fused=True
        )
    else:
        kind = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        optimizer = kind(params, config.lr, weight_decay=config.weight_decay, fused=True)
    if config.schedule == "onecycle":
        return optimizer, torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=steps)
    return optimizer, None


def train_members(
    variant: Variant,
    rounds: list[RoundData],
    config: TrainConfig,
    device: torch.device,
    seed: int = 0,
    on_epoch: Callable[[int], None] | None = None,
) -> tuple[ComparisonNet, list[dict[str, list[float | None]]]]:
    """Train one member per round (its pairs stacked E×N on the device), all at once; return the model and each
    member's per-epoch curves (training loss and error averaged over an ensemble's networks).

    Every random draw of round r's networks (initial parameters, batch order, augmentation, dropout masks) comes
    from generators of (seed, r) alone (digitcmp.rng), so a round trains the same in any grouping, up to float
    rounding (convolution kernels round differently for different numbers of networks)."""
    keep_freed_memory()
    train, val, test = stack_rounds(rounds, device)
    fit = add_swapped(train) if config.swap else train
    members, n = fit.targets.shape
    k = variant.ensemble
    if k > 1:  # every network of a member's ensemble sees that member's pairs, in its own order and shifts
        fit = PairSet(*(t.repeat_interleave(k, dim=0) for t in (fit.inputs, fit.targets, fit.classes)))
    indices = [r.index for r in rounds]
    streams = {
        name: rng.network_generators(seed, indices, k, name) for name in ("order", "augment", "dropout", "nondigits")
    }
    pool = nondigit_pool(config, variant, n, seed, device)
    model = ComparisonNet(variant, members, rng.network_generators(seed, indices, k, "init")).to(device).train()
    model.use_dropout_generators(streams["dropout"])
    steps_per_epoch = math.ceil(n / config.batch_size)
    optimizer, scheduler = make_optimizer(model, config, config.epochs * steps_per_epoch)
    member_index = torch.arange(model.networks, device=device)[:, None]
    history: dict[str, list[torch.Tensor]] = {"train_loss": [], "train_error": [], "val_error": [], "test_error": []}
    test_curve = curve_pairs(test, config.curves)
    for _ in range(config.epochs):
        order = epoch_order(streams["order"], n).to(device)
        loss_sum = torch.zeros(model.networks, device=device)
        wrong = torch.zeros(model.networks, device=device)
        for start in range(0, n, config.batch_size):
            batch = member_index, order[:, start : start + config.batch_size]
            inputs = augment(with_nondigits(fit.inputs[batch], pool, streams["nondigits"]), config, streams["augment"])
            targets = fit.targets[batch]
            loss, logits = step(model, optimizer, scheduler, inputs, targets, fit.classes[batch], config)
            with torch.no_grad():
                loss_sum += loss.detach() * targets.shape[1]
                wrong += ((logits.detach() > 0).float() != targets).sum(1)
        history["train_loss"].append((loss_sum / n).view(members, k).mean(1))
        history["train_error"].append((wrong / n).view(members, k).mean(1))
        if config.curves != Curves.off:
            if val is not None and config.curves == Curves.full:
                history["val_error"].append(1 - evaluate(model, val, tta=False)[0])
            history["test_error"].append(1 - evaluate(model, test_curve, tta=False)[0])
        if on_epoch is not None:
            on_epoch(members)
    model.use_dropout_generators(None)
    curves = {
        key: [rounded(*row) for row in torch.stack(values).T] if values else [[]] * members
        for key, values in history.items()
    }
    return model, [{key: curves[key][m] for key in curves} for m in range(members)]


def step(
    model: ComparisonNet,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    classes: torch.Tensor,
    config: TrainConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step of every network on its batch; returns each network's loss and the logits. Pairs of
    ``inputs`` beyond the targets are non-digits (``with_nondigits``), which the digit head learns not to name."""
    logits, digits = model.single_view(inputs)
    real = targets.shape[1]
    loss = comparison_loss(logits[:, :real], digits[:, :real], targets, classes, model.variant.aux_weight,
                           config.label_smoothing, config.all_pairs, config.loss == "average")  # fmt: skip
    if inputs.shape[1] > real:
        loss = loss + config.nondigits * uniform_loss(digits[:, real:])
    optimizer.zero_grad(set_to_none=True)
    loss.sum().backward()
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return loss, logits[:, :real]


def epoch_order(generators: list[torch.Generator], n: int) -> torch.Tensor:
    """One epoch's batch order for every network: a permutation of its n pairs from its own generator."""
    return torch.stack([torch.randperm(n, generator=g) for g in generators])


Best = tuple[float, int, dict[str, torch.Tensor]]  # a round's score, its index and its weights


def train_variant(
    variant: Variant,
    rounds: list[RoundData],
    config: TrainConfig,
    device: torch.device,
    seed: int = 0,
    on_epoch: Callable[[int], None] | None = None,
) -> RunResult:
    """Train and evaluate one variant on every round's data, in chunks of rounds trained together; each round's
    randomness comes from (seed, its index), so the chunking changes the speed, and the results only by float
    rounding."""
    config = config.fitted(variant)  # a configuration from elsewhere than digitcmp.grid or digitcmp.plan
    together = config.rounds_together or (
        len(rounds) if device.type == "cuda" else max(1, CPU_NETWORKS // variant.ensemble)
    )
    results: list[RoundResult] = []
    best: Best | None = None
    params = 0
    for first in range(0, len(rounds), together):
        chunk = rounds[first : first + together]
        started = time.perf_counter()
        model, curves = train_members(variant, chunk, config, device, seed, on_epoch)
        train, val, test = stack_rounds(chunk, device)
        fit_acc = evaluate(model, train, tta=False)[0]  # how well it fits: test-time views would double vgg4's cost
        val_acc = evaluate(model, val)[0] if val is not None else None
        test_acc, digit_acc = evaluate(model, test)
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # kernels run asynchronously: wait for them before reading the clock
        seconds = (time.perf_counter() - started) / len(chunk)
        params = count_parameters(model)
        for m, data in enumerate(chunk):
            val_acc_m = None if val_acc is None else val_acc[m]
            digit_acc_m = digit_acc[m] if variant.names_digits else None
            figures = rounded(fit_acc[m], val_acc_m, test_acc[m], digit_acc_m, seconds)
            results.append(RoundResult(data.index, *figures, curves[m]))
            score = float(val_acc_m if val_acc_m is not None else fit_acc[m])
            best = keep_best(best, score, data.index, functools.partial(member_state, model, m))
    assert best is not None
    return RunResult(variant, params, config, str(device), results, best[1], best[2])


def keep_best(best: Best | None, score: float, index: int, weights: Callable[[], dict[str, torch.Tensor]]) -> Best:
    """Model selection: the round with the highest validation accuracy (training accuracy where there is no
    validation split), never test accuracy; the first of equal rounds. ``weights`` is copied only for a new best."""
    if best is None or score > best[0]:
        return score, index, weights()
    return best


@dataclass
class TrainRun:
    """A finished ``digitcmp train``: the result, and the files written for it."""

    result: RunResult
    record: dict  # what results.json holds
    checkpoint: Path


def fit_calibration(result: RunResult, rounds: list[RoundData], device: torch.device) -> dict | None:
    """Temperatures for the best round's outputs, fitted on its validation pairs (held-out training digits, never
    test digits; digitcmp.calibration); None without validation pairs or digit names."""
    val = next(r.val for r in rounds if r.index == result.best_round)
    if val is None or not result.variant.names_digits:
        return None
    model = ComparisonNet(result.variant).to(device)
    model.load_state_dict(result.best_state)
    logits, digits = (t[0].cpu().numpy() for t in outputs(model, stack([val], device)))
    return calibrate(digits, val.classes.numpy(), logits, val.targets.numpy()).to_dict()


def run_train(
    variant: Variant,
    config: TrainConfig,
    source: DigitSource,
    rounds: int,
    pairs: int,
    test_pairs: int,
    seed: int,
    device: torch.device,
    folder: Path,
    on_epoch: Callable[[int], None] | None = None,
) -> TrainRun:
    """Train ``variant`` for ``rounds`` fresh rounds, then write the best round's checkpoint and results.json."""
    data = draw_rounds(source, rounds, pairs, test_pairs, config.val_fraction, seed, size=variant.resolution.size)
    result = train_variant(variant, data, config, device, seed, on_epoch=on_epoch)
    context = {"seed": seed, "data": source.describe(), "environment": environment(str(device))}
    context["calibration"] = fit_calibration(result, data, device)
    checkpoint = result.save_best(folder / "checkpoint.pt", **context)
    record = {"schema_version": SCHEMA_VERSION, "kind": "train", **result.to_dict(), **context,
              "checkpoint": checkpoint.name}  # fmt: skip
    write_json(folder / "results.json", record)
    return TrainRun(result, record, checkpoint)
