"""MNIST digits (bundled sample or IDX files) and the course protocol's digit pairs.

Protocol: digits are pooled 28×28 → 14×14; each split draws 2N distinct digits into N pairs, target 1 iff the
first digit ≤ the second, and the two classes are kept for the auxiliary loss.
"""

from __future__ import annotations

import gzip
import importlib.resources
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import rng
from .config import DATA_ENV
from .errors import DigitcmpError
from .preprocess import INPUT_SIZE, model_digits

TRAIN_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
TEST_STEMS = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801
# Bundled-only protocol: of each class's 500 bundled digits, the first 250 form the training pool and the last
# 250 the test pool, so test digits are never seen in training (docs/data.md).
BUNDLED_TRAIN_PER_CLASS = 250


@dataclass(frozen=True)
class Digits:
    """Raw MNIST digits: ``images`` uint8 N×28×28, ``labels`` uint8 N."""

    images: np.ndarray
    labels: np.ndarray
    origin: str

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class DigitSource:
    """Where a run's training and test digits come from; ``describe()`` tells the user."""

    train: Digits
    test: Digits

    def describe(self) -> str:
        return (
            f"training digits: {self.train.origin} ({len(self.train):,}); "
            f"test digits: {self.test.origin} ({len(self.test):,})"
        )


@dataclass(frozen=True)
class PairSet:
    """N pairs: ``inputs`` float32 N×2×S×S in [0, 1] (S: the model's input side), ``targets`` float32 N (1 iff
    first ≤ second), ``classes`` int64 N×2."""

    inputs: torch.Tensor
    targets: torch.Tensor
    classes: torch.Tensor

    def __len__(self) -> int:
        return len(self.targets)


