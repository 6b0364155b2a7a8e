"""The one exception type for mistakes a user can fix; the CLI turns it into one line and an exit code."""

from __future__ import annotations

import difflib
import importlib.util
from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


class DigitcmpError(Exception):
    """A user-facing failure: the message names the thing and the fix; ``exit_code`` 2 means bad input."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class TooLarge(DigitcmpError):
    """An input over a size limit (bytes or pixels): refused before it is decoded."""


def lookup(table: Mapping[str, T], name: str, kind: str) -> T:
    """``table[name]``, or a failure naming the valid names and the closest match (an architecture, a preset)."""
    if name in table:
        return table[name]
    close = difflib.get_close_matches(name, table, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise DigitcmpError(f"unknown {kind} '{name}'{hint}; choose from: {', '.join(table)}")


EXTRAS = {  # what each extra adds: the modules that the commands and options needing it import
    "train": ("torch", "onnx", "matplotlib", "scipy"),
    "serve": ("starlette", "uvicorn", "multipart"),
    "ray": ("ray",),
}


def require_extra(extra: str, who: str) -> None:
    """Fail with the install command when ``who`` (a command, an option) needs an extra that is not installed."""
    missing = [name for name in EXTRAS[extra] if importlib.util.find_spec(name) is None]
    if missing:
        raise DigitcmpError(
            f"{who} needs {', '.join(missing)}, which come with the {extra} extra: pip install 'digitcmp[{extra}]' "
            f"(in a checkout: pip install -e '.[{extra}]')"
        )
