"""The ``digitcmp`` command line: thin commands that parse flags, call the library and print its results.

Only torch-free modules are imported here at the top, so ``predict`` and ``list`` start fast and work in a
predict-only install; ``train``, ``bench`` and ``export`` import the training code after checking it can run.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from . import __version__
from .archs import ARCHS, STUDY
from .config import DATA_ENV, LossKind, Optimizer, Schedule
from .errors import DigitcmpError
from .variant import Activation, Head, create_variant

ADVANCED = "Advanced"
GATE = "Regression gate"
TRAINING_MODULES = ("torch", "onnx", "matplotlib")  # what the train extra adds and train/bench/export import
INSTALL_TRAIN = "pip install 'digitcmp[train]'"

Arch = Enum("Arch", {name: name for name in ARCHS}, type=str)  # type: ignore[misc]


class Executor(str, Enum):
    local = "local"
    ray = "ray"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


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


def require_training(command: str) -> None:
    """Fail with the install command when the training extra (torch, onnx, matplotlib) is missing."""
    missing = [name for name in TRAINING_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise DigitcmpError(
            f"'digitcmp {command}' needs {', '.join(missing)}, which come with the training extra: {INSTALL_TRAIN}"
        )


def prepare_out(folder: Path) -> Path:
    """Check that the results folder can be made and written, before any training spends time on it. The folder
    itself appears with the first file the run keeps, so a command that fails before that leaves nothing behind."""
    if folder.exists() and not folder.is_dir():
        raise DigitcmpError(f"--out {folder} is a file; name a folder for the results")
    existing = next(path for path in (folder, *folder.absolute().parents) if path.exists())
    if not existing.is_dir():
        raise DigitcmpError(f"--out {folder}: {existing} is a file; name a folder for the results")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DigitcmpError(f"--out {folder} is not writable; choose another folder")
    return folder


@contextmanager
def progress_bar(total: int, description: str, quiet: bool) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr (hidden with --quiet or when stdout is not a terminal); yields advance(n)."""
    from rich import progress as bar

    from .report import stderr_console

    disable = quiet or not sys.stdout.isatty()
    columns = (
        bar.TextColumn("{task.description}"),
        bar.BarColumn(),
        bar.MofNCompleteColumn(),
        bar.TimeElapsedColumn(),
        bar.TimeRemainingColumn(),
    )
    with bar.Progress(*columns, console=stderr_console(), disable=disable, transient=False) as progress:
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


