"""Data: IDX reading and its failures, the bundled sample and its split, pooling, and the pairing protocol."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import idx_bytes, write_idx_pair
from hypothesis import given, settings
from hypothesis import strategies as st

from digitcmp.data import (
    IMAGES_MAGIC,
    TEST_STEMS,
    TRAIN_STEMS,
    Digits,
    DigitSource,
    PairSet,
    bundled_digits,
    bundled_split,
    draw_pairs,
    draw_rounds,
    load_source,
    read_idx,
    split_validation,
)
from digitcmp.errors import DigitcmpError
from digitcmp.preprocess import pool_digits


@pytest.fixture(scope="module")
def sample():
    return bundled_digits()


def test_bundled_sample_is_5000_real_digits_500_per_class(sample):
    assert sample.images.shape == (5000, 28, 28) and sample.images.dtype == np.uint8
    assert np.bincount(sample.labels, minlength=10).tolist() == [500] * 10
    # Real MNIST digits: white strokes on a black border, mean intensity near MNIST's 0.13.
    assert sample.images[:, 0, :].max() == 0
    assert 0.10 < sample.images.mean() / 255 < 0.16


def test_bundled_split_is_disjoint_and_balanced(sample):
    train, test = bundled_split(sample)
    assert len(train) == len(test) == 2500
    assert np.bincount(train.labels).tolist() == [250] * 10 == np.bincount(test.labels).tolist()
    train_bytes = {image.tobytes() for image in train.images}
    assert not any(image.tobytes() in train_bytes for image in test.images)


def test_pooling_is_2x2_average_of_scaled_pixels(sample):
    pooled = pool_digits(sample.images[:64])
    reference = F.avg_pool2d(torch.from_numpy(sample.images[:64]).float().unsqueeze(1) / 255, 2).squeeze(1)
    assert pooled.shape == (64, 14, 14) and pooled.dtype == np.float32
    assert np.allclose(pooled, reference.numpy(), atol=1e-6)
    assert 0 <= pooled.min() and pooled.max() <= 1


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("layout", ["flat", "torchvision"])
def test_reads_idx_files_in_both_layouts(tmp_path, sample, gz, layout):
    folder = tmp_path if layout == "flat" else tmp_path / "MNIST" / "raw"
    write_idx_pair(folder, TEST_STEMS, sample.images[:300], sample.labels[:300], gz)
    source = load_source(tmp_path)
    assert len(source.test) == 300 and np.array_equal(source.test.images, sample.images[:300])
    assert source.train.origin == "bundled MNIST sample" and len(source.train) == 5000


def test_the_training_digits_are_chosen_not_inferred_from_the_folder(tmp_path, sample):
    """A folder with all four files trains on the bundled sample unless the MNIST training digits are asked for."""
    write_idx_pair(tmp_path, TRAIN_STEMS, sample.images[:3000], sample.labels[:3000], gz=True)
    write_idx_pair(tmp_path, TEST_STEMS, sample.images[3000:], sample.labels[3000:], gz=False)
    default = load_source(tmp_path)
    assert default.train.origin == "bundled MNIST sample" and len(default.train) == 5000 and len(default.test) == 2000
    full = load_source(tmp_path, train_digits="mnist")
    assert len(full.train) == 3000 and "training set" in full.train.origin and len(full.test) == 2000


def test_mnist_training_digits_without_their_files_are_refused(tmp_path, sample):
    write_idx_pair(tmp_path, TEST_STEMS, sample.images[:300], sample.labels[:300], gz=True)
    with pytest.raises(DigitcmpError, match=r"train-images-idx3-ubyte.*--train-digits"):
        load_source(tmp_path, train_digits="mnist")
    with pytest.raises(DigitcmpError, match="--train-digits mnist needs --data-dir"):
        load_source(None, train_digits="mnist")


def test_real_mnist_test_set(mnist_test_dir):
    source = load_source(mnist_test_dir)
    assert source.test.images.shape == (10000, 28, 28)
    assert np.bincount(source.test.labels).sum() == 10000
    assert "bundled" in source.describe() and "10,000" in source.describe()


def corrupt_cases(sample) -> dict[str, tuple[bytes, bytes, str]]:
    images, labels = idx_bytes(sample.images[:10], IMAGES_MAGIC), idx_bytes(sample.labels[:10], 0x801)
    return {
        "truncated": (images[:-5], labels, "truncated"),
        "bad magic": (labels, labels, "magic"),
        "count mismatch": (images, idx_bytes(sample.labels[:9], 0x801), "labels"),
        "truncated gzip": (gzip.compress(images)[:-20], labels, "cannot read"),
        "empty": (b"", labels, "magic nothing"),
    }


@pytest.mark.parametrize("case", ["truncated", "bad magic", "count mismatch", "truncated gzip", "empty"])
def test_corrupt_idx_files_fail_with_a_clear_message(tmp_path, sample, case):
    images, labels, expected = corrupt_cases(sample)[case]
    (tmp_path / TEST_STEMS[0]).write_bytes(images)
    (tmp_path / TEST_STEMS[1]).write_bytes(labels)
    with pytest.raises(DigitcmpError) as error:
        load_source(tmp_path)
    message = str(error.value)
    assert all(word in message for word in expected.split()) and "\n" not in message


def test_missing_directory_and_missing_files(tmp_path):
    with pytest.raises(DigitcmpError, match="does not exist"):
        load_source(tmp_path / "nope")
    with pytest.raises(DigitcmpError, match="t10k"):
        load_source(tmp_path)
    (tmp_path / (TEST_STEMS[0] + ".gz")).write_bytes(b"")
    with pytest.raises(DigitcmpError, match="t10k-labels"):
        load_source(tmp_path)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=64))
def test_read_idx_never_fails_with_anything_but_a_clear_error(tmp_path_factory, raw):
    path = Path(tmp_path_factory.mktemp("idx")) / "file"
    path.write_bytes(raw)
    try:
        array = read_idx(path, IMAGES_MAGIC)
    except DigitcmpError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)  # one line naming the file
    else:
        assert array.ndim == 3 and array.size == len(raw) - 16


def indexed_pool(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A pool whose digit i is the constant image i, so drawn digits can be traced back."""
    return torch.arange(n, dtype=torch.float32)[:, None, None].expand(n, 14, 14).clone(), torch.arange(n) % 10


