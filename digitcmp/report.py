"""Presenting results: rich tables for people, JSON for machines."""

from __future__ import annotations

import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from . import __version__

if TYPE_CHECKING:  # report.py serves predict too, which must not import torch
    from .export import ExportSummary
    from .predict import Prediction
    from .train import RunResult


def percent(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f}%"


def mean_std(mean: float, std: float) -> str:
    return f"{100 * mean:.1f} ± {100 * std:.1f}%"


def environment(device: str) -> dict[str, str]:
    """What every figure needs beside it to be comparable."""
    import torch

    return {
        "digitcmp_version": __version__,
        "torch_version": str(torch.__version__),
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
        "torch_threads": str(torch.get_num_threads()),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


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


def stdout_console() -> Console:
    """Results go to stdout; when it is a file or a pipe, a width that keeps the tables on one line per row."""
    return Console(file=sys.stdout, width=None if sys.stdout.isatty() else 140)


def stderr_console(quiet: bool = False) -> Console:
    return Console(stderr=True, quiet=quiet, soft_wrap=True)  # never break a path or a command in two


def technique_columns(variants: list[dict]) -> list[tuple[bool, float]]:
    """The (weight sharing, aux weight) combinations present, in the reports' column order."""
    combos = sorted({(v["weight_sharing"], v["aux_weight"]) for v in variants}, key=lambda c: (c[1] > 0, c[1], c[0]))
    return combos


def column_label(weight_sharing: bool, aux_weight: float, several_aux: bool) -> str:
    name = {(False, False): "none", (True, False): "weight sharing", (False, True): "auxiliary loss"}.get(
        (weight_sharing, aux_weight > 0), "both"
    )
    return f"{name} (w={aux_weight:g})" if several_aux and aux_weight > 0 else name


def row_label(variant: dict, vary: set[str]) -> str:
    """The architecture, plus whichever grid settings vary between rows."""
    label = variant["arch"] + (f" w{variant['width']}" if variant.get("width") else "")
    extras = [
        f"{key.replace('_', ' ')} {variant[key]:g}" for key in ("lr", "batch_size", "weight_decay") if key in vary
    ]
    return " · ".join([label, *extras])


def summary_grid(variants: list[dict]) -> tuple[list[str], list[tuple[str, list[dict | None]]]]:
    """Rows (architecture and varying settings) × technique columns, each cell a variant record or None."""
    combos = technique_columns(variants)
    several_aux = len({aux for _, aux in combos if aux > 0}) > 1
    # Name a setting in the row label only where it varies within one architecture (a grid axis), not where
    # architectures merely have different recipes.
    vary = {
        key
        for key in ("lr", "batch_size", "weight_decay")
        if any(len({v[key] for v in variants if v["arch"] == arch}) > 1 for arch in {v["arch"] for v in variants})
    }
    rows: dict[str, dict[tuple[bool, float], dict]] = {}
    for v in variants:
        rows.setdefault(row_label(v, vary), {})[(v["weight_sharing"], v["aux_weight"])] = v
    headers = [column_label(ws, aux, several_aux) for ws, aux in combos]
    return headers, [(label, [cells.get(c) for c in combos]) for label, cells in rows.items()]


def cell_text(variant: dict | None) -> str:
    if variant is None:
        return ""
    if variant.get("status") != "ok":
        return "failed"
    return mean_std(variant["test_accuracy_mean"], variant["test_accuracy_std"])


def best_ok(variants: list[dict]) -> dict | None:
    ok = [v for v in variants if v.get("status") == "ok"]
    return max(ok, key=lambda v: v["test_accuracy_mean"]) if ok else None


def summary_table(document: dict) -> Table:
    """Mean ± std test accuracy, architecture × technique; the highest mean is highlighted."""
    headers, rows = summary_grid(document["variants"])
    top = best_ok(document["variants"])
    rounds = document["config"]["rounds"]
    table = Table(title=f"Test accuracy, mean ± std over {rounds} rounds", title_justify="left")
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
            f"{100 * r['accuracy_delta']:+.1f}",
            f"{r['seconds']:.2f}",
            f"{r['baseline_seconds']:.2f}",
            f"{100 * r['slowdown']:+.0f}%",
            style="red" if r["regression"] else None,
        )
    changed = [f"{r['name']}: {', '.join(r['recipe_changes'])}" for r in rows if r.get("recipe_changes")]
    if changed:
        table.caption = "Training settings differ from the baseline's — " + "; ".join(changed)
        table.caption_justify = "left"
    return table


def epochs_text(document: dict) -> str:
    """The epoch count(s) used, e.g. '25' or '25/40' when architectures' recipes differ."""
    counts = sorted({v["train_config"]["epochs"] for v in document["variants"]})
    return "/".join(str(c) for c in counts)


def summary_markdown(document: dict) -> str:
    """The summary table as Markdown (for a CI job summary), with the best cell in bold."""
    headers, rows = summary_grid(document["variants"])
    top = best_ok(document["variants"])
    config = document["config"]
    lines = [
        f"### digitcmp bench — test accuracy, mean ± std over {config['rounds']} rounds",
        "",
        f"{config['pairs']} training pairs, {config['test_pairs']} test pairs, {epochs_text(document)} epochs; "
        f"{document['data']}; device {document['device']}, digitcmp {document['digitcmp_version']}.",
        "",
        "| architecture | " + " | ".join(headers) + " |",
        "|---|" + "---:|" * len(headers),
    ]
    for label, cells in rows:
        texts = [f"**{cell_text(c)}**" if c is top and c else cell_text(c) for c in cells]
        lines.append(f"| {label} | " + " | ".join(texts) + " |")
    if document.get("best"):
        lines += [
            "",
            f"Best by validation accuracy: `{document['best']['name']}` → `{document['best']['checkpoint']}`.",
        ]
    return "\n".join(lines) + "\n"