def parse_list(text: str | None, kind: type, flag: str) -> tuple:
    """Parse a comma list such as '1e-3,3e-3' for a grid axis (None: the axis takes its default)."""
    if text is None:
        return ()
    try:
        values = tuple(kind(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise DigitcmpError(f"{flag} takes a comma list of {kind.__name__} values, got '{text}'") from None
    if not values:
        raise DigitcmpError(f"{flag} needs at least one value")
    return values


def parse_layers(text: str | None, flag: str) -> tuple[int, ...] | None:
    """Layer sizes such as '128,64,32' (an empty text: no layers); None stays None (the architecture's own)."""
    if text is None:
        return None
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise DigitcmpError(f"{flag} takes layer sizes separated by commas, such as 128,64,32; got '{text}'") from None


def parse_layer_lists(text: str | None, flag: str) -> tuple[tuple[int, ...], ...]:
    """A grid axis of layer lists: '128,64,32/256,128' is two values."""
    if text is None:
        return ()
    return tuple(parse_layers(part, flag) or () for part in text.split("/"))


def parse_switches(text: str | None, flag: str) -> tuple[bool, ...]:
    """A grid axis of on/off values, such as 'on,off'."""
    words = parse_list(text, str, flag)
    if not set(words) <= {"on", "off"}:
        raise DigitcmpError(f"{flag} takes on, off or on,off; got '{text}'")
    return tuple(word == "on" for word in words)


def value(choice: Enum | None) -> str | None:
    """An enum choice's plain value for the library (None stays None)."""
    return None if choice is None else choice.value


RECIPE = "architecture's recipe"


def examples(*commands: str) -> str:
    """An epilog of example commands, one per line (Typer's rich help keeps paragraphs apart)."""
    return "Examples:\n\n" + "\n\n".join(f"  {command}" for command in commands)


# Options that mean the same in train and bench: one definition, the same name, type and help.
DataDirOption = typer.Option(
    None,
    "--data-dir",
    envvar=DATA_ENV,
    help="Folder with MNIST IDX files (.gz or raw, flat or MNIST/raw). With the test files only, training digits "
    "come from the bundled sample.",
    show_default="the bundled sample alone",
)
DownloadOption = typer.Option(
    False, "--download", help="Download MNIST into --data-dir first (needs network).", rich_help_panel=ADVANCED
)
DeviceOption = typer.Option(Device.auto, "--device", help="Where torch trains.")
SeedOption = typer.Option(0, "--seed", help="Seed of the data draws, initialisation and shuffling.")
EpochsOption = typer.Option(None, "--epochs", min=1, help="Passes over the training pairs.", show_default=RECIPE)
JsonOption = typer.Option(False, "--json", help="Print only JSON on stdout.")
QuietOption = typer.Option(False, "--quiet", "-q", help="No progress or notes on stderr.")
HeadOption = typer.Option(
    None, "--head", help="Comparison head: learned (mlp) or exact (structured).", show_default=RECIPE,
    rich_help_panel=ADVANCED,
)  # fmt: skip
TtaOption = typer.Option(
    None,
    "--tta/--no-tta",
    help="Average predictions over 1-pixel shifts and fixed warps.",
    show_default=RECIPE,
    rich_help_panel=ADVANCED,
)
TtaWarpsOption = typer.Option(
    None, "--tta-warps", min=0, max=64, help="Fixed elastic warps among the test-time views.", show_default=RECIPE,
    rich_help_panel=ADVANCED,
)  # fmt: skip
EnsembleOption = typer.Option(
    None, "--ensemble", min=1, max=16, help="Networks per model, trained independently, probabilities averaged.",
    show_default="1", rich_help_panel=ADVANCED,
)  # fmt: skip
OptimizerOption = typer.Option(None, "--optimizer", help="Optimiser.", show_default=RECIPE, rich_help_panel=ADVANCED)
MomentumOption = typer.Option(
    None, "--momentum", min=0.0, max=0.99, help="SGD's momentum (0: plain SGD).", show_default="0.9",
    rich_help_panel=ADVANCED,
)  # fmt: skip
LossOption = typer.Option(
    None, "--loss", help="average: (main + w·aux)/(1 + w); sum: main + w·aux.", show_default="average",
    rich_help_panel=ADVANCED,
)  # fmt: skip
ScheduleOption = typer.Option(
    None, "--schedule", help="Learning-rate schedule.", show_default=RECIPE, rich_help_panel=ADVANCED
)
ShiftOption = typer.Option(
    None, "--shift", min=0, max=4, help="Shift training digits by up to N px.", show_default=RECIPE,
    rich_help_panel=ADVANCED,
)  # fmt: skip
SwapOption = typer.Option(
    None, "--swap/--no-swap", help="Add each training pair swapped.", show_default=RECIPE, rich_help_panel=ADVANCED
)
ElasticOption = typer.Option(
    None, "--elastic", min=0.0, max=2.0, help="Elastic warp of training digits, displacement std in px.",
    show_default=RECIPE, rich_help_panel=ADVANCED,
)  # fmt: skip
RotateOption = typer.Option(
    None, "--rotate", min=0.0, max=45.0, help="Rotate training digits within ± this many degrees.", show_default=RECIPE,
    rich_help_panel=ADVANCED,
)  # fmt: skip
ShearOption = typer.Option(
    None, "--shear", min=0.0, max=1.0, help="Shear training digits horizontally within ± this much.",
    show_default=RECIPE, rich_help_panel=ADVANCED,
)  # fmt: skip
ThicknessOption = typer.Option(
    None, "--thickness", min=0.0, max=1.0, help="Imitate pictures: stroke width towards dilation/erosion, ± this.",
    show_default=RECIPE, rich_help_panel=ADVANCED,
)  # fmt: skip
BlurOption = typer.Option(
    None, "--blur", min=0.0, max=2.0, help="Imitate pictures: Gaussian blur of up to this many px.",
    show_default=RECIPE, rich_help_panel=ADVANCED,
)  # fmt: skip
ContrastOption = typer.Option(
    None, "--contrast", min=0.0, max=0.95, help="Imitate pictures: ink fainter by up to this share.",
    show_default=RECIPE, rich_help_panel=ADVANCED,
)  # fmt: skip
NoiseOption = typer.Option(
    None, "--noise", min=0.0, max=0.5, help="Imitate pictures: pixel noise of up to this standard deviation.",
    show_default=RECIPE, rich_help_panel=ADVANCED,
)  # fmt: skip
LabelSmoothingOption = typer.Option(
    None, "--label-smoothing", min=0.0, max=0.99, help="Smoothing of the auxiliary digit targets.",
    show_default=RECIPE, rich_help_panel=ADVANCED,
)  # fmt: skip
AllPairsOption = typer.Option(
    None,
    "--all-pairs/--drawn-pairs",
    help="Comparison loss over every pair of digits in a batch (structured head and auxiliary loss only).",
    show_default=RECIPE,
    rich_help_panel=ADVANCED,
)
PairsOption = typer.Option(1000, "--pairs", min=1, help="Training pairs per round.", rich_help_panel=ADVANCED)
TestPairsOption = typer.Option(
    None, "--test-pairs", min=1, help="Test pairs per round.", show_default="--pairs", rich_help_panel=ADVANCED
)
ValFractionOption = typer.Option(
    None, "--val-fraction", min=0.0, max=0.9, help="Share of training pairs held out for model selection.",
    show_default=RECIPE, rich_help_panel=ADVANCED,
)  # fmt: skip


SCALE = "Scaling out"
ExecutorOption = typer.Option(
    Executor.local, "--executor", help="Run the cells in this process (local) or as Ray tasks (ray).",
    rich_help_panel=SCALE,
)  # fmt: skip
AddressOption = typer.Option(
    None, "--address", envvar="RAY_ADDRESS", help="A Ray cluster to join (ray).",
    show_default="a local cluster, started and stopped", rich_help_panel=SCALE,
)  # fmt: skip
CpusOption = typer.Option(None, "--cpus-per-cell", min=1, help="CPU threads each Ray cell declares and uses.",
                          show_default="as a local run's torch threads", rich_help_panel=SCALE)  # fmt: skip
GpusOption = typer.Option(0.25, "--gpus-per-cell", min=0.0, max=1.0, help="Share of a GPU each Ray cell declares.",
                          rich_help_panel=SCALE)  # fmt: skip
RetriesOption = typer.Option(2, "--retries", min=0, help="Times a Ray cell runs again when its worker is lost.",
                             rich_help_panel=SCALE)  # fmt: skip
ResumeOption = typer.Option(
    None, "--resume", help="Continue the interrupted run in this folder (its own configuration; finished cells are "
    "read back, not run again).", show_default=False, rich_help_panel=SCALE,
)  # fmt: skip

# Grid axes of bench and tune: comma lists (layer lists separated by /), each value a cell of the grid.
ArchListOption = typer.Option(
    None, "--arch", help="Architectures, a comma list (digitcmp list).", show_default="the study's: " + ",".join(STUDY)
)
AxisChannelsOption = typer.Option(
    None,
    "--channels",
    help="Channel lists of the convolution layers, separated by / (8/16/32: three values; 16,32/32,64: two).",
    show_default=RECIPE,
    rich_help_panel=ADVANCED,
)
AxisHiddenOption = typer.Option(
    None,
    "--hidden",
    help="Hidden layer lists of the towers, separated by / (128,64,32/256,128: two values).",
    show_default=RECIPE,
    rich_help_panel=ADVANCED,
)
AxisActivationOption = typer.Option(
    None, "--activation", help="Activations, a comma list (relu,tanh,sigmoid,selu).", show_default="relu",
    rich_help_panel=ADVANCED,
)  # fmt: skip
AxisDropoutOption = typer.Option(
    None, "--dropout", help="The towers' dropout rates, a comma list.", show_default=RECIPE, rich_help_panel=ADVANCED
)
AxisBatchNormOption = typer.Option(
    None, "--batch-norm", help="Batch normalisation in the towers: on, off or on,off.", show_default=RECIPE,
    rich_help_panel=ADVANCED,
)  # fmt: skip
AxisHeadWidthOption = typer.Option(
    None, "--head-width", help="Hidden units of the mlp head, a comma list.", show_default="64",
    rich_help_panel=ADVANCED,
)  # fmt: skip
AxisLrOption = typer.Option(
    None, "--lr", help="Learning rates, a comma list.", show_default=RECIPE, rich_help_panel=ADVANCED
)
AxisBatchSizeOption = typer.Option(
    None, "--batch-size", help="Pairs per step, a comma list.", show_default=RECIPE, rich_help_panel=ADVANCED
)
AxisWeightDecayOption = typer.Option(
    None, "--weight-decay", help="Weight decays, a comma list.", show_default=RECIPE, rich_help_panel=ADVANCED
)


EPILOG_TRAIN = examples(
    "digitcmp train --rounds 10",
    "digitcmp train --arch conv6 --no-weight-sharing --aux-weight 0",
    "digitcmp train --data-dir ~/data/mnist --json > run.json",
)


@app.command(epilog=EPILOG_TRAIN)
@friendly
def train(
    arch: Arch = typer.Option(None, "--arch", help="Architecture (digitcmp list).", show_default="vgg4"),
    weight_sharing: bool = typer.Option(
        None, "--weight-sharing/--no-weight-sharing", help="One tower for both digits.", show_default="on"
    ),
    aux_weight: float = typer.Option(
        None, "--aux-weight", min=0.0, help="Weight of the auxiliary digit loss, 0 = off.", show_default="1"
    ),
    rounds: int = typer.Option(1, "--rounds", min=1, help="Rounds, each a fresh data draw and initialisation."),
    epochs: int = EpochsOption,
    seed: int = SeedOption,
    device: Device = DeviceOption,
    data_dir: Path = DataDirOption,
    out: Path = typer.Option(None, "--out", help="Run folder.", show_default="runs/<timestamp>-<variant>"),
    json_output: bool = JsonOption,
    quiet: bool = QuietOption,
    channels: str = typer.Option(
        None,
        "--channels",
        help="Channels of each convolution layer, a comma list; one number scales the architecture's default.",
        show_default=RECIPE,
        rich_help_panel=ADVANCED,
    ),
    hidden: str = typer.Option(
        None,
        "--hidden",
        help="Widths of the tower's hidden fully connected layers, a comma list ('' for none).",
        show_default=RECIPE,
        rich_help_panel=ADVANCED,
    ),
    activation: Activation = typer.Option(
        None, "--activation", help="Activation function.", show_default="relu", rich_help_panel=ADVANCED
    ),
    dropout: float = typer.Option(
        None,
        "--dropout",
        min=0.0,
        max=0.95,
        help="The towers' dropout rate.",
        show_default=RECIPE,
        rich_help_panel=ADVANCED,
    ),
    batch_norm: bool = typer.Option(
        None,
        "--batch-norm/--no-batch-norm",
        help="Batch normalisation in the towers.",
        show_default=RECIPE,
        rich_help_panel=ADVANCED,
    ),
    head: Head = HeadOption,
    head_width: int = typer.Option(
        None,
        "--head-width",
        min=1,
        help="Hidden units of the mlp comparison head.",
        show_default="64",
        rich_help_panel=ADVANCED,
    ),
    tta: bool = TtaOption,
    tta_warps: int = TtaWarpsOption,
    ensemble: int = EnsembleOption,
    batch_size: int = typer.Option(
        None, "--batch-size", min=1, help="Pairs per step.", show_default=RECIPE, rich_help_panel=ADVANCED
    ),
    lr: float = typer.Option(
        None, "--lr", min=0.0, help="Learning rate (peak of onecycle).", show_default=RECIPE, rich_help_panel=ADVANCED
    ),
    optimizer: Optimizer = OptimizerOption,
    momentum: float = MomentumOption,
    loss: LossKind = LossOption,
    weight_decay: float = typer.Option(
        None, "--weight-decay", min=0.0, help="Weight decay.", show_default=RECIPE, rich_help_panel=ADVANCED
    ),
    schedule: Schedule = ScheduleOption,
    shift: int = ShiftOption,
    swap: bool = SwapOption,
    elastic: float = ElasticOption,
    rotate: float = RotateOption,
    shear: float = ShearOption,
    thickness: float = ThicknessOption,
    blur: float = BlurOption,
    contrast: float = ContrastOption,
    noise: float = NoiseOption,
    label_smoothing: float = LabelSmoothingOption,
    all_pairs: bool = AllPairsOption,
    pairs: int = PairsOption,
    test_pairs: int = TestPairsOption,
    val_fraction: float = ValFractionOption,
    download: bool = DownloadOption,
) -> None:
    """Train one variant for R rounds and report test accuracy per round and mean ± std."""
    require_training("train")
    from .config import TrainConfig
    from .data import load_source
    from .report import rounds_table, stderr_console, stdout_console
    from .train import resolve_device, train_and_save

    variant = create_variant(
        value(arch),
        weight_sharing,
        aux_weight,
        channels=parse_layers(channels, "--channels"),
        hidden=parse_layers(hidden, "--hidden"),
        activation=value(activation),
        dropout=dropout,
        batch_norm=batch_norm,
        head=value(head),
        head_width=head_width,
        tta=tta,
        ensemble=ensemble,
        tta_warps=tta_warps,
    )
    config = TrainConfig.for_arch(
        variant.arch,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=value(optimizer),
        momentum=momentum,
        loss=value(loss),
        weight_decay=weight_decay,
        schedule=value(schedule),
        shift=shift,
        swap=swap,
        elastic=elastic,
        rotate=rotate,
        shear=shear,
        thickness=thickness,
        blur=blur,
        contrast=contrast,
        noise=noise,
        label_smoothing=label_smoothing,
        all_pairs=all_pairs,
        val_fraction=val_fraction,
    )
    if all_pairs and config.fitted(variant) != config:
        raise DigitcmpError(
            "--all-pairs needs the structured head and an auxiliary loss; add --head structured and --aux-weight 1, "
            "or drop --all-pairs"
        )
    torch_device = resolve_device(device.value)
    folder = prepare_out(out or Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{variant.name}")
    source = load_source(data_dir, download)
    log = stderr_console(quiet or json_output)
    log.print(f"[dim]{source.describe()}[/dim]")
    with progress_bar(rounds * config.epochs, f"training {variant.name}", quiet or json_output) as advance:
        run = train_and_save(
            variant, config, source, rounds, pairs, test_pairs or pairs, seed, torch_device, folder, advance
        )
    if json_output:
        typer.echo(json.dumps(run.record, indent=2))
        return
    stdout_console().print(rounds_table(run.result))
    log.print(f"checkpoint (round {run.result.best_round}, best validation accuracy): {run.checkpoint}")
    log.print(f"next: digitcmp export {run.checkpoint}")


EPILOG_BENCH = examples(
    "digitcmp bench --quick",
    "digitcmp bench --data-dir ~/data/mnist --out runs/study",
    "digitcmp bench --arch conv6 --channels 8/16/32/64 --lr 1e-3,3e-3",
    "digitcmp bench --arch deep-fc --activation relu,tanh --dropout 0,0.2,0.5 --batch-norm on,off",
    "digitcmp bench --quick --compare benchmarks/baseline.json",
)


@app.command(epilog=EPILOG_BENCH)
@friendly
def bench(
    arch: str = ArchListOption,
    aux_weight: str = typer.Option(
        None, "--aux-weight", help="Auxiliary-loss weights, a comma list (0 = off).", show_default="0,1"
    ),
    preset: str = typer.Option(
        None, "--preset", help="A report's setup and table instead of the grid (digitcmp list).", show_default=False
    ),
    rounds: int = typer.Option(None, "--rounds", min=1, help="Rounds per variant.", show_default="10; --quick: 3"),
    epochs: int = EpochsOption,
    quick: bool = typer.Option(
        False,
        "--quick",
        help="The study's ranking in minutes: every variant, 3 rounds, each architecture for the fewest epochs that "
        "rank its techniques as the full study does.",
    ),
    seed: int = SeedOption,
    device: Device = DeviceOption,
    data_dir: Path = DataDirOption,
    out: Path = typer.Option(None, "--out", help="Results folder.", show_default="runs/bench-<timestamp>"),
    json_output: bool = JsonOption,
    quiet: bool = QuietOption,
    executor: Executor = ExecutorOption,
    address: str = AddressOption,
    cpus_per_cell: int | None = CpusOption,
    gpus_per_cell: float = GpusOption,
    retries: int = RetriesOption,
    resume: Path = ResumeOption,
    compare_with: Path = typer.Option(
        None, "--compare", help="Baseline results.json: exit 1 if a variant regresses.", rich_help_panel=GATE
    ),
    tolerance: float = typer.Option(
        0.03,
        "--tolerance",
        min=0.0,
        help="Allowed drop in mean test accuracy against --compare (absolute).",
        rich_help_panel=GATE,
    ),
    time_tolerance: float = typer.Option(
        1.0,
        "--time-tolerance",
        min=0.0,
        help="Allowed growth of seconds per round against --compare (1.0 = twice as slow).",
        rich_help_panel=GATE,
    ),
    time_slack: float = typer.Option(
        1.0,
        "--time-slack",
        min=0.0,
        help="Seconds per round a variant may always grow by against --compare (sub-second times are noise).",
        rich_help_panel=GATE,
    ),
    channels: str = AxisChannelsOption,
    hidden: str = AxisHiddenOption,
    activation: str = AxisActivationOption,
    dropout: str = AxisDropoutOption,
    batch_norm: str = AxisBatchNormOption,
    head: Head = HeadOption,
    head_width: str = AxisHeadWidthOption,
    tta: bool = TtaOption,
    tta_warps: int = TtaWarpsOption,
    ensemble: int = EnsembleOption,
    batch_size: str = AxisBatchSizeOption,
    lr: str = AxisLrOption,
    optimizer: Optimizer = OptimizerOption,
    momentum: float = MomentumOption,
    loss: LossKind = LossOption,
    weight_decay: str = AxisWeightDecayOption,
    schedule: Schedule = ScheduleOption,
    shift: int = ShiftOption,
    swap: bool = SwapOption,
    elastic: float = ElasticOption,
    rotate: float = RotateOption,
    shear: float = ShearOption,
    thickness: float = ThicknessOption,
    blur: float = BlurOption,
    contrast: float = ContrastOption,
    noise: float = NoiseOption,
    label_smoothing: float = LabelSmoothingOption,
    all_pairs: bool = AllPairsOption,
    pairs: int = PairsOption,
    test_pairs: int = TestPairsOption,
    val_fraction: float = typer.Option(
        0.1,
        "--val-fraction",
        min=0.0,
        max=0.9,
        help="Share of training pairs held out for model selection.",
        rich_help_panel=ADVANCED,
    ),
    download: bool = DownloadOption,
) -> None:
    """Run every variant (architecture × weight sharing × auxiliary loss) over the same rounds and compare them."""
    require_training("bench")
    from .archs import ARCHS
    from .bench import QUICK_ROUNDS, BenchConfig, compare, expand, read_baseline, run_study
    from .data import load_source
    from .executor import ExecutorConfig
    from .report import (
        compare_table,
        detail_table,
        outcome_line,
        reproduction_table,
        stderr_console,
        stdout_console,
        summary_table,
    )
    from .train import resolve_device

    axes = grid_axes(channels, hidden, activation, dropout, batch_norm, head_width, lr, batch_size, weight_decay)
    if preset is not None:
        refuse_grid_with_preset(arch, aux_weight, axes, quick)
    config = BenchConfig(
        archs=parse_list(arch, str, "--arch") or STUDY,
        aux_weights=parse_list(aux_weight or "0,1", float, "--aux-weight"),
        **axes,
        rounds=rounds or (QUICK_ROUNDS if quick else 10),
        pairs=pairs,
        test_pairs=test_pairs or pairs,
        val_fraction=preset_val_fraction(preset) if preset is not None else val_fraction,
        preset=preset,
        seed=seed,
        variant_options={"head": value(head), "tta": tta, "tta_warps": tta_warps, "ensemble": ensemble},
        arch_overrides={a: {"epochs": s.quick_epochs} for a, s in ARCHS.items() if s.quick_epochs}
        if quick and not epochs
        else {},
        overrides=training_overrides(
            epochs,
            optimizer,
            schedule,
            label_smoothing,
            all_pairs,
            **augmentation(shift, swap, elastic, rotate, shear, thickness, blur, contrast, noise),
            momentum=momentum,
            loss=value(loss),
        ),
    )
    if resume is not None:
        config, out = BenchConfig(**resumed_config(resume, "bench")), resume
    running = ExecutorConfig(executor.value, address, cpus_per_cell, gpus_per_cell, retries)
    jobs = expand(config)
    baseline = read_baseline(compare_with) if compare_with else None
    torch_device = resolve_device(device.value)
    folder = prepare_out(out or Path("runs") / f"bench-{datetime.now():%Y%m%d-%H%M%S}")
    source = load_source(data_dir, download)
    log = stderr_console(quiet or json_output)
    log.print(f"[dim]{source.describe()}; {len(jobs)} variants × {config.rounds} rounds[/dim]")
    total = sum(job.config.epochs for job in jobs) * config.rounds
    with progress_bar(total, "bench", quiet or json_output) as advance:
        study = run_study(
            config,
            source,
            torch_device,
            folder,
            advance,
            lambda record: log.print(outcome_line(record)),
            command_line(),
            running,
            resume is not None,
        )
    document = study.document
    if json_output:
        typer.echo(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        console = stdout_console()
        console.print(summary_table(document))
        console.print(detail_table(document))
        if document.get("reproduction"):
            console.print(reproduction_table(document["reproduction"]))
    log.print(f"results in {folder}/ (results.json, results.csv, summary.md, curves.png, accuracy.png, best.pt)")
    if study.interrupted:
        log.print(f"interrupted: results cover the {len(document['variants'])} variants that finished")
        raise typer.Exit(130)
    if baseline is not None:
        rows = compare(document, baseline, tolerance, time_tolerance, time_slack)
        if not json_output:
            stdout_console().print(compare_table(rows, tolerance, time_tolerance, time_slack))
        regressions = [r["name"] for r in rows if r["regression"]]
        if regressions:
            typer.echo(f"error: regression against {compare_with}: {', '.join(regressions)}", err=True)
            raise typer.Exit(1)
    if any(v["status"] != "ok" for v in document["variants"]):
        raise typer.Exit(1)


def command_line() -> str:
    """The command as typed (recorded beside reproduced figures)."""
    return " ".join(INVOCATION)


def refuse_grid_with_preset(arch: str | None, aux_weight: str | None, axes: dict, quick: bool) -> None:
    """A preset brings its own cells: grid axes beside it would be ignored, so they are refused."""
    given = [flag for flag, value in (("--arch", arch), ("--aux-weight", aux_weight), ("--quick", quick)) if value]
    given += [f"--{name.replace('_', '-')}" for name, value in axes.items() if value and name != "tower_axes"]
    given += [f"--{name.replace('_', '-')}" for name in axes["tower_axes"]]
    if given:
        raise DigitcmpError(f"--preset brings its own cells; drop {', '.join(given)}")


def resumed_config(folder: Path, kind: str) -> dict:
    """The configuration an interrupted run in ``folder`` started with, as the config's fields."""
    from .runs import read_config, tuples

    saved = read_config(folder)
    if saved["kind"] != kind:
        raise DigitcmpError(f"--resume {folder} holds a {saved['kind']} run; resume it with 'digitcmp {saved['kind']}'")
    return tuples(saved["config"])


def preset_val_fraction(name: str) -> float:
    from .presets import get_preset

    return float(get_preset(name).train.get("val_fraction", 0.1))


def preset_search(name: str) -> dict:
    """A preset's (reduced) search as TuneConfig fields; its epochs become the tuning trainings' epochs."""
    from .presets import get_preset

    search = dict(get_preset(name).search)
    if not search:
        raise DigitcmpError(f"preset '{name}' searched nothing (fixed settings); run 'digitcmp bench --preset {name}'")
    if "epochs" in search:
        search["tune_epochs"] = search.pop("epochs")
    return search


def grid_axes(
    channels: str | None,
    hidden: str | None,
    activation: str | None,
    dropout: str | None,
    batch_norm: str | None,
    head_width: str | None,
    lr: str | None,
    batch_size: str | None,
    weight_decay: str | None,
) -> dict:
    """The grid axes of bench and tune from their flags; axes not given take each architecture's own value."""
    towers = {
        "channels": parse_layer_lists(channels, "--channels"),
        "hidden": parse_layer_lists(hidden, "--hidden"),
        "activation": parse_list(activation, str, "--activation"),
        "dropout": parse_list(dropout, float, "--dropout"),
        "batch_norm": parse_switches(batch_norm, "--batch-norm"),
        "head_width": parse_list(head_width, int, "--head-width"),
    }
    return {
        "tower_axes": {name: values for name, values in towers.items() if values},
        "lrs": parse_list(lr, float, "--lr"),
        "batch_sizes": parse_list(batch_size, int, "--batch-size"),
        "weight_decays": parse_list(weight_decay, float, "--weight-decay"),
    }


def augmentation(
    shift: int | None,
    swap: bool | None,
    elastic: float | None,
    rotate: float | None,
    shear: float | None,
    thickness: float | None,
    blur: float | None,
    contrast: float | None,
    noise: float | None,
) -> dict:
    """The augmentation flags as TrainConfig fields."""
    return {"shift": shift, "swap": swap, "elastic": elastic, "rotate": rotate, "shear": shear,
            "thickness": thickness, "blur": blur, "contrast": contrast, "noise": noise}  # fmt: skip


def training_overrides(
    epochs: int | None,
    optimizer: Optimizer | None,
    schedule: Schedule | None,
    label_smoothing: float | None,
    all_pairs: bool | None,
    **settings: float | bool | str | None,
) -> dict:
    """TrainConfig fields set for every architecture (None: each architecture's recipe)."""
    return {
        "epochs": epochs,
        "optimizer": value(optimizer),
        "schedule": value(schedule),
        "label_smoothing": label_smoothing,
        "all_pairs": all_pairs,
        **settings,
    }


EPILOG_TUNE = examples(
    "digitcmp tune --arch lenet --lr 1e-3,3e-3 --folds 3",
    "digitcmp tune --arch deep-fc --activation relu,tanh,selu --dropout 0,0.2,0.5 --batch-norm on,off",
    "digitcmp tune --arch conv6 --technique both --aux-weight 0.5,1,2 --lr 1e-3,3e-3 --batch-size 50,100 --trials 6",
)


@app.command(epilog=EPILOG_TUNE)
@friendly
def tune(
    arch: str = ArchListOption,
    technique: str = typer.Option(
        None,
        "--technique",
        help="Techniques, a comma list: none, ws, aux, both (the table's columns).",
        show_default="none,ws,aux,both",
    ),
    aux_weight: str = typer.Option(
        None, "--aux-weight", help="Auxiliary-loss weights searched where it is on.", show_default="1"
    ),
    preset: str = typer.Option(
        None, "--preset", help="A report's cells and its search (reduced where it does not fit).", show_default=False
    ),
    trials: int = typer.Option(
        0, "--trials", min=0, help="Configurations sampled per cell from a larger grid (0: the whole grid)."
    ),
    folds: int = typer.Option(
        0, "--folds", min=0, help="Score by k-fold cross-validation with this many folds (0: one held-out share)."
    ),
    holdout: float = typer.Option(
        0.2, "--holdout", min=0.05, max=0.5, help="Share of the tuning pairs that scores configurations (no folds)."
    ),
    tune_pairs: int = typer.Option(1000, "--tune-pairs", min=20, help="Pairs drawn for tuning (training digits)."),
    rounds: int = typer.Option(10, "--rounds", min=1, help="Evaluation rounds of each selected configuration."),
    epochs: int = EpochsOption,
    seed: int = SeedOption,
    device: Device = DeviceOption,
    data_dir: Path = DataDirOption,
    out: Path = typer.Option(None, "--out", help="Results folder.", show_default="runs/tune-<timestamp>"),
    json_output: bool = JsonOption,
    quiet: bool = QuietOption,
    executor: Executor = ExecutorOption,
    address: str = AddressOption,
    cpus_per_cell: int | None = CpusOption,
    gpus_per_cell: float = GpusOption,
    retries: int = RetriesOption,
    resume: Path = ResumeOption,
    channels: str = AxisChannelsOption,
    hidden: str = AxisHiddenOption,
    activation: str = AxisActivationOption,
    dropout: str = AxisDropoutOption,
    batch_norm: str = AxisBatchNormOption,
    head: Head = HeadOption,
    head_width: str = AxisHeadWidthOption,
    tta: bool = TtaOption,
    tta_warps: int = TtaWarpsOption,
    ensemble: int = EnsembleOption,
    batch_size: str = AxisBatchSizeOption,
    lr: str = AxisLrOption,
    optimizer: Optimizer = OptimizerOption,
    momentum: float = MomentumOption,
    loss: LossKind = LossOption,
    weight_decay: str = AxisWeightDecayOption,
    schedule: Schedule = ScheduleOption,
    shift: int = ShiftOption,
    swap: bool = SwapOption,
    elastic: float = ElasticOption,
    rotate: float = RotateOption,
    shear: float = ShearOption,
    thickness: float = ThicknessOption,
    blur: float = BlurOption,
    contrast: float = ContrastOption,
    noise: float = NoiseOption,
    label_smoothing: float = LabelSmoothingOption,
    all_pairs: bool = AllPairsOption,
    pairs: int = PairsOption,
    test_pairs: int = TestPairsOption,
    download: bool = DownloadOption,
) -> None:
    """Choose each cell's hyper-parameters on validation pairs, then measure the choice on fresh rounds."""
    require_training("tune")
    from .data import load_source
    from .executor import ExecutorConfig
    from .report import reproduction_table, stderr_console, stdout_console, tune_line, tune_table
    from .train import resolve_device
    from .tune import TuneConfig, cell_specs, run_and_save, total_epochs

    axes = grid_axes(channels, hidden, activation, dropout, batch_norm, head_width, lr, batch_size, weight_decay)
    search: dict = {}
    if preset is not None:
        refuse_grid_with_preset(arch or technique, aux_weight, axes, False)
        search = preset_search(preset)
    config = TuneConfig(
        archs=parse_list(arch, str, "--arch") or STUDY,
        techniques=parse_list(technique or "none,ws,aux,both", str, "--technique"),
        aux_weights=parse_list(aux_weight or "1", float, "--aux-weight") if preset is None else (),
        **{**axes, **{k: v for k, v in search.items() if k not in ("folds", "holdout", "tune_epochs")}},
        trials=trials,
        folds=search.get("folds", folds),
        holdout=search.get("holdout", holdout),
        tune_epochs=search.get("tune_epochs"),
        val_fraction=preset_val_fraction(preset) if preset is not None else 0.1,
        preset=preset,
        tune_pairs=tune_pairs,
        rounds=rounds,
        pairs=pairs,
        test_pairs=test_pairs or pairs,
        seed=seed,
        variant_options={"head": value(head), "tta": tta, "tta_warps": tta_warps, "ensemble": ensemble},
        overrides=training_overrides(
            epochs,
            optimizer,
            schedule,
            label_smoothing,
            all_pairs,
            **augmentation(shift, swap, elastic, rotate, shear, thickness, blur, contrast, noise),
            momentum=momentum,
            loss=value(loss),
        ),
    )
    if resume is not None:
        config, out = TuneConfig(**resumed_config(resume, "tune")), resume
    running = ExecutorConfig(executor.value, address, cpus_per_cell, gpus_per_cell, retries)
    total = total_epochs(config)  # also checks every cell's grid before anything trains
    torch_device = resolve_device(device.value)
    folder = prepare_out(out or Path("runs") / f"tune-{datetime.now():%Y%m%d-%H%M%S}")
    source = load_source(data_dir, download)
    log = stderr_console(quiet or json_output)
    log.print(f"[dim]{source.describe()}; {len(cell_specs(config))} cells[/dim]")
    with progress_bar(total, "tune", quiet or json_output) as advance:
        run = run_and_save(
            config,
            source,
            torch_device,
            folder,
            advance,
            lambda record: log.print(tune_line(record)),
            command_line(),
            running,
            resume is not None,
        )
    if json_output:
        typer.echo(json.dumps(run.document, indent=2, ensure_ascii=False))
    else:
        stdout_console().print(tune_table(run.document))
        if run.document.get("reproduction"):
            stdout_console().print(reproduction_table(run.document["reproduction"]))
    log.print(f"results in {folder}/ (results.json, results.csv, summary.md, curves.png, accuracy.png, best.pt)")
    if run.interrupted:
        log.print(f"interrupted: results cover the {len(run.document['cells'])} cells that finished")
        raise typer.Exit(130)
    if any(cell.get("status") != "ok" for cell in run.document["cells"]):
        raise typer.Exit(1)


EPILOG_EXPORT = examples("digitcmp export", "digitcmp export runs/study/best.pt --out models/mine.onnx")


@app.command(epilog=EPILOG_EXPORT)
@friendly
def export(
    checkpoint: Path = typer.Argument(
        None,
        help="Checkpoint of a train or bench run.",
        show_default="the newest checkpoint.pt or best.pt under runs/",
    ),
    out: Path = typer.Option(None, "--out", help="ONNX file.", show_default="models/<variant>.onnx"),
    data_dir: Path = DataDirOption,
    quiet: bool = QuietOption,
    opset: int = typer.Option(17, "--opset", min=17, help="ONNX opset.", rich_help_panel=ADVANCED),
) -> None:
    """Export a checkpoint to ONNX, checked by onnx.checker and parity with torch on real test pairs."""
    require_training("export")
    from .data import load_source
    from .export import export_onnx, latest_checkpoint
    from .report import export_panel, stderr_console, stdout_console

    log = stderr_console(quiet)
    if checkpoint is None:
        checkpoint = latest_checkpoint()
        log.print(f"checkpoint: {checkpoint} (the newest under runs/)")
    summary = export_onnx(checkpoint, out, load_source(data_dir), opset)
    stdout_console().print(export_panel(summary))
    log.print(f"next: digitcmp predict first.png second.png --model {summary.path}")


EPILOG_PREDICT = examples(
    "digitcmp predict three.png seven.jpg",
    "digitcmp predict a.png b.png --json",
    "digitcmp predict --pairs pairs.csv --model models/mine.onnx",
)


@app.command(epilog=EPILOG_PREDICT)
@friendly
def predict(
    images: list[Path] = typer.Argument(
        None, help="Two image files (PNG, JPEG, BMP, GIF, TIFF, WebP) or .npy digits.", show_default=False
    ),
    pairs: Path = typer.Option(None, "--pairs", help="CSV with header first,second: many pairs in batches."),
    model: Path = typer.Option(None, "--model", help="ONNX model.", show_default="the model shipped with digitcmp"),
    json_output: bool = typer.Option(False, "--json", help="JSON on stdout (one object per pair with --pairs)."),
    save_digits_to: Path = typer.Option(
        None, "--save-digits", help="Write the 28×28 digit the model saw for each input, as PNG, into this folder."
    ),
) -> None:
    """Is the digit in the first image ≤ the digit in the second? (onnxruntime; no torch needed)"""
    from .predict import load_model, read_pairs_csv, save_digits, timed
    from .report import prediction_panel, predictions_table, stderr_console, stdout_console

    if pairs is None and len(images or []) != 2:
        raise DigitcmpError("predict needs two image files, or --pairs CSV")
    if pairs is not None and images:
        raise DigitcmpError("give either two image files or --pairs CSV, not both")
    onnx_model = load_model(model)
    todo = read_pairs_csv(pairs) if pairs is not None else [(images[0], images[1])]
    results, seconds = timed(onnx_model, todo)
    if save_digits_to is not None:
        written = save_digits(results, save_digits_to)
        stderr_console(json_output).print(f"{len(written)} digits as the model saw them: {save_digits_to}/")
    if json_output:
        for result in results:
            typer.echo(json.dumps(result.to_dict()))
        return
    console = stdout_console()
    if pairs is None:
        console.print(prediction_panel(results[0]))
        return
    console.print(predictions_table(results))
    stderr_console().print(f"{len(results)} pairs in {seconds:.2f} s ({len(results) / seconds:,.0f} pairs/s)")


EPILOG_SERVE = examples(
    "digitcmp serve",
    "digitcmp serve --model models/mine.onnx --port 8080",
    "curl -F first=@three.png -F second=@seven.jpg http://127.0.0.1:8000/api/compare",
)
SERVE_MODULES = ("starlette", "uvicorn", "multipart")  # what the serve extra adds
INSTALL_SERVE = "pip install 'digitcmp[serve]'"


@app.command(epilog=EPILOG_SERVE)
@friendly
def serve(
    model: Path = typer.Option(None, "--model", help="ONNX model.", show_default="the model shipped with digitcmp"),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port to listen on."),
) -> None:
    """A web page to draw or drop two digits, and an HTTP API for the same comparison (no torch needed)."""
    missing = [name for name in SERVE_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise DigitcmpError(
            f"'digitcmp serve' needs {', '.join(missing)}, which come with the serve extra: {INSTALL_SERVE}"
        )
    from .report import stderr_console
    from .serve import serve as run_server

    stderr_console().print(f"digitcmp serve: http://{host}:{port}/  (API: POST /api/compare; Ctrl-C stops)")
    run_server(model, host, port)


@app.command("list")
@friendly
def list_architectures(json_output: bool = JsonOption) -> None:
    """List the architectures (what each is, its parameters with and without weight sharing, its recipe) and the
    presets that reproduce the course reports."""
    from .report import architectures_records, architectures_table, presets_records, presets_table, stdout_console

    if json_output:
        records = {"architectures": architectures_records(), "presets": presets_records()}
        typer.echo(json.dumps(records, indent=2, ensure_ascii=False))
        return
    stdout_console().print(architectures_table())
    stdout_console().print(presets_table())