def test_pairs_follow_the_protocol():
    pooled, labels = indexed_pool(500)
    pairs = draw_pairs(pooled, labels, 200, torch.Generator().manual_seed(1))
    assert pairs.inputs.shape == (200, 2, 14, 14) and pairs.classes.shape == (200, 2) and pairs.targets.shape == (200,)
    drawn = pairs.inputs[:, :, 0, 0].long()
    assert len(drawn.unique()) == 400  # 2N distinct digits
    assert torch.equal(pairs.classes, labels[drawn])
    assert torch.equal(pairs.targets, (pairs.classes[:, 0] <= pairs.classes[:, 1]).float())
    assert 0.4 < pairs.targets.mean() < 0.7  # P(first ≤ second) = 0.55 for uniform classes


def test_too_many_pairs_for_the_pool_is_a_clear_error():
    pairs = draw_pairs(*indexed_pool(100), 50, torch.Generator())  # exactly 2n digits: each used once
    assert sorted(pairs.inputs[:, :, 0, 0].long().flatten().tolist()) == list(range(100))
    with pytest.raises(DigitcmpError) as refused:
        draw_pairs(*indexed_pool(100), 51, torch.Generator())
    assert str(refused.value) == ("51 pairs need 102 distinct digits but the pool has 100; lower --pairs")


def test_rounds_are_fresh_draws_and_reproducible():
    source = load_source(None)
    first = draw_rounds(source, 2, 100, 50, 0.1, seed=7)
    again = draw_rounds(source, 2, 100, 50, 0.1, seed=7)
    assert torch.equal(first[1].test.inputs, again[1].test.inputs)
    assert not torch.equal(first[0].train.inputs, first[1].train.inputs)
    assert len(first[0].train) == 90 and len(first[0].val) == 10 and len(first[0].test) == 50


def constant_digits(values: range, origin: str) -> Digits:
    """Digits whose image is the constant gray value v (label v mod 10), traceable after pooling."""
    images = np.repeat(np.array(values, dtype=np.uint8), 28 * 28).reshape(-1, 28, 28)
    return Digits(images, (np.array(values) % 10).astype(np.uint8), origin)


def test_training_pairs_come_from_the_training_digits_and_test_pairs_from_the_test_digits():
    source = DigitSource(constant_digits(range(0, 120), "train"), constant_digits(range(128, 248), "test"))
    for data in draw_rounds(source, 2, 40, 30, 0.25, seed=3):
        for split, pool in ((data.train, range(0, 120)), (data.val, range(0, 120)), (data.test, range(128, 248))):
            drawn = (split.inputs[:, :, 0, 0] * 255).round().long()  # pooling keeps a constant image's value
            assert all(value in pool for value in drawn.flatten().tolist())
            assert torch.equal(split.classes, drawn % 10)
        assert len(data.test.inputs[:, :, 0, 0].unique()) == 60  # 2N distinct test digits


def test_validation_is_carved_from_training_pairs():
    pooled, labels = indexed_pool(400)
    pairs = draw_pairs(pooled, labels, 100, torch.Generator().manual_seed(0))
    fit, val = split_validation(pairs, 0.2)
    assert isinstance(val, PairSet) and len(fit) == 80 and len(val) == 20
    assert torch.equal(torch.cat([fit.inputs, val.inputs]), pairs.inputs)
    assert split_validation(pairs, 0.0) == (pairs, None)
