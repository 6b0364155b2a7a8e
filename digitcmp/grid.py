"""The grid of a bench or tune: every combination of its axes (or a preset's cells) as jobs, each a resolved
variant with the training configuration it runs with, and what identifies a cell in results files. No torch here.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field, fields, replace

from .archs import get_arch
from .config import TrainConfig
from .errors import DigitcmpError
from .presets import PresetCell, get_preset
from .runs import cell_id
from .settings import check_fields, setting
from .variant import Technique, Variant, create_variant

# --quick: the study's grid for 3 rounds, each architecture for its registry entry's quick_epochs.
QUICK_ROUNDS = 3
# What identifies a grid cell in results files, baselines and comparisons: the variant and the training axes.
TRAINING_AXES = ("lr", "batch_size", "weight_decay")
KEY_FIELDS = (*(f.name for f in fields(Variant)), *TRAINING_AXES)
# Fields added after results files existed, and their default: a cell at the default is identified without them, so
# the identities of earlier versions' cells (their baselines, comparisons and --resume) still hold.
LATER_FIELDS = {"resolution": "pooled"}


def identity_fields(record: dict) -> dict:
    """The fields that identify a cell in a record (or a job's settings): every key field, less those added later
    where they hold their default."""
    at_default = {name for name, default in LATER_FIELDS.items() if (record.get(name) or default) == default}
    return {name: record.get(name) for name in KEY_FIELDS if name not in at_default}


def cell_key(record: dict) -> str:
    """A results record's identity as one hashable value (layer sizes are lists in JSON)."""
    return json.dumps(list(identity_fields(record).values()))


@dataclass(frozen=True)
class BenchConfig:
    """The grid (every combination of the lists) and the protocol shared by all its variants."""

    archs: tuple[str, ...]
    weight_sharing: tuple[bool, ...] = (False, True)
    aux_weights: tuple[float, ...] = (0.0, 1.0)
    tower_axes: dict = field(default_factory=dict)  # TOWER_OPTIONS name → values (channels where there are convs)
    lrs: tuple[float, ...] = ()  # empty axes: each architecture's own default or recipe
    batch_sizes: tuple[int, ...] = ()
    weight_decays: tuple[float, ...] = ()
    rounds: int = 10
    pairs: int = 1000
    test_pairs: int = 1000
    val_fraction: float = 0.1  # shared: every variant sees the same validation pairs
    seed: int = 0
    variant_options: dict = field(default_factory=dict)  # create_variant options for every cell (head, tta, ...)
    overrides: dict = field(default_factory=dict)  # TrainConfig fields set for every architecture (e.g. epochs)
    arch_overrides: dict = field(default_factory=dict)  # architecture → TrainConfig fields for its cells (--quick)
    preset: str | None = None  # a report's cells instead of the grid (digitcmp.presets)


@dataclass(frozen=True)
class Job:
    """One cell of the grid: a variant and the training configuration it runs with."""

    variant: Variant
    config: TrainConfig
    cell: PresetCell | None = None  # the report's cell it reproduces, with a preset

    def fields(self) -> dict:
        """The variant's fields and the training axes, as a results record holds them."""
        values = {**self.variant.to_dict(), **self.config.to_dict()}
        return {name: values[name] for name in KEY_FIELDS}

    def key(self) -> dict:
        """The fields that identify this cell in results files and baselines."""
        return identity_fields(self.fields())

    @property
    def identity(self) -> str:
        """The cell's name in a results folder (for streaming and --resume)."""
        return cell_id(self.variant.name, self.key())


def preset_jobs(config: BenchConfig) -> list[Job]:
    """A preset's cells, each with the preset's training settings, then the cell's, then those given (--epochs)."""
    preset = get_preset(config.preset)
    jobs = []
    for cell in preset.cells:
        variant = create_variant(**cell.variant)
        overrides = {**preset.train, **cell.train, **{k: v for k, v in config.overrides.items() if v is not None}}
        jobs.append(Job(variant, TrainConfig.for_arch(variant.arch, **overrides).fitted(variant), cell))
    return jobs


def expand(config: BenchConfig) -> list[Job]:
    """Every combination of the grid's axes (or a preset's cells). Channels apply to the architectures with
    convolutions, the head width to cells with the learned head; elsewhere those axes collapse to the
    architecture's own."""
    if config.preset:
        return preset_jobs(config)
    jobs: dict[str, Job] = {}  # by identity, in grid order: collapsed axes repeat cells
    for arch in config.archs:
        spec = get_arch(arch)
        structured = (config.variant_options.get("head") or spec.head) == "structured"
        inapplicable = {"channels": not spec.channels, "head_width": structured}
        towers = [(name, (None,) if inapplicable.get(name) else values) for name, values in config.tower_axes.items()]
        own = config.arch_overrides.get(arch, {})
        base = TrainConfig.for_arch(arch, **{**config.overrides, **own, "val_fraction": config.val_fraction})
        for *tower, lr, batch, decay, ws, aux in itertools.product(
            *(values for _, values in towers),
            config.lrs or (base.lr,),
            config.batch_sizes or (base.batch_size,),
            config.weight_decays or (base.weight_decay,),
            (False,) if spec.joint else config.weight_sharing,  # one network reading both digits: nothing to share
            config.aux_weights,
        ):
            options = {name: value for (name, _), value in zip(towers, tower, strict=True)}
            variant = create_variant(arch, ws, aux, **options, **config.variant_options)
            job = Job(variant, replace(base, lr=lr, batch_size=batch, weight_decay=decay).fitted(variant))
            jobs.setdefault(job.identity, job)
    return list(jobs.values())


@dataclass(frozen=True)
class TuneConfig:
    """The cells, the grid searched in each, how configurations are scored, and the evaluation protocol."""

    archs: tuple[str, ...]
    techniques: tuple[Technique, ...] = tuple(Technique)
    aux_weights: tuple[float, ...] = (1.0,)  # searched in the cells with the auxiliary loss
    tower_axes: dict = field(default_factory=dict)  # as BenchConfig.tower_axes
    lrs: tuple[float, ...] = ()
    batch_sizes: tuple[int, ...] = ()
    weight_decays: tuple[float, ...] = ()
    trials: int = setting("Configurations sampled per cell from a larger grid (0: the whole grid).", 0, low=0,
                          panel=None, shown=True)  # fmt: skip
    folds: int = setting("Score by k-fold cross-validation with this many folds (0: one held-out share).", 0, low=0,
                         panel=None, shown=True)  # fmt: skip
    holdout: float = setting("Share of the tuning pairs that scores configurations (no folds).", 0.2, low=0.05,
                             high=0.5, panel=None, shown=True)  # fmt: skip
    tune_pairs: int = setting("Pairs drawn for tuning (training digits).", 1000, low=20, panel=None, shown=True)
    rounds: int = setting("Evaluation rounds of each selected configuration.", 10, low=1, panel=None, shown=True)
    pairs: int = 1000
    test_pairs: int = 1000
    val_fraction: float = 0.1  # of each evaluation round's training pairs, for choosing best.pt
    seed: int = 0
    variant_options: dict = field(default_factory=dict)
    overrides: dict = field(default_factory=dict)  # TrainConfig fields set for every architecture
    tune_epochs: int | None = None  # epochs of the tuning trainings, when shorter than the evaluation's
    preset: str | None = None  # a report's cells instead of archs × techniques (digitcmp.presets)

    def __post_init__(self) -> None:
        check_fields(self)
        unknown = [name for name in self.techniques if name not in {t.value for t in Technique}]
        if unknown:
            raise DigitcmpError(f"unknown technique {unknown[0]!r}; choose from: {', '.join(Technique)}")
        object.__setattr__(self, "techniques", tuple(Technique(name) for name in self.techniques))
        if self.folds == 1 or self.folds < 0:
            raise DigitcmpError(f"--folds {self.folds}: cross-validation needs at least 2 folds (0: a held-out share)")
