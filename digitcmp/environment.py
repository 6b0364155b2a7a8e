"""Where a figure was measured: the machine and the versions beside every results file and benchmark output, so
that two figures are compared only when they come from comparable environments. No torch: benchmarks of predict
and serve record it too."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

from . import __version__


def cpu_model() -> str:
    """The processor's model name (Linux's /proc/cpuinfo; the platform's own word elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def installed(package: str) -> str:
    """A package's installed version, or 'not installed'."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, str]:
    """The machine, the interpreter and the versions of digitcmp and onnxruntime, and when (UTC)."""
    return {
        "digitcmp_version": __version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cores": str(os.cpu_count()),
        "onnxruntime_version": installed("onnxruntime"),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
