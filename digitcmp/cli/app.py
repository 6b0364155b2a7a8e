"""The Typer application and what every command shares: one-line errors and the command line as typed. The command
line imports only torch-free modules at the top, so ``predict`` and ``list`` start fast in a predict-only install."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from .. import __version__
from ..errors import DigitcmpError

INVOCATION: list[str] = []  # the command line being run, as typed (recorded beside reproduced figures)
# Click's base exception (vendored inside Typer by recent releases), reached through a public subclass.
ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


class PlainErrors(TyperGroup):
    """Usage errors as click prints them, ending in one 'Error: ...' line rather than a framed panel, while help
    keeps Typer's rich panels."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        given = kwargs.get("args", args[0] if args else None)
        INVOCATION[:] = ["digitcmp", *(sys.argv[1:] if given is None else given)]
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except ClickException as exc:
            exc.show()
            code = exc.exit_code
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="digitcmp",
    cls=PlainErrors,
    help="Is the first MNIST digit ≤ the second? Train, benchmark, export and run digit-comparison networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"digitcmp {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option(callback=version_callback, is_eager=True,
                                               help="Print the version and exit.")] = False) -> None:  # fmt: skip
    """Is the first MNIST digit ≤ the second? Train, benchmark, export and run digit-comparison networks."""


def friendly(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn user-fixable failures into one 'error:' line and an exit code, never a traceback."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except DigitcmpError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:  # e.g. an --out folder that cannot be written: a path the user gave
            where = f"{exc.filename}: " if exc.filename else ""
            typer.echo(f"error: {where}{exc.strerror or exc}; check the path and its permissions", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return run


def examples(*commands: str) -> str:
    """An epilog of example commands, one per line (Typer's rich help keeps paragraphs apart)."""
    return "Examples:\n\n" + "\n\n".join(f"  {command}" for command in commands)


def command_line() -> str:
    return " ".join(INVOCATION)  # the command as typed, recorded beside reproduced figures
