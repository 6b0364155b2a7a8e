"""The one exception type for mistakes a user can fix; the CLI turns it into one line and an exit code."""

from __future__ import annotations


class DigitcmpError(Exception):
    """A user-facing failure: the message names the thing and the fix; ``exit_code`` 2 means bad input."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class TooLarge(DigitcmpError):
    """An input over a size limit (bytes or pixels): refused before it is decoded."""
