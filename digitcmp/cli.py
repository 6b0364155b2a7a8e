"""The ``digitcmp`` command line: thin wrappers that parse flags, call the library and print its results."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from . import __version__
from .errors import DigitcmpError

EPILOG_TRAIN = (
    "Examples:  digitcmp train --rounds 10   ·   digitcmp train --arch conv6 --width 16 --no-weight-sharing "
    "--aux-weight 0   ·   digitcmp train --data-dir ../shared/mnist --json > run.json"
)

app = typer.Typer(
    name="digitcmp",
    help="Is the first MNIST digit ≤ the second? Train, benchmark, export and run digit-comparison networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain usage errors: they end in one 'Error: ...' line
)


def friendly(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn user-fixable failures into one 'error:' line and an exit code, never a traceback."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except DigitcmpError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return run


@contextmanager
def progress_bar(total: int, description: str, quiet: bool) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr (hidden with --quiet or when stdout is not a terminal); yields advance(n)."""
    from .report import stderr_console

    disable = quiet or not sys.stdout.isatty()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=stderr_console(), disable=disable, transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"digitcmp {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Is the first MNIST digit ≤ the second? Train, benchmark, export and run digit-comparison networks."""


DataDir = typer.Option(
    None,
    "--data-dir",
    envvar="DIGITCMP_DATA",
    help="Folder with MNIST IDX files (.gz or raw, flat or MNIST/raw). Test files only: training digits come from "
    "the bundled sample. Unset: the bundled sample alone.",
    show_default=False,
)


@app.command(epilog=EPILOG_TRAIN)
@friendly
def train(
    arch: str = typer.Option(
        "lenet", "--arch", help="Architecture (see the list in 'digitcmp train --help' docs/models.md)."
    ),
    weight_sharing: bool = typer.Option(
        True, "--weight-sharing/--no-weight-sharing", help="One tower for both digits (siamese)."
    ),
    aux_weight: float = typer.Option(
        1.0, "--aux-weight", help="Weight w of the auxiliary digit loss (0 = off); loss = (main + w·aux)/(1 + w)."
    ),
    width: int = typer.Option(
        None, "--width", help="Channels of width-configurable architectures (conv6: 8/16/32/64).", show_default=False
    ),
    head: str = typer.Option(
        None,
        "--head",
        help="Comparison head: mlp (learned) or structured (exact Σ_{i≤j} p₁(i)p₂(j)); default: the architecture's.",
        show_default=False,
    ),
    rounds: int = typer.Option(
        1, "--rounds", min=1, help="Rounds, each with a fresh data draw and a fresh initialisation."
    ),
    epochs: int = typer.Option(25, "--epochs", help="Passes over the training pairs."),
    batch_size: int = typer.Option(100, "--batch-size", help="Pairs per optimisation step."),
    lr: float = typer.Option(1e-3, "--lr", help="Learning rate (peak rate with --schedule onecycle)."),
    optimizer: str = typer.Option("adam", "--optimizer", help="adam, adamw or sgd (momentum 0.9)."),
    weight_decay: float = typer.Option(0.0, "--weight-decay", help="Weight decay."),
    schedule: str = typer.Option("constant", "--schedule", help="Learning-rate schedule: constant or onecycle."),
    shift: int = typer.Option(
        0, "--shift", help="Augmentation: shift each training digit by up to this many pixels (0-4)."
    ),
    swap: bool = typer.Option(
        False, "--swap/--no-swap", help="Augmentation: add every training pair with its digits swapped."
    ),
    pairs: int = typer.Option(
        1000, "--pairs", min=1, help="Training pairs per round (and test pairs, unless --test-pairs)."
    ),
    test_pairs: int = typer.Option(
        None, "--test-pairs", min=1, help="Test pairs per round (default: --pairs).", show_default=False
    ),
    val_fraction: float = typer.Option(
        0.1, "--val-fraction", help="Share of the training pairs held out for model selection."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the data draws, initialisation and shuffling."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    data_dir: Path = DataDir,
    download: bool = typer.Option(False, "--download", help="Download MNIST into --data-dir first (needs network)."),
    out: Path = typer.Option(
        None, "--out", help="Run folder (default: runs/<timestamp>-<variant>/).", show_default=False
    ),
    json_output: bool = typer.Option(False, "--json", help="Print only JSON on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or notes on stderr."),
) -> None:
    """Train one variant for R rounds and report test accuracy per round and mean ± std."""
    from .data import draw_rounds, load_source
    from .files import write_json
    from .models import Variant, save_checkpoint
    from .report import environment, rounds_table, stderr_console, stdout_console
    from .train import TrainConfig, resolve_device, train_variant

    variant = Variant(arch, weight_sharing, aux_weight, width, head).resolved()
    config = TrainConfig(epochs, batch_size, lr, optimizer, weight_decay, schedule, val_fraction, shift, swap).check()
    torch_device = resolve_device(device)
    source = load_source(data_dir, download)
    log = stderr_console(quiet or json_output)
    log.print(f"[dim]{source.describe()}[/dim]")
    data = draw_rounds(source, rounds, pairs, test_pairs or pairs, val_fraction, seed)
    with progress_bar(rounds * epochs, f"training {variant.name}", quiet or json_output) as advance:
        result = train_variant(variant, data, config, torch_device, seed, on_epoch=advance)
    folder = out or Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{variant.name}"
    env = environment(str(torch_device))
    record = {**result.to_dict(), "seed": seed, "data": source.describe(), "environment": env}
    checkpoint = save_checkpoint(
        folder / "checkpoint.pt", result.best_state, variant, {k: v for k, v in record.items() if k != "rounds"}
    )
    record["checkpoint"] = str(checkpoint)
    write_json(folder / "results.json", record)
    if json_output:
        typer.echo(json.dumps(record, indent=2))
        return
    stdout_console().print(rounds_table(result))
    log.print(f"checkpoint (round {result.best_round}, best validation accuracy): {checkpoint}")


def not_yet(name: str) -> None:
    raise DigitcmpError(f"'digitcmp {name}' is not available in this version yet", exit_code=1)


@app.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@friendly
def bench() -> None:
    """Benchmark every variant over many rounds (not available yet)."""
    not_yet("bench")


@app.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@friendly
def export() -> None:
    """Export a checkpoint to ONNX (not available yet)."""
    not_yet("export")


@app.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@friendly
def predict() -> None:
    """Compare the digits in two image files with an ONNX model (not available yet)."""
    not_yet("predict")
