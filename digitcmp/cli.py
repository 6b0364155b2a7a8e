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
        except OSError as exc:  # e.g. an --out folder that cannot be written: a path the user gave
            where = f"{exc.filename}: " if exc.filename else ""
            typer.echo(f"error: {where}{exc.strerror or exc}; check the path and its permissions", err=True)
            raise typer.Exit(2) from None
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


RECIPE = "[default: the architecture's recipe, else"
DEFAULT = "[default: the default variant's, docs/results.md"


def default_variant(
    arch: str | None, weight_sharing: bool | None, aux_weight: float | None, width, head, tta, ensemble, tta_warps
):
    """The variant the flags name; flags left unset take the project's default variant's values."""
    from .models import DEFAULT_VARIANT, Variant

    return Variant(
        arch or DEFAULT_VARIANT.arch,
        DEFAULT_VARIANT.weight_sharing if weight_sharing is None else weight_sharing,
        DEFAULT_VARIANT.aux_weight if aux_weight is None else aux_weight,
        width,
        head,
        tta,
        ensemble,
        tta_warps,
    ).resolved()


DeviceOption = typer.Option("auto", "--device", help="auto, cpu or cuda.")
QuietOption = typer.Option(False, "--quiet", "-q", help="No progress or notes on stderr.")
OptimizerOption = typer.Option(None, "--optimizer", help=f"adam, adamw or sgd {RECIPE} adam].", show_default=False)
ScheduleOption = typer.Option(None, "--schedule", help=f"constant or onecycle {RECIPE} constant].", show_default=False)
LabelSmoothingOption = typer.Option(
    None, "--label-smoothing", help=f"Smoothing of the digit targets, 0-1 {RECIPE} 0].", show_default=False
)
ElasticOption = typer.Option(
    None, "--elastic", help=f"Elastic warp of digits, displacement std in px, 0-2 {RECIPE} 0].", show_default=False
)
AllPairsOption = typer.Option(
    None,
    "--all-pairs/--drawn-pairs",
    help=f"Comparison loss over every pair of digits in a batch, not only the drawn pairs (structured head and "
    f"auxiliary loss only) {RECIPE} drawn].",
    show_default=False,
)
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
    arch: str = typer.Option(None, "--arch", help=f"Architecture (docs/models.md) {DEFAULT}].", show_default=False),
    weight_sharing: bool = typer.Option(
        None, "--weight-sharing/--no-weight-sharing", help=f"One tower for both digits {DEFAULT}].", show_default=False
    ),
    aux_weight: float = typer.Option(
        None, "--aux-weight", help=f"Weight of the auxiliary digit loss, 0 = off {DEFAULT}].", show_default=False
    ),
    width: int = typer.Option(None, "--width", help="Channels of conv6 (8-64) or vgg4.", show_default=False),
    head: str = typer.Option(None, "--head", help=f"mlp or structured {RECIPE} mlp].", show_default=False),
    tta: bool = typer.Option(
        None,
        "--tta/--no-tta",
        help=f"Average predictions over 1-pixel shifts and fixed warps {RECIPE} off].",
        show_default=False,
    ),
    tta_warps: int = typer.Option(
        None,
        "--tta-warps",
        help="Fixed elastic warps among the test-time views, 0-64 [default: the architecture's, vgg4 32, else 0].",
        show_default=False,
    ),
    ensemble: int = typer.Option(
        None,
        "--ensemble",
        help="Networks per model, trained independently, probabilities averaged [default: 1].",
        show_default=False,
    ),
    rounds: int = typer.Option(1, "--rounds", min=1, help="Rounds, each a fresh data draw and initialisation."),
    epochs: int = typer.Option(
        None, "--epochs", min=1, help=f"Passes over the pairs {RECIPE} 25].", show_default=False
    ),
    batch_size: int = typer.Option(
        None, "--batch-size", min=1, help=f"Pairs per step {RECIPE} 100].", show_default=False
    ),
    lr: float = typer.Option(
        None, "--lr", help=f"Learning rate (peak of onecycle) {RECIPE} 1e-3].", show_default=False
    ),
    optimizer: str = OptimizerOption,
    weight_decay: float = typer.Option(None, "--weight-decay", help=f"Weight decay {RECIPE} 0].", show_default=False),
    schedule: str = ScheduleOption,
    shift: int = typer.Option(
        None, "--shift", help=f"Shift digits by up to N px, 0-4 {RECIPE} 0].", show_default=False
    ),
    swap: bool = typer.Option(
        None, "--swap/--no-swap", help=f"Add each pair swapped {RECIPE} off].", show_default=False
    ),
    elastic: float = ElasticOption,
    label_smoothing: float = LabelSmoothingOption,
    all_pairs: bool = AllPairsOption,
    pairs: int = typer.Option(1000, "--pairs", min=1, help="Training pairs per round (and test pairs by default)."),
    test_pairs: int = typer.Option(None, "--test-pairs", min=1, help="Test pairs per round [default: --pairs]."),
    val_fraction: float = typer.Option(
        None,
        "--val-fraction",
        help=f"Share of training pairs held out for selection {RECIPE} 0.1].",
        show_default=False,
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the data draws, initialisation and shuffling."),
    device: str = DeviceOption,
    data_dir: Path = DataDir,
    download: bool = typer.Option(False, "--download", help="Download MNIST into --data-dir first (needs network)."),
    out: Path = typer.Option(
        None, "--out", help="Run folder [default: runs/<timestamp>-<variant>/].", show_default=False
    ),
    json_output: bool = typer.Option(False, "--json", help="Print only JSON on stdout."),
    quiet: bool = QuietOption,
) -> None:
    """Train one variant for R rounds and report test accuracy per round and mean ± std."""
    from .data import draw_rounds, load_source
    from .files import write_json
    from .report import environment, rounds_table, stderr_console, stdout_console
    from .train import TrainConfig, resolve_device, train_variant

    variant = default_variant(arch, weight_sharing, aux_weight, width, head, tta, ensemble, tta_warps)
    config = TrainConfig.for_arch(
        variant.arch,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        weight_decay=weight_decay,
        schedule=schedule,
        shift=shift,
        swap=swap,
        elastic=elastic,
        label_smoothing=label_smoothing,
        all_pairs=all_pairs,
        val_fraction=val_fraction,
    ).check()
    if all_pairs and config.fitted(variant) != config:
        raise DigitcmpError(
            "--all-pairs needs the structured head and an auxiliary loss; add --head structured and --aux-weight 1, "
            "or drop --all-pairs"
        )
    torch_device = resolve_device(device)
    source = load_source(data_dir, download)
    log = stderr_console(quiet or json_output)
    log.print(f"[dim]{source.describe()}[/dim]")
    data = draw_rounds(source, rounds, pairs, test_pairs or pairs, config.val_fraction, seed)
    with progress_bar(rounds * config.epochs, f"training {variant.name}", quiet or json_output) as advance:
        result = train_variant(variant, data, config, torch_device, seed, on_epoch=advance)
    folder = out or Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{variant.name}"
    context = {"seed": seed, "data": source.describe(), "environment": environment(str(torch_device))}
    checkpoint = result.save_best(folder / "checkpoint.pt", **context)
    record = {**result.to_dict(), **context, "checkpoint": str(checkpoint)}
    write_json(folder / "results.json", record)
    if json_output:
        typer.echo(json.dumps(record, indent=2))
        return
    stdout_console().print(rounds_table(result))
    log.print(f"checkpoint (round {result.best_round}, best validation accuracy): {checkpoint}")


