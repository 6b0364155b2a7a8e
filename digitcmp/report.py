"""Presenting results: rich tables for people, JSON for machines."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from datetime import timedelta
from typing import TYPE_CHECKING

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .archs import ARCHS
from .config import TrainConfig
from .summary import (
    EFFECT_COLUMNS,
    EFFECT_NOTE,
    TUNE_COLUMNS,
    cell_text,
    counted,
    effect_rows,
    highest_test_accuracy,
    mean_std,
    p_text,
    percent,
    row_label,
    selected_text,
    signed,
    summary_grid,
    tune_rows,
)
from .variant import create_variant

if TYPE_CHECKING:  # report.py serves predict and list too, which must not import torch
    from .export import ExportSummary
    from .predict import Failed, Prediction
    from .train import RunResult


def rounds_table(result: RunResult) -> Table:
    """One row per round and a mean ± std row: what 'digitcmp train' shows at the end."""
    v = result.variant
    table = Table(
        title=f"{v.name}: {v.arch}, weight sharing {'on' if v.weight_sharing else 'off'}, "
        f"aux weight {v.aux_weight:g}, head {v.head}"
        + (f", ensemble of {v.ensemble}" if v.ensemble > 1 else "")
        + f" — {result.params:,} parameters",
        title_justify="left",
    )
    for column in ("round", "train acc", "val acc", "test acc", "digit acc", "seconds"):
        table.add_column(column, justify="right")
    for r in result.rounds:
        table.add_row(
            str(r.round),
            percent(r.train_accuracy),
            percent(r.val_accuracy),
            percent(r.test_accuracy),
            percent(r.digit_accuracy),
            f"{r.seconds:.1f}",
        )
    summary = result.summary()
    table.add_section()
    table.add_row(
        "mean ± std",
        percent(summary["train_accuracy_mean"]),
        percent(summary["val_accuracy_mean"]),
        mean_std(*result.mean_std("test_accuracy")),
        percent(summary["digit_accuracy_mean"]),
        f"{summary['seconds_per_round']:.1f}",
        style="bold",
    )
    return table


def outcome_line(record: dict) -> str:
    """The line a bench prints as each cell ends: ✅ with its accuracy, or ❌ with why it failed."""
    if record.get("status") != "ok":
        return f"❌ {record['name']}: {record.get('error')}"
    return f"✅ {record['name']}: {mean_std(record['test_accuracy_mean'], record['test_accuracy_std'])}"


def recipe_text(arch: str) -> str:
    """An architecture's training recipe, as the flags that set it apart from the reports' protocol."""
    reports, recipe = TrainConfig(), TrainConfig.for_arch(arch)
    flags = []
    for f in fields(recipe):
        new = getattr(recipe, f.name)
        if new != getattr(reports, f.name):
            flag = "--" + f.name.replace("_", "-")
            flags.append(flag if new is True else f"{flag} {new:g}" if isinstance(new, float) else f"{flag} {new}")
    return " ".join(flags) if flags else "the reports' protocol"


def architectures_records() -> list[dict]:
    """What ``digitcmp list --json`` prints: every registered architecture with its defaults and recipe."""
    return [
        {
            "name": spec.name,
            "description": spec.description,
            "params_weight_sharing": spec.params[0],
            "params_separate": spec.params[1],
            "joint": spec.joint,
            "study": spec.study,
            "defaults": {
                key: value
                for key, value in create_variant(spec.name).to_dict().items()
                if key not in ("arch", "weight_sharing", "aux_weight")
            },
            "recipe": TrainConfig.for_arch(spec.name).to_dict(),
        }
        for spec in ARCHS.values()
    ]


def presets_records() -> list[dict]:
    """The reports' presets, for ``digitcmp list --json``."""
    from .presets import PRESETS

    return [
        {"name": p.name, "report": p.report, "summary": p.summary, "cells": [c.label for c in p.cells],
         "protocol": p.protocol, "published_metric": p.published_metric, "tune": bool(p.search),
         "choices": list(p.choices)}
        for p in PRESETS.values()
    ]  # fmt: skip


def presets_table() -> Table:
    """What ``digitcmp list`` shows after the architectures: one line per report preset."""
    table = Table(title="Presets (digitcmp bench --preset NAME; tune --preset NAME where marked)", title_justify="left")
    for column in ("name", "report", "what it encodes", "tune"):
        table.add_column(column)
    for record in presets_records():
        table.add_row(record["name"], record["report"], record["summary"], "✓" if record["tune"] else "")
    return table


