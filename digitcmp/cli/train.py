"""``digitcmp train``: one variant for R rounds."""

from __future__ import annotations

import json

import typer

from ..config import TrainConfig
from ..errors import require_extra
from ..plan import Run, TrainRequest
from ..variant import Variant
from .app import app, examples, friendly
from .options import with_options


@app.command(epilog=examples(
    "digitcmp train --rounds 10",
    "digitcmp train --arch conv6 --no-weight-sharing --aux-weight 0",
    "digitcmp train --data-dir ~/data/mnist --json > run.json",
))  # fmt: skip
@friendly
@with_options("settings", Variant, TrainConfig)
@with_options("run", Run, build=Run)
@with_options("request", TrainRequest, build=TrainRequest)
def train(*, request: TrainRequest, run: Run, settings: dict) -> None:
    """Train one variant for R rounds and report test accuracy per round and mean ± std."""
    require_extra("train", "'digitcmp train'")
    from ..plan import plan_train
    from ..report import progress_bar, rounds_table, stderr_console, stdout_console
    from ..train import run_train

    job = plan_train(request, settings)
    device, folder, source = run.start(run.out, f"<timestamp>-{job.variant.name}")
    log = stderr_console(run.silent)
    log.print(f"[dim]{source.describe()}[/dim]")
    with progress_bar(request.rounds * job.config.epochs, f"training {job.variant.name}", run.silent) as advance:
        done = run_train(job.variant, job.config, source, request.rounds, run.pairs, run.test_pairs or run.pairs,
                         run.seed, device, folder, advance)  # fmt: skip
    if run.json_output:
        typer.echo(json.dumps(done.record, indent=2))
        return
    stdout_console().print(rounds_table(done.result))
    log.print(f"checkpoint (round {done.result.best_round}, best validation accuracy): {done.checkpoint}")
    log.print(f"next: digitcmp export {done.checkpoint}")
