"""Shared fixtures: the real MNIST test set (when present), helpers that write IDX files, and the check that the
test run leaves the checkout as it found it."""

from __future__ import annotations

import gzip
import os
import tempfile
from pathlib import Path

import hypothesis.configuration
import numpy as np
import pytest

from digitcmp.config import DATA_ENV
from digitcmp.data import IMAGES_MAGIC, LABELS_MAGIC, TEST_STEMS, find_idx

REPO = Path(__file__).resolve().parents[1]
# Caches and environments that live in a checkout by design; everything else a test run adds, removes or changes in
# the checkout is a test writing where it should not.
NOT_WATCHED = {".git", ".venv", "venv", "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache", "mutants"}

CHECKOUT = pytest.StashKey[dict]()
# Set where everything a test needs is installed (the GitHub workflow): a skipped test then fails the run.
NO_SKIPS = "DIGITCMP_NO_SKIPS"
skipped: list[str] = []

hypothesis.configuration.set_hypothesis_home_dir(Path(tempfile.mkdtemp(prefix="digitcmp-hypothesis-")))


def checkout_state(root: Path = REPO) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root`` (bar NOT_WATCHED) with its size and modification time."""
    state = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in NOT_WATCHED and not d.endswith(".egg-info")]
        for name in dirs + files:
            path = Path(folder, name)
            stat = path.lstat()
            state[str(path.relative_to(root))] = (stat.st_size if name in files else 0, stat.st_mtime_ns)
    return state


def changed_paths(before: dict, after: dict) -> list[str]:
    """What a test run added, removed or rewrote, sorted."""
    return sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[CHECKOUT] = checkout_state()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when the tests changed the checkout (tests write under their temporary folders only), and,
    with $DIGITCMP_NO_SKIPS set, when any test skipped."""
    problems = []
    changed = changed_paths(session.config.stash.get(CHECKOUT, {}), checkout_state())
    if changed and "MUTANT_UNDER_TEST" not in os.environ:  # mutation testing writes its own files beside the tests
        problems.append(f"the tests changed the checkout: {', '.join(changed[:10])}")
    if skipped and os.environ.get(NO_SKIPS):
        problems.append(f"{len(skipped)} tests skipped with {NO_SKIPS} set: {', '.join(skipped[:10])}")
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    for problem in problems:
        if reporter is not None:
            reporter.write_line(f"error: {problem}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_pair(folder: Path, stems: tuple[str, str], images: np.ndarray, labels: np.ndarray, gz: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array, magic in ((stems[0], images, IMAGES_MAGIC), (stems[1], labels, LABELS_MAGIC)):
        data = idx_bytes(array, magic)
        (folder / (stem + (".gz" if gz else ""))).write_bytes(gzip.compress(data) if gz else data)


@pytest.fixture(autouse=True)
def work_in_a_temporary_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in its own temporary folder, so a relative path (a default ``runs/`` or ``models/``) never
    lands in the checkout or in another test's way."""
    monkeypatch.chdir(tmp_path)


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
    """The official MNIST test set, in any layout the commands accept: $DIGITCMP_DATA, else ../shared/mnist. Tests
    needing it skip without it, but a $DIGITCMP_DATA that holds no test set is an error, not a skip."""
    named = os.environ.get(DATA_ENV)
    folder = Path(named or REPO.parent / "shared" / "mnist").expanduser()
    if find_idx(folder, TEST_STEMS[0]) is None:
        if named:
            pytest.fail(f"{DATA_ENV}={named} holds no MNIST test set ({TEST_STEMS[0]}[.gz]); fix or unset it")
        pytest.skip(f"MNIST test set not found in {folder}")
    return folder


def run(*args: str):
    """Invoke the CLI in-process; DIGITCMP_DATA is cleared so the bundled sample is the default."""
    from typer.testing import CliRunner

    from digitcmp.cli import app

    return CliRunner().invoke(app, list(args), env={DATA_ENV: ""})


def refuse_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a command that should stop at its checks starts training (for minutes) instead."""
    import digitcmp.bench
    import digitcmp.train
    import digitcmp.tune

    def trains(*args: object, **kwargs: object) -> None:
        pytest.fail("the command started training instead of refusing its input")

    for module in (digitcmp.train, digitcmp.bench, digitcmp.tune):
        monkeypatch.setattr(module, "train_variant", trains)
