"""``digitcmp bench``, ``tune`` and ``compare``: a grid of variants over the same rounds, or each cell's settings
chosen on validation pairs, with the tables, files and regression gate of a study; and two studies side by side."""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from typing import Annotated, Any

import typer

from ..config import TrainConfig
from ..errors import require_extra
from ..executor import ExecutorConfig
from ..gate import Gate
from ..grid import TuneConfig
from ..plan import BenchRequest, Run, TuneRequest, refuse_beside_resume
from ..summary import counted, failed
from ..variant import Variant
from .app import app, command_line, examples, friendly
from .options import with_options


def study_options(*groups: tuple[str, type, Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The options of bench or tune: its request and its own groups (the gate, the search), the run's options, the
    executor's and the grid settings, each handed over as one object."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for name, group, build in (*groups, ("executor", ExecutorConfig, ExecutorConfig), ("run", Run, Run)):
            command = with_options(name, group, build=build)(command)
        return friendly(resumable(with_options("settings", Variant, TrainConfig, grid=True)(command)))

    return decorate


def resumable(command: Callable[..., Any]) -> Callable[..., Any]:
    """Before a run resumes, the options typed beside ``--resume`` that would change its configuration are refused
    (digitcmp.plan.refuse_beside_resume): only the command line knows which were typed rather than defaulted."""

    @functools.wraps(command)
    def run(ctx: typer.Context, **values: Any) -> Any:
        if values.get("resume") is not None:
            typed = [p for p in ctx.command.params if ctx.get_parameter_source(p.name).name == "COMMANDLINE"]
            refuse_beside_resume({p.name: "/".join(o for o in (*p.opts, *p.secondary_opts) if o.startswith("--"))
                                  for p in typed})  # fmt: skip
        return command(**values)

    context = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
    signature = inspect.signature(command)
    run.__signature__ = signature.replace(parameters=[context, *signature.parameters.values()])  # type: ignore[attr-defined]
    return run


@app.command(epilog=examples(
    "digitcmp bench --quick",
    "digitcmp bench --data-dir ~/data/mnist --out runs/study",
    "digitcmp bench --arch conv6 --channels 8/16/32/64 --lr 1e-3,3e-3",
    "digitcmp bench --arch deep-fc --activation relu,tanh --dropout 0,0.2,0.5 --batch-norm on,off",
    "digitcmp bench --quick --compare benchmarks/baseline.json",
))  # fmt: skip
@study_options(("request", BenchRequest, BenchRequest), ("gate", Gate, Gate))
def bench(*, request: BenchRequest, gate: Gate, run: Run, executor: ExecutorConfig, settings: dict) -> None:
    """Run every variant (architecture × weight sharing × auxiliary loss) over the same rounds and compare them."""
    require_extra("train", "'digitcmp bench'")
    from ..bench import run_bench
    from ..plan import plan_bench
    from ..report import compare_table, detail_table, effects_table, outcome_line, stdout_console, summary_table

    plan = plan_bench(request, settings, run.pairs, run.test_pairs, run.seed)
    baseline = gate.read_baseline()
    sizes = f"{counted(len(plan.cells), 'variant')} × {counted(plan.config.rounds, 'round')}"
    document = run_and_render(
        run_bench, plan, request, run, executor, sizes, outcome_line, summary_table, detail_table, effects_table
    )
    if baseline is not None:
        rows = gate.compare(document, baseline)
        if not run.json_output:
            stdout_console().print(compare_table(rows, gate.tolerance, gate.time_tolerance, gate.time_slack))
        gate.verdict(rows)
    if failed(document):
        raise typer.Exit(1)


@app.command(epilog=examples(
    "digitcmp tune --arch lenet --lr 1e-3,3e-3 --folds 3",
    "digitcmp tune --arch deep-fc --activation relu,tanh,selu --dropout 0,0.2,0.5 --batch-norm on,off",
    "digitcmp tune --arch conv6 --technique both --aux-weight 0.5,1,2 --lr 1e-3,3e-3 --batch-size 50,100 --trials 6",
))  # fmt: skip
@study_options(("request", TuneRequest, TuneRequest), ("search", TuneConfig, dict))
def tune(*, request: TuneRequest, search: dict, run: Run, executor: ExecutorConfig, settings: dict) -> None:
    """Choose each cell's hyper-parameters on validation pairs, then measure the choice on fresh rounds."""
    require_extra("train", "'digitcmp tune'")
    from ..plan import plan_tune
    from ..report import effects_table, tune_line, tune_table
    from ..tune import run_tune

    plan = plan_tune(request, search, settings, run.pairs, run.test_pairs, run.seed)
    cells = counted(len(plan.cells), "cell")
    document = run_and_render(run_tune, plan, request, run, executor, cells, tune_line, tune_table, effects_table)
    if failed(document):
        raise typer.Exit(1)


@app.command(epilog=examples(
    "digitcmp compare runs/bench-a runs/bench-b",
    "digitcmp compare runs/batchnorm batchnorm-cv",
    "digitcmp compare runs/study runs/study-next --json",
))  # fmt: skip
@friendly
def compare(
    first: Annotated[str, typer.Argument(help="A bench or tune results folder (or its results.json).")],
    second: Annotated[str, typer.Argument(help="Another results folder, or a preset's name: the report's table.")],
    json_output: Annotated[bool, typer.Option("--json", help="Print only JSON on stdout.")] = False,
) -> None:
    """Two runs (or a run and a report's published table) cell by cell: the difference with its 95% interval."""
    require_extra("train", "'digitcmp compare'")
    from ..compare import compare_sides, read_side
    from ..report import comparison_table, stdout_console

    a, b = read_side(first), read_side(second)
    rows = compare_sides(a, b)
    if json_output:
        typer.echo(json.dumps({"a": a.name, "b": b.name, "cells": rows}, indent=2, ensure_ascii=False))
    else:
        stdout_console().print(comparison_table(rows, a.name, b.name))


def run_and_render(
    runner: Callable[..., Any], plan: Any, request: Any, run: Run, executor: ExecutorConfig, sizes: str,
    line: Callable[[dict], str], *tables: Callable[[dict], Any],
) -> dict:  # fmt: skip
    """What bench and tune share once planned: the folder, the digits, the progress bar and the run itself, then
    JSON or the tables; exit 130 when Ctrl-C stopped it (what finished is kept). Returns the results document."""
    from ..report import progress_bar, reproduction_table, stderr_console, stdout_console

    kind = "bench" if isinstance(request, BenchRequest) else "tune"
    device, folder, source = run.start(request.resume or run.out, f"{kind}-<timestamp>")
    log = stderr_console(run.silent)
    log.print(f"[dim]{source.describe()}; {sizes}[/dim]")
    with progress_bar(plan.total_epochs, kind, run.silent) as advance:
        result = runner(plan.config, source, device, folder, plan.cells, on_epoch=advance, executor=executor,
                        on_done=lambda record: log.print(line(record)), command=command_line(),
                        resume=request.resume is not None)  # fmt: skip
    document = result.document
    if run.json_output:
        typer.echo(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        for table in filter(None, (make(document) for make in tables)):
            stdout_console().print(table)
        if document.get("reproduction"):
            stdout_console().print(reproduction_table(document["reproduction"]))
    files = folder.iterdir() if folder.is_dir() else ()
    written = sorted(path.name for path in files if path.is_file() and path.name != "config.json")
    log.print(f"results in {folder}/ ({', '.join(written)})")
    if result.interrupted:
        records = "variants" if kind == "bench" else "cells"
        log.print(f"interrupted: results cover the {len(document[records])} {records} that finished")
        raise typer.Exit(130)
    return document