def not_yet(name: str) -> None:
    raise DigitcmpError(f"'digitcmp {name}' is not available in this version yet", exit_code=1)


EPILOG_BENCH = (
    "Examples:  digitcmp bench --quick   ·   digitcmp bench --data-dir ../shared/mnist --out runs/study   ·   "
    "digitcmp bench --arch conv6 --width 8,16,32,64 --lr 1e-3,3e-3   ·   "
    "digitcmp bench --quick --compare benchmarks/baseline.json"
)


def parse_list(text: str | None, kind: type, flag: str) -> tuple:
    """Parse a comma list such as '1e-3,3e-3' for a grid axis."""
    if text is None:
        return ()
    try:
        values = tuple(kind(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise DigitcmpError(f"{flag} takes a comma list of {kind.__name__} values, got '{text}'") from None
    if not values:
        raise DigitcmpError(f"{flag} needs at least one value")
    return values


@app.command(epilog=EPILOG_BENCH)
@friendly
def bench(
    arch: list[str] = typer.Option(
        None, "--arch", help="Architectures (repeat or comma list; default: all registered).", show_default=False
    ),
    rounds: int = typer.Option(None, "--rounds", min=1, help="Rounds [default: 10; --quick: 2].", show_default=False),
    epochs: int = typer.Option(None, "--epochs", min=1, help=f"Epochs {RECIPE} 25; --quick: 10].", show_default=False),
    pairs: int = typer.Option(
        None, "--pairs", min=1, help="Pairs per split [default: 1000; --quick: 500].", show_default=False
    ),
    lr: str = typer.Option(None, "--lr", help=f"Learning rates, a comma list {RECIPE} 1e-3].", show_default=False),
    batch_size: str = typer.Option(
        None, "--batch-size", help=f"Batch sizes, a comma list {RECIPE} 100].", show_default=False
    ),
    aux_weight: str = typer.Option("0,1", "--aux-weight", help="Auxiliary-loss weights, a comma list (0 = off)."),
    weight_decay: str = typer.Option(
        None, "--weight-decay", help=f"Weight decays, a comma list {RECIPE} 0].", show_default=False
    ),
    width: str = typer.Option(None, "--width", help="Widths of conv6/vgg4, a comma list.", show_default=False),
    optimizer: str = OptimizerOption,
    schedule: str = ScheduleOption,
    elastic: float = ElasticOption,
    label_smoothing: float = LabelSmoothingOption,
    all_pairs: bool = AllPairsOption,
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Share of training pairs held out for selection."),
    quick: bool = typer.Option(False, "--quick", help="CI smoke run: 2 rounds, 10 epochs, 500 pairs, every variant."),
    seed: int = typer.Option(0, "--seed", help="Seed of the data draws and training."),
    device: str = DeviceOption,
    data_dir: Path = DataDir,
    out: Path = typer.Option(
        None, "--out", help="Results folder (default: runs/bench-<timestamp>/).", show_default=False
    ),
    compare_with: Path = typer.Option(
        None, "--compare", help="Baseline results.json: exit 1 if a variant regresses.", show_default=False
    ),
    tolerance: float = typer.Option(
        0.03, "--tolerance", min=0.0, help="Allowed drop in mean test accuracy against --compare (absolute)."
    ),
    time_tolerance: float = typer.Option(
        1.0,
        "--time-tolerance",
        min=0.0,
        help="Allowed growth of seconds per round against --compare (1.0 = twice as slow).",
    ),
    time_slack: float = typer.Option(
        1.0,
        "--time-slack",
        min=0.0,
        help="Seconds per round a variant may always grow by against --compare (sub-second times are noise).",
    ),
    quiet: bool = QuietOption,
) -> None:
    """Run every variant (architecture × weight sharing × auxiliary loss) over the same rounds and compare them."""
    from .bench import BenchConfig, compare, expand
    from .data import load_source
    from .models import ARCHS
    from .report import compare_table, detail_table, stderr_console, stdout_console
    from .train import resolve_device

    names = tuple(n.strip() for a in (arch or list(ARCHS)) for n in a.split(",") if n.strip())
    config = BenchConfig(
        archs=names,
        aux_weights=parse_list(aux_weight, float, "--aux-weight"),
        widths=parse_list(width, int, "--width"),
        lrs=parse_list(lr, float, "--lr"),
        batch_sizes=parse_list(batch_size, int, "--batch-size"),
        weight_decays=parse_list(weight_decay, float, "--weight-decay"),
        rounds=rounds or (2 if quick else 10),
        pairs=pairs or (500 if quick else 1000),
        test_pairs=pairs or (500 if quick else 1000),
        val_fraction=val_fraction,
        seed=seed,
        overrides={
            "epochs": epochs or (10 if quick else None),
            "optimizer": optimizer,
            "schedule": schedule,
            "elastic": elastic,
            "label_smoothing": label_smoothing,
            "all_pairs": all_pairs,
        },
    )
    jobs = expand(config)
    baseline = read_baseline(compare_with) if compare_with else None
    torch_device = resolve_device(device)
    source = load_source(data_dir)
    log = stderr_console(quiet)
    log.print(f"[dim]{source.describe()}; {len(jobs)} variants × {config.rounds} rounds[/dim]")
    folder = out or Path("runs") / f"bench-{datetime.now():%Y%m%d-%H%M%S}"
    with progress_bar(sum(job.config.epochs for job in jobs) * config.rounds, "bench", quiet) as advance:
        document, interrupted = run_and_save(config, source, torch_device, folder, advance, log)
    console = stdout_console()
    from .report import summary_table

    console.print(summary_table(document))
    console.print(detail_table(document))
    log.print(f"results in {folder}/ (results.json, results.csv, summary.md, curves.png, accuracy.png, best.pt)")
    if interrupted:
        log.print(f"interrupted: results cover the {len(document['variants'])} variants that finished")
        raise typer.Exit(130)
    if baseline is not None:
        rows = compare(document, baseline, tolerance, time_tolerance, time_slack)
        console.print(compare_table(rows, tolerance, time_tolerance, time_slack))
        regressions = [r["name"] for r in rows if r["regression"]]
        if regressions:
            typer.echo(f"error: regression against {compare_with}: {', '.join(regressions)}", err=True)
            raise typer.Exit(1)
    if any(v["status"] != "ok" for v in document["variants"]):
        raise typer.Exit(1)


def read_baseline(path: Path) -> dict:
    """Load a baseline results.json, refusing files that are not one."""
    try:
        baseline = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DigitcmpError(f"cannot read baseline {path} ({type(exc).__name__}); pass a bench results.json") from None
    if not isinstance(baseline, dict) or not isinstance(baseline.get("variants"), list):
        raise DigitcmpError(f"{path} is not a digitcmp bench results.json (no 'variants' list)")
    return baseline


def run_and_save(config, source, device, folder: Path, advance, log) -> tuple[dict, bool]:
    """Run the grid, telling each variant's result as it ends; write every results file for what finished."""
    from .bench import expand, results_document, run_bench, save_best
    from .report import environment, write_bench_files

    def done(outcome) -> None:
        if outcome.result is None:
            log.print(f"❌ {outcome.job.variant.name}: {outcome.error}")
        else:
            mean, std = outcome.result.mean_std("test_accuracy")
            log.print(f"✅ {outcome.job.variant.name}: {100 * mean:.1f} ± {100 * std:.1f}%")

    outcomes = run_bench(config, source, device, advance, on_done=done)
    document = results_document(config, outcomes, environment(str(device)), source.describe())
    save_best(outcomes, document, folder / "best.pt", seed=config.seed)
    write_bench_files(folder, document)
    return document, len(outcomes) < len(expand(config))


EPILOG_EXPORT = (
    "Examples:  digitcmp export   ·   digitcmp export runs/bench-20261123-101500/best.pt --out models/mine.onnx"
)


@app.command(epilog=EPILOG_EXPORT)
@friendly
def export(
    checkpoint: Path = typer.Argument(
        None, help="Checkpoint [default: best.pt of the newest run under runs/].", show_default=False
    ),
    out: Path = typer.Option(None, "--out", help="ONNX file [default: models/<variant>.onnx].", show_default=False),
    opset: int = typer.Option(17, "--opset", help="ONNX opset (17 or newer)."),
    data_dir: Path = DataDir,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No notes on stderr."),
) -> None:
    """Export a checkpoint to ONNX, checked by onnx.checker and parity with torch on real test pairs."""
    from .data import load_source
    from .export import export_onnx, latest_bench_checkpoint
    from .report import export_panel, stderr_console, stdout_console

    log = stderr_console(quiet)
    if checkpoint is None:
        checkpoint = latest_bench_checkpoint()
        log.print(f"checkpoint: {checkpoint} (best.pt of the newest run)")
    summary = export_onnx(checkpoint, out, load_source(data_dir), opset)
    stdout_console().print(export_panel(summary))
    log.print(f"next: digitcmp predict first.png second.png --model {summary.path}")


EPILOG_PREDICT = (
    "Examples:  digitcmp predict three.png seven.jpg   ·   digitcmp predict a.png b.png --json   ·   "
    "digitcmp predict --pairs pairs.csv --model models/mine.onnx"
)


@app.command(epilog=EPILOG_PREDICT)
@friendly
def predict(
    images: list[Path] = typer.Argument(
        None, help="Two image files (PNG, JPEG, BMP, GIF, TIFF, WebP) or .npy digits.", show_default=False
    ),
    pairs: Path = typer.Option(
        None, "--pairs", help="CSV with header first,second: many pairs in batches.", show_default=False
    ),
    model: Path = typer.Option(
        None, "--model", help="ONNX model [default: the model shipped with digitcmp].", show_default=False
    ),
    json_output: bool = typer.Option(False, "--json", help="JSON on stdout (one object per pair with --pairs)."),
) -> None:
    """Is the digit in the first image ≤ the digit in the second? (onnxruntime; no torch needed)"""
    from .predict import load_model, read_pairs_csv, timed
    from .report import prediction_panel, predictions_table, stderr_console, stdout_console

    if pairs is None and len(images or []) != 2:
        raise DigitcmpError("predict needs two image files, or --pairs CSV")
    if pairs is not None and images:
        raise DigitcmpError("give either two image files or --pairs CSV, not both")
    session = load_model(model)
    todo = read_pairs_csv(pairs) if pairs is not None else [(images[0], images[1])]
    results, seconds = timed(session, todo)
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
