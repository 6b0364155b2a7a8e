"""Shared fixtures: the real MNIST test set (when present) and helpers that write IDX files."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from digitcmp.data import IMAGES_MAGIC, LABELS_MAGIC

REPO = Path(__file__).resolve().parents[1]


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_pair(folder: Path, stems: tuple[str, str], images: np.ndarray, labels: np.ndarray, gz: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array, magic in ((stems[0], images, IMAGES_MAGIC), (stems[1], labels, LABELS_MAGIC)):
        data = idx_bytes(array, magic)
        (folder / (stem + (".gz" if gz else ""))).write_bytes(gzip.compress(data) if gz else data)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that read the official MNIST test set carry the ``mnist`` marker (``-m "not mnist"`` leaves them out)."""
    for item in items:
        if "mnist_test_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.mnist)


def assert_one_line_error(result, code: int, *words: str) -> None:
    """A CLI result that failed with ``code``, no traceback, and a last line 'error: ...' holding ``words``."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.lower().startswith("error"), result.output
    for word in words:
        assert word in last, last


@pytest.fixture(scope="session")
def mnist_test_dir() -> Path:
    """The official MNIST test set ($DIGITCMP_DATA or ../shared/mnist); tests needing it skip without it."""
    folder = Path(os.environ.get("DIGITCMP_DATA") or REPO.parent / "shared" / "mnist")
    if not (folder / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MNIST test set not found in {folder}")
    return folder