def architectures_table() -> Table:
    """What ``digitcmp list`` shows: one row per architecture."""
    table = Table(title="Architectures (digitcmp train --arch NAME)", title_justify="left", show_lines=True)
    for column in ("name", "tower", "parameters (shared / separate)", "head", "recipe"):
        table.add_column(column, justify="right" if column.startswith("parameters") else "left")
    for spec in ARCHS.values():
        head = spec.head + (f", {5 + spec.tta_warps} test-time views" if spec.tta else "")
        table.add_row(
            spec.name,
            spec.description,
            f"{spec.params[1]:,} (no towers)" if spec.joint else f"{spec.params[0]:,} / {spec.params[1]:,}",
            head,
            recipe_text(spec.name),
        )
    return table


def reproduction_table(rows: list[dict]) -> Table:
    """A preset's published cells beside the run's figures: ✅ where the run's lies within the combined spread."""
    metric = rows[0]["metric"] if rows else "last"
    title = "Against the report" + (" (its figure: the best test epoch, optimistic)" if metric == "best-epoch" else "")
    table = Table(title=title, title_justify="left")
    columns = ["", "cell", "published", "run", "Δ"] + (["run, last epoch"] if metric == "best-epoch" else [])
    for column in columns:
        table.add_column(column, justify="left" if column in ("", "cell") else "right")
    for row in rows:
        delta = 100 * (row["run_mean"] - row["published_mean"])
        cells = [
            "✅" if row["within"] else "❌",
            row["cell"],
            mean_std(row["published_mean"], row["published_std"]),
            mean_std(row["run_mean"], row["run_std"]),
            signed(delta),
        ]
        if metric == "best-epoch":
            cells.append(mean_std(row["run_last_epoch_mean"], row["run_last_epoch_std"]))
        table.add_row(*cells)
    within = sum(row["within"] for row in rows)
    table.caption = f"{within} of {len(rows)} cells within the combined spread, |Δ| ≤ 2·√(σ₁² + σ₂²)"
    table.caption_justify = "left"
    return table


def stdout_console() -> Console:
    """Results go to stdout; when it is a file or a pipe, a width that keeps the tables on one line per row."""
    return Console(file=sys.stdout, width=None if sys.stdout.isatty() else 140)


def stderr_console(quiet: bool = False) -> Console:
    return Console(stderr=True, quiet=quiet, soft_wrap=True)  # never break a path or a command in two


def summary_table(document: dict) -> Table:
    """Mean ± std test accuracy, architecture × technique; the highest mean is highlighted."""
    headers, rows = summary_grid(document["variants"])
    top = highest_test_accuracy(document["variants"])
    rounds = document["config"]["rounds"]
    table = Table(title=f"Test accuracy, mean ± std over {counted(rounds, 'round')}", title_justify="left")
    table.add_column("architecture")
    for header in headers:
        table.add_column(header, justify="right")
    for label, cells in rows:
        table.add_row(label, *(f"[bold green]{cell_text(c)}[/]" if c is top and c else cell_text(c) for c in cells))
    return table


def detail_table(document: dict) -> Table:
    """One row per variant: parameters, accuracies, seconds per round and a status mark."""
    table = Table(title="Details", title_justify="left")
    for column in ("", "variant", "params", "test acc", "val acc", "digit acc", "train acc", "s/round"):
        table.add_column(column, justify="left" if column in ("", "variant") else "right")
    for v in document["variants"]:
        if v.get("status") != "ok":
            table.add_row("❌", row_label(v, set()), "", "", "", "", "", "", style="red")
            continue
        table.add_row(
            "✅",
            v["name"],
            f"{v['params']:,}",
            mean_std(v["test_accuracy_mean"], v["test_accuracy_std"]),
            percent(v["val_accuracy_mean"]),
            percent(v["digit_accuracy_mean"]),
            percent(v["train_accuracy_mean"]),
            f"{v['seconds_per_round']:.2f}",
        )
    return table


def effects_table(document: dict) -> Table | None:
    """What weight sharing and the auxiliary loss did, with their uncertainty (None when nothing is paired)."""
    effects = document.get("effects") or []
    if not effects:
        return None
    table = Table(title="Effects on test accuracy, paired over rounds", title_justify="left", caption=EFFECT_NOTE,
                  caption_justify="left")  # fmt: skip
    for column in EFFECT_COLUMNS:
        table.add_column(column, justify="left" if column in ("architecture", "effect", "verdict") else "right")
    style = {"helps": "green", "hurts": "red"}
    for row in effect_rows(effects):
        table.add_row(*row[:-1], f"[{style[row[-1]]}]{row[-1]}[/]" if row[-1] in style else row[-1])
    return table


