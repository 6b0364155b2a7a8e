"""The files of a bench or tune run: results.json, results.csv, summary.md and the plots, each written
atomically."""

from __future__ import annotations

from pathlib import Path

from .summary import (
    EFFECT_COLUMNS,
    EFFECT_NOTE,
    TUNE_COLUMNS,
    cell_text,
    counted,
    effect_rows,
    epochs_text,
    highest_test_accuracy,
    records,
    setting_text,
    summary_grid,
    tune_rows,
)
from .variant import TOWER_OPTIONS


def summary_markdown(document: dict) -> str:
    """The summary table as Markdown (for a CI job summary), with the best cell in bold."""
    headers, rows = summary_grid(document["variants"])
    top = highest_test_accuracy(document["variants"])
    config = document["config"]
    lines = [
        f"### digitcmp bench — test accuracy, mean ± std over {counted(config['rounds'], 'round')}",
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
    lines += effects_markdown(document)
    if document.get("best"):
        lines += [
            "",
            f"Best by validation accuracy: `{document['best']['name']}` → `{document['best']['checkpoint']}`.",
        ]
    return "\n".join(lines) + "\n"


CSV_COLUMNS = (
    "name", "arch", "weight_sharing", "aux_weight", *TOWER_OPTIONS, "head", "lr", "batch_size", "weight_decay",
    "params", "round", "train_accuracy", "val_accuracy", "test_accuracy", "digit_accuracy", "seconds",
)  # fmt: skip


def results_csv(document: dict) -> str:
    """One row per variant × round."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for v in records(document):
        settings = {key: setting_text(v[key]) for key in TOWER_OPTIONS if key in v}
        for r in v.get("rounds", []):
            writer.writerow({**v, **settings, **r})
    return buffer.getvalue()


def write_results(folder: Path, document: dict) -> None:
    """results.json, results.csv, summary.md and the plots of a bench or tune run (effects.png where variants
    pair up), each written atomically."""
    from .files import atomic_write, write_json, write_text
    from .plots import plot_accuracy, plot_curves, plot_effects

    markdown = tune_markdown if document.get("kind") == "tune" else summary_markdown
    write_json(folder / "results.json", document)
    write_text(folder / "results.csv", results_csv(document))
    write_text(folder / "summary.md", markdown(document))
    rounds = document["config"]["rounds"]
    atomic_write(folder / "curves.png", lambda tmp: plot_curves(records(document), rounds, tmp))
    atomic_write(folder / "accuracy.png", lambda tmp: plot_accuracy(records(document), rounds, tmp))
    if document.get("effects"):
        atomic_write(folder / "effects.png", lambda tmp: plot_effects(document["effects"], tmp))


def tune_markdown(document: dict) -> str:
    config = document["config"]
    lines = [
        "### digitcmp tune — test accuracy of the selected configurations, mean ± std over "
        + counted(config["rounds"], "round"),
        "",
        "| " + " | ".join(TUNE_COLUMNS) + " |",
        "|---|---|---|---:|---:|",
        *("| " + " | ".join(row) + " |" for row in tune_rows(document)),
        *effects_markdown(document),
    ]
    return "\n".join(lines) + "\n"


def effects_markdown(document: dict) -> list[str]:
    """The effects table's Markdown lines (none when no two variants pair up)."""
    if not document.get("effects"):
        return []
    return [
        "",
        "#### Effects on test accuracy, paired over rounds",
        "",
        "| " + " | ".join(EFFECT_COLUMNS) + " |",
        "|---|---|---:|---:|---:|---:|---|",
        *("| " + " | ".join(row) + " |" for row in effect_rows(document["effects"])),
        "",
        EFFECT_NOTE,
    ]
