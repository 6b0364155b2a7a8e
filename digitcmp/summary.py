"""The table model of a results document, shared by the terminal's tables (digitcmp.report) and the files
(digitcmp.results): rows, columns and cell texts, with no console and no files."""

from __future__ import annotations

from .variant import TOWER_OPTIONS, Technique


def percent(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f}%"


def signed(value: float, digits: int = 1) -> str:
    """A difference with its sign, where a difference that rounds to zero reads +0.0, never -0.0."""
    return f"{round(value, digits) + 0.0:+.{digits}f}"


def counted(count: int, noun: str) -> str:
    """A count with its noun, singular for one: '1 pair', '3 pairs'."""
    return f"{count:,} {noun}{'s' * (count != 1)}"


def mean_std(mean: float, std: float) -> str:
    return f"{100 * mean:.1f} ± {100 * std:.1f}%"


def column_label(weight_sharing: bool, aux_weight: float, several_aux: bool) -> str:
    name = Technique.of(weight_sharing, aux_weight).label
    return f"{name} (w={aux_weight:g})" if several_aux and aux_weight > 0 else name


# Settings a row label names when they vary within an architecture: the tower options and the training axes.
ROW_SETTINGS = (*TOWER_OPTIONS, "lr", "batch_size", "weight_decay")


def setting_text(value: object) -> str:
    """A setting as tables and CSV files show it: layer sizes joined by commas, numbers short, on/off."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def row_label(variant: dict, vary: set[str]) -> str:
    """The architecture, plus whichever grid settings vary between rows."""
    extras = [f"{key.replace('_', ' ')} {setting_text(variant[key])}" for key in ROW_SETTINGS if key in vary]
    return " · ".join([variant["arch"], *extras])


def varying_settings(variants: list[dict]) -> set[str]:
    """The settings a row label names: those that vary within one architecture (a grid axis), not those where
    architectures merely have different recipes."""
    archs = {v["arch"] for v in variants}
    return {
        key
        for key in ROW_SETTINGS
        if any(len({setting_text(v.get(key)) for v in variants if v["arch"] == arch}) > 1 for arch in archs)
    }


def summary_grid(variants: list[dict]) -> tuple[list[str], list[tuple[str, list[dict | None]]]]:
    """Rows (architecture and varying settings) × technique columns, each cell a variant record or None."""
    # The (weight sharing, aux weight) combinations present, in the reports' column order.
    combos = sorted({(v["weight_sharing"], v["aux_weight"]) for v in variants}, key=lambda c: (c[1] > 0, c[1], c[0]))
    several_aux = len({aux for _, aux in combos if aux > 0}) > 1
    vary = varying_settings(variants)
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


def highest_test_accuracy(variants: list[dict]) -> dict | None:
    """The cell the tables highlight (best.pt is chosen by validation accuracy instead: digitcmp.study)."""
    ok = [v for v in variants if v.get("status") == "ok"]
    return max(ok, key=lambda v: v["test_accuracy_mean"]) if ok else None


def epochs_text(document: dict) -> str:
    """The epoch count(s) used, e.g. '25' or '25/40' when architectures' recipes differ."""
    counts = sorted({v["train_config"]["epochs"] for v in records(document) if "train_config" in v})
    return "/".join(str(c) for c in counts)


def records(document: dict) -> list[dict]:
    """The per-variant records of a results document: a bench's variants or a tune's cells."""
    return document["cells"] if document.get("kind") == "tune" else document["variants"]


def selected_text(record: dict) -> str:
    selected = record.get("selected") or {}
    return ", ".join(f"{key.replace('_', ' ')} {setting_text(value)}" for key, value in selected.items()) or "—"


def tune_rows(document: dict) -> list[list[str]]:
    """The reports' table: architecture, technique, selected hyper-parameters, validation score, test accuracy."""
    rows = []
    for cell in document["cells"]:
        ok = cell.get("status") == "ok"
        rows.append([
            cell["cell"].split(" · ")[0] if "cell" in cell else cell.get("arch", ""),
            cell["technique"],
            selected_text(cell),
            percent(cell.get("selected_val_accuracy")),
            mean_std(cell["test_accuracy_mean"], cell["test_accuracy_std"]) if ok else "failed",
        ])  # fmt: skip
    return rows


TUNE_COLUMNS = ("architecture", "technique", "selected", "validation", "test accuracy")


def failed(document: dict) -> bool:
    """Whether any cell of a bench or tune results document failed (the command then exits 1)."""
    return any(record.get("status") != "ok" for record in records(document))


EFFECT_COLUMNS = ("architecture", "effect", "difference", "95% interval", "p", "p (Holm)", "verdict")
EFFECT_NOTE = (
    "Paired over rounds (round r of one variant against round r of the other); difference in accuracy points. "
    "p: exact sign-flip test under 10 rounds, paired t-test from 10; Holm-corrected over the table. A verdict only "
    "where the interval excludes 0 and the corrected p < 0.05."
)


def p_text(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def effect_rows(effects: list[dict]) -> list[list[str]]:
    """The effects table: each technique's paired difference with its interval, p-values and verdict."""
    from .effects import decision_p, interval_of

    rows = []
    for e in effects:
        interval = interval_of(e)
        rows.append([
            e["row"],
            e["effect"],
            signed(100 * e["mean"]),
            f"[{signed(100 * e['low'])}, {signed(100 * e['high'])}]",
            p_text(decision_p(interval)),
            p_text(e["p_holm"]),
            e["verdict"],
        ])  # fmt: skip
    return rows
