"""A bench or tune results folder as cells finish: each cell's record and checkpoint are written the moment it ends,
so an interrupted or crashed run keeps them, and ``--resume`` reads them back instead of training them again.

Layout: ``config.json`` (what the run was asked to do), ``cells/<cell>.json`` (a finished cell's results record)
and ``cells/<cell>.pt`` (its best round's checkpoint); the run's own files (results.json, plots, best.pt) are made
from them at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import DigitcmpError
from .files import atomic_write, write_json

CONFIG = "config.json"


def cell_id(name: str, key: dict) -> str:
    """A cell's file name: its variant name and a digest of everything that identifies it."""
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    return f"{name}-{digest}"


class RunFolder:
    """The results folder of one bench or tune run, with its finished cells."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.cells = self.folder / "cells"
        self.unrecorded: dict | None = None  # a fresh run's config.json, written with the first thing it keeps

    def start(self, kind: str, config: dict, data: str, resume: bool) -> dict[str, dict]:
        """Take the run's configuration and data (or check them against the run being resumed) and return the
        records of the cells already finished (none unless resuming). A fresh run's ``config.json`` is written
        with its first cell (``record_config``), so a run that fails before any cell leaves no folder behind."""
        if not resume:
            shutil.rmtree(self.cells, ignore_errors=True)  # a fresh run never mixes in an older run's cells
            self.unrecorded = {"kind": kind, "config": config, "data": data}
            return {}
        saved = read_config(self.folder)
        if saved["kind"] != kind:
            raise DigitcmpError(f"{self.folder} holds a {saved['kind']} run; resume it with 'digitcmp {saved['kind']}'")
        if saved.get("data") != data:
            raise DigitcmpError(f"{self.folder} was run on other digits ({saved.get('data')}); resume it with the "
                                "same --data-dir")  # fmt: skip
        records = {}
        for path in sorted(self.cells.glob("*.json")):
            try:
                records[path.stem] = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue  # half-written cells do not exist (files are written atomically); unreadable ones rerun
        return records

    def save(self, identity: str, record: dict, save_checkpoint) -> None:
        """Keep a finished cell: its checkpoint first (``save_checkpoint(path)``, when it trained), then the record
        whose presence marks the cell finished."""
        self.record_config()
        if save_checkpoint is not None:
            save_checkpoint(self.cells / f"{identity}.pt")
        write_json(self.cells / f"{identity}.json", record)

    def keep_all(
        self,
        cells: Iterable[tuple[str, dict, Any]],
        finished: dict[str, dict],
        context: dict,
        on_done: Callable[[dict], None] | None = None,
    ) -> bool:
        """Save each ``(identity, record, result)`` as it arrives (the result's best round as the cell's checkpoint,
        when it trained) and add the record to ``finished``. Returns True when Ctrl-C stopped the stream: what was
        saved before stays saved."""
        try:
            for identity, record, result in cells:
                keep = None if result is None else (lambda path, r=result: r.save_best(path, **context))
                self.save(identity, record, keep)
                finished[identity] = record
                if on_done is not None:
                    on_done(record)
        except KeyboardInterrupt:
            interrupted = True
        else:
            interrupted = False
        self.record_config()  # also when stopped before its first cell: --resume starts it over
        return interrupted

    def record_config(self) -> None:
        """Write a fresh run's ``config.json`` (what --resume reads back), once."""
        if self.unrecorded is not None:
            write_json(self.folder / CONFIG, self.unrecorded)
            self.unrecorded = None

    def copy_checkpoint(self, identity: str, path: Path) -> Path:
        """A finished cell's checkpoint as ``path`` (best.pt), written atomically."""
        source = self.cells / f"{identity}.pt"
        return atomic_write(path, lambda tmp: shutil.copyfile(source, tmp))


def read_config(folder: Path) -> dict:
    """The configuration a run in ``folder`` was started with (for --resume)."""
    path = Path(folder) / CONFIG
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise DigitcmpError(f"--resume {folder}: no readable {CONFIG}; is it the results folder of a run?") from None
    if not isinstance(saved, dict) or "kind" not in saved or "config" not in saved:
        raise DigitcmpError(f"--resume {folder}: {CONFIG} is not a digitcmp run's")
    return saved


def tuples(value):
    """JSON lists back to the tuples a configuration holds (layer sizes, grid axes)."""
    if isinstance(value, list):
        return tuple(tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: tuples(v) for k, v in value.items()}
    return value


def prepare_out(folder: Path | None, default: str) -> Path:
    """The results folder (``default`` under runs/, with the time, when none is given), checked that it can be made
    and written before any training spends time on it. The folder itself appears with the first file the run
    keeps, so a command that fails before that leaves nothing behind."""
    folder = folder or Path("runs") / default.replace("<timestamp>", f"{datetime.now():%Y%m%d-%H%M%S}")
    if folder.exists() and not folder.is_dir():
        raise DigitcmpError(f"--out {folder} is a file; name a folder for the results")
    existing = next(path for path in (folder, *folder.absolute().parents) if path.exists())
    if not existing.is_dir():
        raise DigitcmpError(f"--out {folder}: {existing} is a file; name a folder for the results")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DigitcmpError(f"--out {folder} is not writable; choose another folder")
    return folder