def comparison_table(rows: list[dict], first: str, second: str) -> Table:
    """``digitcmp compare``: both sides' figures per cell and the difference with its interval."""
    from .effects import decision_p, interval_of

    caption = ("Paired over the rounds both ran where the two runs share seed, data and pair counts (p: exact "
               "sign-flip test under 10 rounds, else t-test); Welch's otherwise. They agree where the 95% interval "
               "holds 0.")  # fmt: skip
    table = Table(title=f"B − A, test accuracy; A: {first}, B: {second}", title_justify="left", caption=caption,
                  caption_justify="left")  # fmt: skip
    for column in ("cell", "A", "B", "difference", "95% interval", "p", "test", ""):
        table.add_column(column, justify="left" if column in ("cell", "test", "") else "right")
    for r in rows:
        table.add_row(
            r["cell"],
            mean_std(r["a_mean"], r["a_std"]),
            mean_std(r["b_mean"], r["b_std"]),
            signed(100 * r["mean"]),
            f"[{signed(100 * r['low'])}, {signed(100 * r['high'])}]",
            p_text(decision_p(interval_of(r))),
            r["test"],
            "agree" if r["agree"] else "[red]differ[/]",
        )
    return table


def compare_table(rows: list[dict], tolerance: float, time_tolerance: float, time_slack: float) -> Table:
    table = Table(
        title=f"Against the baseline (tolerance: accuracy {100 * tolerance:.1f} points, "
        f"time +{100 * time_tolerance:.0f}% and +{time_slack:g} s)",
        title_justify="left",
    )
    for column in ("", "variant", "test acc", "baseline", "Δ", "s/round", "baseline s", "slowdown"):
        table.add_column(column, justify="left" if column in ("", "variant") else "right")
    for r in rows:
        if r["status"] != "compared":
            table.add_row("❌" if r["regression"] else "·", r["name"], r["status"], "", "", "", "", "")
            continue
        table.add_row(
            "❌" if r["regression"] else "✅",
            r["name"],
            percent(r["accuracy"]),
            percent(r["baseline_accuracy"]),
            signed(100 * r["accuracy_delta"]),
            f"{r['seconds']:.2f}",
            f"{r['baseline_seconds']:.2f}",
            f"{signed(100 * r['slowdown'], 0)}%",
            style="red" if r["regression"] else None,
        )
    changed = [f"{r['name']}: {', '.join(r['recipe_changes'])}" for r in rows if r.get("recipe_changes")]
    if changed:
        table.caption = "Training settings differ from the baseline's — " + "; ".join(changed)
        table.caption_justify = "left"
    return table


def tune_line(record: dict) -> str:
    """The line tune prints as each cell ends: ✅ with what it selected and its test accuracy, or ❌ and why."""
    label = f"{record['arch']}, {record['technique']}"
    if record.get("status") != "ok":
        return f"❌ {label}: {record.get('error')}"
    return (
        f"✅ {label}: {selected_text(record)} → {mean_std(record['test_accuracy_mean'], record['test_accuracy_std'])}"
    )


def tune_table(document: dict) -> Table:
    config = document["config"]
    scoring = (
        f"{config['folds']}-fold cross-validation" if config["folds"] >= 2 else f"{config['holdout']:.0%} held out"
    )
    table = Table(
        title=f"Selected by validation ({scoring} of {config['tune_pairs']} tuning pairs); test accuracy, mean ± std "
        f"over {counted(config['rounds'], 'round')}",
        title_justify="left",
    )
    for column in TUNE_COLUMNS:
        table.add_column(column, justify="right" if column in ("validation", "test accuracy") else "left")
    for row in tune_rows(document):
        table.add_row(*row)
    return table


def export_panel(summary: ExportSummary) -> Panel:
    """What 'digitcmp export' reports: the file, its checks, and the model's accuracy."""
    m = summary.metadata
    lines = [
        f"[bold]{summary.path}[/bold]  ({summary.size_bytes / 1024:.0f} KiB, opset {summary.opset}, {m['exporter']})",
        f"variant      {m['variant_name']}  ({m['params']:,} parameters)"
        if m.get("params")
        else f"variant      {m['variant_name']}",
        "checks       onnx.checker (full) ✅",
        f"parity       max |Δp| {summary.parity_max_difference:.1e} over {summary.pairs_checked} real test pairs at "
        f"batch sizes {', '.join(map(str, summary.batch_sizes))}; identical decisions ✅",
        f"accuracy     onnxruntime {percent(summary.onnx_accuracy)} · torch {percent(summary.torch_accuracy)}"
        " on those pairs",
    ]
    if m.get("test_accuracy_mean") is not None:
        lines.append(f"trained      {trained_accuracy(m)}")
    return Panel("\n".join(lines), title="digitcmp export", expand=False)


