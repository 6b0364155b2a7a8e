"""The command-line reference, docs/cli.md, generated from the Typer app: every command, argument, option, default
and help text the code declares, so the reference cannot drift from the code (a test checks that the file is
current). Regenerate it after changing an option:

    python -m digitcmp.cli.reference > docs/cli.md
"""

from __future__ import annotations

import typer
import typer.cli

from .. import cli  # the package: its app has every command registered

INTRO = (
    "Every command, argument and option of `digitcmp`, with its default and help text, generated from the code by\n"
    "`python -m digitcmp.cli.reference > docs/cli.md`. The command pages ([README](../README.md#commands)) say what\n"
    "each command is for and show its output.\n"
)


def reference() -> str:
    """The reference as Markdown."""
    command = typer.main.get_command(cli.app)
    body = typer.cli.get_docs_for_click(obj=command, ctx=typer.Context(command), name="digitcmp")
    _, rest = body.strip().split("\n", 1)  # typer's own title, the program's name
    return f"# Command-line reference\n\n{INTRO}\n{rest.strip()}\n"


if __name__ == "__main__":
    print(reference(), end="")