CSV_COLUMNS = (
    "name", "arch", "weight_sharing", "aux_weight", "width", "head", "lr", "batch_size", "weight_decay", "params",
    "round", "train_accuracy", "val_accuracy", "test_accuracy", "digit_accuracy", "seconds",
)  # fmt: skip


def results_csv(document: dict) -> str:
    """One row per variant × round."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for v in document["variants"]:
        for r in v.get("rounds", []):
            writer.writerow({**v, **r})
    return buffer.getvalue()


def write_bench_files(folder: Path, document: dict) -> None:
    """results.json, results.csv, summary.md and the two plots, each written atomically."""
    from .files import atomic_write, write_json, write_text

    write_json(folder / "results.json", document)
    write_text(folder / "results.csv", results_csv(document))
    write_text(folder / "summary.md", summary_markdown(document))
    atomic_write(folder / "curves.png", lambda tmp: plot_curves(document, tmp))
    atomic_write(folder / "accuracy.png", lambda tmp: plot_accuracy(document, tmp))


def plot_curves(document: dict, path) -> None:
    """Learning curves: mean ± std band of train and test error per epoch, one panel per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    variants = [v for v in document["variants"] if v.get("status") == "ok"]
    columns = min(4, max(1, len(variants)))
    rows = max(1, -(-len(variants) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False, sharey=True)
    for ax, v in zip(axes.flat, variants, strict=False):
        for key, colour, label in (("train_error", "tab:blue", "train"), ("test_error", "tab:red", "test")):
            curves = np.array([r["curves"][key] for r in v["rounds"] if r["curves"].get(key)], dtype=float)
            if curves.size == 0:
                continue
            epochs = np.arange(1, curves.shape[1] + 1)
            mean, std = curves.mean(0), curves.std(0)
            ax.plot(epochs, 100 * mean, color=colour, label=label)
            ax.fill_between(epochs, 100 * (mean - std), 100 * (mean + std), color=colour, alpha=0.2)
        ax.set_title(v["name"], fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("error (%)")
    for ax in list(axes.flat)[len(variants) :]:
        ax.axis("off")
    if variants:
        axes.flat[0].legend()
    fig.suptitle(f"Learning curves, mean ± std over {document['config']['rounds']} rounds")
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


def plot_accuracy(document: dict, path) -> None:
    """Bar chart of mean test accuracy per variant with ± std error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = [v for v in document["variants"] if v.get("status") == "ok"]
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(variants) + 2), 4.5))
    colours = {"none": "tab:gray", "weight sharing": "tab:blue", "auxiliary loss": "tab:orange", "both": "tab:green"}
    positions = range(len(variants))
    ax.bar(
        positions,
        [100 * v["test_accuracy_mean"] for v in variants],
        yerr=[100 * v["test_accuracy_std"] for v in variants],
        color=[colours[v["technique"]] for v in variants],
        capsize=3,
    )
    ax.set_xticks(list(positions), [v["name"] for v in variants], rotation=60, ha="right", fontsize=8)
    low = min((100 * (v["test_accuracy_mean"] - v["test_accuracy_std"]) for v in variants), default=50)
    ax.set_ylim(max(0, low - 5), 100)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Test accuracy, mean ± std over {document['config']['rounds']} rounds")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
    ax.legend(handles, list(colours), fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


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
        lines.append(
            f"trained      {mean_std(m['test_accuracy_mean'], m['test_accuracy_std'])} test accuracy when trained"
        )
    return Panel("\n".join(lines), title="digitcmp export", expand=False)


def prediction_panel(p: Prediction) -> Panel:
    """One pair's verdict: both digits with their probabilities, and the comparison."""
    data = p.to_dict()
    first, second = data["first"], data["second"]
    sign = "≤" if data["first_le_second"] else ">"
    verdict = "yes" if data["first_le_second"] else "no"
    lines = [
        f"first   {first['path']}: [bold]{first['digit']}[/bold] ({percent(first['probability'])})",
        f"second  {second['path']}: [bold]{second['digit']}[/bold] ({percent(second['probability'])})",
        "",
        f"[bold]{first['digit']} {sign} {second['digit']}[/bold]: is the first ≤ the second? [bold]{verdict}[/bold] "
        f"({percent(data['probability'])})",
    ]
    if not data["consistent"]:
        lines.append("[yellow]⚠ the comparison head disagrees with the two digit predictions[/yellow]")
    return Panel("\n".join(lines), title="digitcmp predict", expand=False)


def predictions_table(predictions: list[Prediction]) -> Table:
    table = Table(title=f"{len(predictions)} pairs", title_justify="left")
    for column in ("first", "digit", "second", "digit", "first ≤ second", "probability", "consistent"):
        table.add_column(column, justify="left" if column in ("first", "second") else "right")
    for p in predictions:
        d = p.to_dict()
        table.add_row(
            d["first"]["path"], str(d["first"]["digit"]), d["second"]["path"], str(d["second"]["digit"]),
            "yes" if d["first_le_second"] else "no", percent(d["probability"]), "✅" if d["consistent"] else "⚠",
        )  # fmt: skip
    return table
