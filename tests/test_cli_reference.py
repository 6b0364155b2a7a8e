"""docs/cli.md is the reference generated from the Typer app, and current: an option added, renamed or given
another default or help text without regenerating the file fails here."""

from __future__ import annotations

from pathlib import Path

import typer

from digitcmp.cli import app
from digitcmp.cli.reference import reference

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def test_the_cli_reference_is_current():
    assert REFERENCE.read_text(encoding="utf-8") == reference(), (
        "docs/cli.md is out of date: python -m digitcmp.cli.reference > docs/cli.md"
    )


def test_the_reference_names_every_command_and_option_with_its_default():
    text = reference()
    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        assert f"## `digitcmp {name}`" in text
        for param in command.params:
            for flag in param.opts:
                if flag.startswith("--"):
                    assert f"`{flag}" in text or f", {flag}" in text, (name, flag)
    assert "--train-digits <sample|mnist>" in text and "[default: sample]" in text