@dataclass(frozen=True)
class RoundData:
    """Round ``index``'s draw: training pairs, the validation pairs carved from them (or None), and test pairs."""

    index: int
    train: PairSet
    val: PairSet | None
    test: PairSet


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read one IDX file (gzip or raw) and check its magic number, dimensions and length."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise DigitcmpError(f"cannot read {path}: {exc}; replace it with an intact MNIST IDX file") from None
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header or int.from_bytes(raw[:4], "big") != magic:
        found = raw[:4].hex() if len(raw) >= 4 else "nothing"
        raise DigitcmpError(f"{path} is not an IDX file of the expected kind (magic {found}, expected {magic:08x})")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(dims))
    if len(raw) != header + size:
        raise DigitcmpError(
            f"{path} is truncated or padded: header promises {size:,} bytes of data, found {len(raw) - header:,}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def find_idx(directory: Path, stem: str) -> Path | None:
    """Find ``stem`` or ``stem.gz`` in ``directory`` or in ``directory/MNIST/raw`` (torchvision's layout)."""
    for folder in (directory, directory / "MNIST" / "raw"):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def read_split(directory: Path, stems: tuple[str, str], origin: str) -> Digits | None:
    """Read one images/labels pair of IDX files, or return None when neither file is present."""
    images_path, labels_path = (find_idx(directory, stem) for stem in stems)
    if images_path is None and labels_path is None:
        return None
    if images_path is None or labels_path is None:
        missing = stems[0] if images_path is None else stems[1]
        raise DigitcmpError(f"{directory} has no {missing}[.gz] beside its partner; add it or remove the other")
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        raise DigitcmpError(f"{images_path} holds {images.shape[1:]} images, expected 28×28 MNIST digits")
    if len(images) != len(labels):
        raise DigitcmpError(f"{images_path} has {len(images):,} images but {labels_path} has {len(labels):,} labels")
    if labels.size and labels.max() > 9:
        raise DigitcmpError(f"{labels_path} has labels above 9; it is not an MNIST label file")
    return Digits(images, labels, origin)


def bundled_digits() -> Digits:
    """The 5,000 real MNIST training digits shipped with the package (docs/data.md says where they come from)."""
    resource = importlib.resources.files("digitcmp.assets") / "mnist_sample.npz"
    with resource.open("rb") as handle, np.load(handle, allow_pickle=False) as npz:
        return Digits(npz["images"], npz["labels"], "bundled MNIST sample")


def bundled_split(digits: Digits) -> tuple[Digits, Digits]:
    """Split the bundled sample into disjoint training and test pools (first 250 of each class train)."""
    rank = np.zeros(len(digits), dtype=np.int64)
    for label in range(10):
        where = np.flatnonzero(digits.labels == label)
        rank[where] = np.arange(len(where))
    is_train = rank < BUNDLED_TRAIN_PER_CLASS
    return (
        Digits(digits.images[is_train], digits.labels[is_train], "bundled MNIST sample, training pool"),
        Digits(digits.images[~is_train], digits.labels[~is_train], "bundled MNIST sample, test pool"),
    )


def download_mnist(directory: Path) -> None:
    """Fetch MNIST into ``directory/MNIST/raw`` with torchvision's downloader."""
    try:
        from torchvision.datasets import MNIST
    except ImportError as exc:  # torchvision comes with the train extra, but a broken install should read well
        raise DigitcmpError(f"--download needs torchvision, which failed to import ({exc})") from None
    try:
        for train in (True, False):
            MNIST(root=str(directory), train=train, download=True)
    except Exception as exc:  # torchvision raises URLError, RuntimeError, OSError... for the same cause
        raise DigitcmpError(
            f"could not download MNIST into {directory} ({type(exc).__name__}); without network, place the IDX "
            "files there yourself or drop --download to use the bundled sample"
        ) from None


def load_source(data_dir: Path | None = None, download: bool = False, train_digits: str = "sample") -> DigitSource:
    """Choose the digits of a run. Test digits: the MNIST test set in ``data_dir``, else the bundled sample's test
    pool. Training digits, as ``train_digits`` says and never by what a folder happens to hold: the bundled
    5,000-digit sample (``sample``: the published tables' protocol; its training pool without ``data_dir``) or the
    60,000 MNIST training digits in ``data_dir`` (``mnist``)."""
    if data_dir is None:
        if download:
            raise DigitcmpError("--download needs --data-dir DIR (or DIGITCMP_DATA) to say where MNIST goes")
        if train_digits == "mnist":
            raise DigitcmpError(
                "--train-digits mnist needs --data-dir DIR (or DIGITCMP_DATA) holding the MNIST training files "
                "(--download fetches them there); drop it to train on the bundled sample"
            )
        return DigitSource(*bundled_split(bundled_digits()))
    data_dir = Path(data_dir).expanduser()
    if download:
        data_dir.mkdir(parents=True, exist_ok=True)
        download_mnist(data_dir)
    if not data_dir.is_dir():
        raise DigitcmpError(
            f"data directory {data_dir} does not exist; point --data-dir (or {DATA_ENV}) at MNIST IDX files"
        )
    test = read_split(data_dir, TEST_STEMS, f"MNIST test set from {data_dir}")
    if test is None:
        raise DigitcmpError(f"{data_dir} has no t10k-images-idx3-ubyte[.gz] / t10k-labels-idx1-ubyte[.gz]")
    if train_digits != "mnist":
        return DigitSource(bundled_digits(), test)
    train = read_split(data_dir, TRAIN_STEMS, f"MNIST training set from {data_dir}")
    if train is None:
        raise DigitcmpError(
            f"{data_dir} has no train-images-idx3-ubyte[.gz] / train-labels-idx1-ubyte[.gz] for --train-digits "
            "mnist; add them, use --download, or drop --train-digits to train on the bundled sample"
        )
    return DigitSource(train, test)


# What to do when a pool holds too few digits for the pairs asked of it: training's and tuning's pools are the
# training digits, the test pairs' the test digits.
MORE_TRAINING_DIGITS = "or train on the 60,000 MNIST training digits (--train-digits mnist --data-dir DIR)"
MORE_TEST_DIGITS = "or test on the 10,000 MNIST test digits (--data-dir DIR)"


def draw_pairs(
    pooled: torch.Tensor, labels: torch.Tensor, n: int, generator: torch.Generator, fix: str = "lower --pairs"
) -> PairSet:
    """Draw ``n`` pairs of 2n distinct digits from a pool of model digits (float32 M×S×S); ``fix`` ends the
    error when the pool is too small (the option that asked for the pairs, and the larger pool)."""
    if 2 * n > len(labels):
        raise DigitcmpError(f"{n:,} pairs need {2 * n:,} distinct digits but the pool has {len(labels):,}; {fix}")
    index = torch.randperm(len(labels), generator=generator)[: 2 * n].view(n, 2)
    classes = labels[index]
    return PairSet(pooled[index], (classes[:, 0] <= classes[:, 1]).float(), classes)


def split_validation(pairs: PairSet, val_fraction: float) -> tuple[PairSet, PairSet | None]:
    """Carve the last ``val_fraction`` of (already random) training pairs off for model selection."""
    n_val = round(len(pairs) * val_fraction)
    if n_val == 0:
        return pairs, None
    if n_val >= len(pairs):
        raise DigitcmpError(f"--val-fraction {val_fraction} leaves no training pairs; use a value below 1")
    fit = PairSet(pairs.inputs[:-n_val], pairs.targets[:-n_val], pairs.classes[:-n_val])
    return fit, PairSet(pairs.inputs[-n_val:], pairs.targets[-n_val:], pairs.classes[-n_val:])


def take(pairs: PairSet, index: torch.Tensor) -> PairSet:
    return PairSet(pairs.inputs[index], pairs.targets[index], pairs.classes[index])


def draw_tuning_rounds(
    source: DigitSource, n_pairs: int, seed: int, holdout: float, folds: int = 0, size: int = INPUT_SIZE
) -> list[RoundData]:
    """The pairs that choose hyper-parameters, from the training digits alone (test digits never choose), drawn
    apart from the evaluation rounds (round −1 of the seed). With ``folds`` K ≥ 2: K rounds, fold f validating
    what the other K − 1 folds trained (indices −1 … −K for their random streams); else one round holding out
    ``holdout`` of the pairs. A tuning round's validation pairs stand in for its test pairs."""
    digits = torch.from_numpy(model_digits(source.train.images, size))
    labels = torch.from_numpy(source.train.labels.astype(np.int64))
    generator = rng.generator(seed, -1, 0, "data")
    pairs = draw_pairs(digits, labels, n_pairs, generator, f"lower --tune-pairs {MORE_TRAINING_DIGITS}")
    if folds < 2:
        fit, val = split_validation(pairs, holdout)
        if val is None:
            raise DigitcmpError(f"--holdout {holdout} of {n_pairs} pairs leaves no validation pairs; raise it")
        return [RoundData(-1, fit, val, val)]
    if n_pairs < 2 * folds:
        raise DigitcmpError(f"--folds {folds} needs at least {2 * folds} tuning pairs, got {n_pairs}")
    usable = n_pairs - n_pairs % folds  # equal folds, so that the folds train together as one batched model
    pairs = take(pairs, torch.arange(usable))
    fold_of = torch.arange(usable) % folds  # the pairs are already in random order
    rounds = []
    for fold in range(folds):
        val = take(pairs, fold_of == fold)
        rounds.append(RoundData(-1 - fold, take(pairs, fold_of != fold), val, val))
    return rounds


def draw_rounds(
    source: DigitSource,
    rounds: int,
    n_train: int,
    n_test: int,
    val_fraction: float,
    seed: int,
    first: int = 0,
    size: int = INPUT_SIZE,
) -> list[RoundData]:
    """Rounds ``first`` … ``first + rounds − 1``; each round's pairs come from its own generator (seed, round), so
    a round's data never depends on which other rounds were drawn. ``size``: the side of the digits the model
    reads (``model_digits``)."""
    pools = [
        (torch.from_numpy(model_digits(d.images, size)), torch.from_numpy(d.labels.astype(np.int64)))
        for d in (source.train, source.test)
    ]
    result = []
    for index in range(first, first + rounds):
        generator = rng.generator(seed, index, 0, "data")
        train = draw_pairs(*pools[0], n_train, generator, f"lower --pairs {MORE_TRAINING_DIGITS}")
        test = draw_pairs(*pools[1], n_test, generator, f"lower --test-pairs {MORE_TEST_DIGITS}")
        result.append(RoundData(index, *split_validation(train, val_fraction), test))
    return result