def trained_accuracy(metadata: dict) -> str:
    """The test accuracy a model's training measured: one round's figure alone (no spread to show), else its mean
    ± std and over how many rounds where the file records it."""
    rounds = metadata.get("test_rounds")
    if rounds == 1:
        return f"{percent(metadata['test_accuracy_mean'])} test accuracy in one round"
    text = f"{mean_std(metadata['test_accuracy_mean'], metadata['test_accuracy_std'])} test accuracy"
    return f"{text} over {counted(rounds, 'round')}" if rounds else text


def read_text(read: dict) -> str:
    """One digit's read: '3 (99.9%)', or with the runner-up when unsure: '3 (61.0%), unsure: or 8 (30.2%)'."""
    text = f"[bold]{read['digit']}[/bold] ({percent(read['probability'])})"
    if read["unsure"]:
        text += f", [yellow]unsure: or {read['runner_up']} ({percent(read['runner_up_probability'])})[/yellow]"
    return text


def where(read: dict) -> str:
    """A digit's file, and its place when one picture held both: 'sheet.jpg (left)'."""
    return f"{read['path']} ({read['place']})" if read.get("place") else read["path"]


def verdict_text(data: dict) -> str:
    """The comparison as one line: '3 ≤ 7 — yes (99.6%)'."""
    sign, answer = ("≤", "yes") if data["first_le_second"] else (">", "no")
    return f"{data['first']['digit']} {sign} {data['second']['digit']} — {answer} ({percent(data['probability'])})"


def prediction_panel(p: Prediction) -> Panel:
    """One pair's verdict: both digits with their probabilities, the comparison, and any doubt about it."""
    data = p.to_dict()
    first, second = data["first"], data["second"]
    lines = [
        f"first   {where(first)}: {read_text(first)}",
        f"second  {where(second)}: {read_text(second)}",
        "",
        f"is the first ≤ the second?  [bold]{verdict_text(data)}[/bold]",
    ]
    if data["unsure"]:
        lines.append("[yellow]⚠ unsure: check the digits the model saw (--save-digits DIR)[/yellow]")
    if not data["consistent"]:
        lines.append("[yellow]⚠ the comparison head disagrees with the two digit predictions[/yellow]")
    return Panel("\n".join(lines), title="digitcmp predict", expand=False)


def predictions_table(predictions: list[Prediction | Failed]) -> Table:
    """A batch's answers, one row per pair; a pair that could not be read says why, in red."""
    table = Table(title=counted(len(predictions), "pair"), title_justify="left")
    for column in ("first", "digit", "second", "digit", "first ≤ second", "probability", "unsure", "consistent"):
        table.add_column(column, justify="left" if column in ("first", "second") else "right")
    for p in predictions:
        d = p.to_dict()
        if "error" in d:
            error = Text(f"error: {d['error']}", style="red", justify="left")  # not the number column's right edge
            table.add_row(d["first"]["path"], "", d["second"]["path"], "", error, "", "", "")
            continue
        table.add_row(
            d["first"]["path"], str(d["first"]["digit"]), d["second"]["path"], str(d["second"]["digit"]),
            "yes" if d["first_le_second"] else "no", percent(d["probability"]), "⚠" if d["unsure"] else "",
            "✅" if d["consistent"] else "⚠",
        )  # fmt: skip
    return table


@contextmanager
def progress_bar(total: int, description: str, quiet: bool) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr where stdout is a terminal; elsewhere (a log, CI) a plain line on stderr at
    each tenth of the work, as a bar drawn there would be lost; nothing with --quiet. Yields advance(n)."""
    if quiet or not sys.stdout.isatty():
        yield (lambda n=1: None) if quiet else progress_lines(total, description, stderr_console())
        return
    from rich import progress as bar

    columns = (
        bar.TextColumn("{task.description}"),
        bar.BarColumn(),
        bar.MofNCompleteColumn(),
        bar.TimeElapsedColumn(),
        bar.TimeRemainingColumn(),
    )
    with bar.Progress(*columns, console=stderr_console(), transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)


def progress_lines(total: int, description: str, console: Console) -> Callable[[int], None]:
    """advance(n) for ``total`` epochs that prints 'training …: 12/120 epochs (10%), 0:01:05 elapsed, about 0:09:45
    left' as the work passes each tenth of them."""
    started, done, shown = time.monotonic(), 0, 0

    def advance(n: int = 1) -> None:
        nonlocal done, shown
        done += n
        if (tenth := 10 * done // max(total, 1)) > shown:
            shown = tenth
            elapsed = time.monotonic() - started
            spent, left = (timedelta(seconds=round(t)) for t in (elapsed, elapsed * (total - done) / done))
            share = f"{done}/{total} epochs ({100 * done // total}%)"
            console.print(f"{description}: {share}, {spent} elapsed, about {left} left", highlight=False)

    return advance
