"""Packaging: every package is in the wheel, and a predict-only install (no torch) lists, predicts and explains."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO

NO_TORCH = "import sys; sys.modules['torch'] = None; sys.modules['onnx'] = None\nfrom digitcmp.cli import app\n"


def run_without_torch(*args: str) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh interpreter where importing torch or onnx fails, as in a predict-only install."""
    code = NO_TORCH + f"app({list(args)!r}, prog_name='digitcmp')\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)


def test_every_python_package_is_in_the_wheel():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {p.parent for p in (REPO / "digitcmp").rglob("*.py")}
    packages = {".".join(folder.relative_to(REPO).parts) for folder in folders}
    assert packages <= set(config["packages"])
    assert config["package-dir"]["digitcmp.shipped"] == "models"  # the shipped model and its card


def test_list_works_without_torch():
    result = run_without_torch("list")
    assert result.returncode == 0, result.stderr
    assert "vgg4" in result.stdout and "54,842 / 109,684" in result.stdout


def test_training_commands_without_torch_say_how_to_install_it():
    for command in ("train", "bench", "tune", "export"):
        result = run_without_torch(command)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: 'digitcmp {command}' needs torch")
        assert "pip install 'digitcmp[train]'" in last and "in a checkout: pip install -e '.[train]'" in last


def test_the_version_is_the_changelogs_newest_release():
    import re

    from digitcmp import __version__

    releases = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - \d{4}-\d{2}-\d{2}$", (REPO / "CHANGELOG.md").read_text(), re.M)
    assert releases and releases[0] == __version__
