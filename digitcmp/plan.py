"""From what a command was asked to what it runs, resolved once: train's variant and training configuration, bench's
grid and tune's cells, with the policies the command line implies (``--quick``, a preset's protocol and search,
the all-pairs rule, ``--resume``). The commands only parse, call these, run and render; tests call them directly.

``settings`` maps every declared setting (digitcmp.settings) to the value given, or None where it was not given
(the architecture's own, or its recipe); bench and tune hold the grid settings as tuples of values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .archs import ARCHS, STUDY
from .config import DATA_ENV, TrainConfig
from .errors import DigitcmpError
from .executor import SCALE, ExecutorConfig
from .gate import Gate
from .grid import LATER_FIELDS, QUICK_ROUNDS, TRAINING_AXES, BenchConfig, Job, TuneConfig, expand
from .presets import get_preset
from .runs import read_config, tuples
from .settings import Choice, declared, flag, parse_list, setting
from .variant import SHARED_OPTIONS, TOWER_OPTIONS, Technique, Variant, create_variant

VARIANT_SETTINGS = tuple(declared(Variant))
TRAINING_SETTINGS = tuple(declared(TrainConfig))
# Training settings bench and tune apply to every cell (the training axes and the validation share are separate).
OVERRIDES = tuple(name for name in TRAINING_SETTINGS if name not in (*TRAINING_AXES, "val_fraction"))
TECHNIQUES = ",".join(technique.value for technique in Technique)  # tune's cells: every technique
RESUME = (
    "Continue the interrupted run in this folder: its own configuration (options that would change it are "
    "refused), its finished cells read back."
)
# What a resumed run may still choose: where it trains, how it prints, its digits (checked against the run's own),
# how its cells are spread and the gate its results meet. Any other option would change the run, so it is refused.
RESUME_MAY_SET = frozenset(
    {"resume", "device", "data_dir", "train_digits", "download", "json_output", "quiet", *declared(ExecutorConfig),
     *declared(Gate)}
)  # fmt: skip


Arch = Choice("Arch", {name: name for name in ARCHS})  # type: ignore[misc]


class TrainDigits(Choice):
    sample = "sample"
    mnist = "mnist"


class Device(Choice):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


@dataclass(frozen=True)
class Run:
    """What train, bench and tune share: the protocol's sizes and seed, where the digits come from, where torch
    trains, where results go and what is printed."""

    seed: int = setting("Seed of the data draws, initialisation and shuffling.", 0, panel=None, shown=True)
    device: Device = setting("Where torch trains.", Device.auto, panel=None, shown=True)
    data_dir: Path | None = setting(
        "Folder with the MNIST IDX files (.gz or raw, flat or MNIST/raw): test digits from its test set.", None,
        panel=None, envvar=DATA_ENV, shown="the bundled sample alone",
    )  # fmt: skip
    train_digits: TrainDigits = setting(
        "Training digits: the bundled 5,000-digit sample (the published tables' protocol), or mnist: the 60,000 "
        "MNIST training digits in --data-dir.", TrainDigits.sample, panel=None, shown=True,
    )  # fmt: skip
    download: bool = setting("Download MNIST into --data-dir first (needs network).", False, shown=False)
    out: Path | None = setting("Results folder.", None, panel=None, shown="a new folder under runs/")
    json_output: bool = setting("Print only JSON on stdout.", False, flags=("--json",), panel=None, shown=False)
    quiet: bool = setting("No progress or notes on stderr.", False, flags=("--quiet", "-q"), panel=None, shown=False)
    pairs: int = setting("Training pairs per round.", 1000, low=1, shown=True)
    test_pairs: int | None = setting("Test pairs per round.", None, low=1, shown="--pairs")

    @property
    def silent(self) -> bool:
        """No progress or notes on stderr: asked for, or stdout is JSON for a program."""
        return self.quiet or self.json_output

    def start(self, folder: Path | None, default: str) -> tuple[Any, Path, Any]:
        """Before anything trains: the torch device, the results folder (checked writable; ``default`` under
        runs/ when none is given) and the digits."""
        from .data import load_source
        from .runs import prepare_out
        from .train import resolve_device

        return (
            resolve_device(self.device.value),
            prepare_out(folder, default),
            load_source(self.data_dir, self.download, self.train_digits.value),
        )


@dataclass(frozen=True)
class TrainRequest:
    """What train is asked besides the settings: the variant's identity and the number of rounds."""

    arch: Arch | None = setting("Architecture (digitcmp list).", None, panel=None, shown="vgg4")
    weight_sharing: bool | None = setting("One tower for both digits.", None, panel=None, shown="on")
    rounds: int = setting("Rounds, each a fresh data draw and initialisation.", 1, low=1, panel=None, shown=True)


@dataclass(frozen=True)
class BenchRequest:
    """What bench is asked besides the settings: the grid's architectures and auxiliary weights, or a preset."""

    archs: str | None = setting("Architectures, a comma list (digitcmp list).", None, flags=("--arch",), panel=None,
                                shown="the study's: " + ",".join(STUDY))  # fmt: skip
    aux_weights: str | None = setting("Auxiliary-loss weights, a comma list (0 = off).", None, panel=None,
                                      flags=("--aux-weight",), shown="0,1")  # fmt: skip
    preset: str | None = setting("A report's setup and table instead of the grid (digitcmp list).", None,
                                 panel=None, shown=False)  # fmt: skip
    rounds: int | None = setting("Rounds per variant.", None, low=1, panel=None, shown="10; --quick: 3")
    quick: bool = setting("Each architecture's ranking of the techniques in minutes: every variant, 3 "
                          "rounds, each architecture for the fewest epochs that rank its techniques as the full "
                          "study does.", False, panel=None,
                          shown=False)  # fmt: skip
    resume: Path | None = setting(RESUME, None, panel=SCALE, shown=False)


@dataclass(frozen=True)
class TuneRequest:
    """What tune is asked besides the settings and its search: the cells, or a preset."""

    archs: str | None = setting("Architectures, a comma list (digitcmp list).", None, flags=("--arch",), panel=None,
                                shown="the study's: " + ",".join(STUDY))  # fmt: skip
    techniques: str | None = setting(f"Techniques, a comma list: {TECHNIQUES} (the table's columns).", None,
                                     flags=("--technique",), panel=None, shown=TECHNIQUES)  # fmt: skip
    aux_weights: str | None = setting("Auxiliary-loss weights searched where it is on.", None, panel=None,
                                      flags=("--aux-weight",), shown="1")  # fmt: skip
    preset: str | None = setting("A report's cells and its search (reduced where it does not fit).", None,
                                 panel=None, shown=False)  # fmt: skip
    resume: Path | None = setting(RESUME, None, panel=SCALE, shown=False)


def plan_train(request: TrainRequest, settings: dict[str, Any]) -> Job:
    """The variant and its training configuration: the options given on top of the architecture's own and its
    recipe. The all-pairs loss asked for where it cannot apply is refused rather than dropped."""
    arch = request.arch and request.arch.value
    variant = create_variant(arch, request.weight_sharing, **{n: settings.get(n) for n in VARIANT_SETTINGS})
    config = TrainConfig.for_arch(variant.arch, **{n: settings.get(n) for n in TRAINING_SETTINGS})
    if config.fitted(variant) != config:
        raise DigitcmpError(
            "--all-pairs needs the structured head and an auxiliary loss; add --head structured and --aux-weight 1, "
            "or drop --all-pairs"
        )
    return Job(variant, config)


@dataclass(frozen=True)
class StudyPlan:
    """A bench or tune, resolved: its configuration, its cells, and the network-epochs they train."""

    config: Any  # BenchConfig or TuneConfig
    cells: list
    total_epochs: int


def plan_bench(request: BenchRequest, settings: dict[str, Any], pairs: int, test_pairs: int | None,
               seed: int) -> StudyPlan:  # fmt: skip
    """bench's grid: the study's architectures × weight sharing × the auxiliary weights × the axes given (or a
    preset's cells), each cell resolved; ``--quick`` is 3 rounds with each architecture's quick epochs (unless
    --epochs is given); ``resume`` takes the interrupted run's own configuration instead."""
    archs, aux_weights, preset, quick = request.archs, request.aux_weights, request.preset, request.quick
    if request.resume is not None:
        config = BenchConfig(**resumed_config(request.resume, "bench"))
    else:
        if preset is not None:
            refuse_grid_with_preset(settings, arch=archs, aux_weight=aux_weights, quick=quick)
        quick_epochs = {a: {"epochs": s.quick_epochs} for a, s in ARCHS.items() if s.quick_epochs}
        config = BenchConfig(
            archs=STUDY if archs is None else parse_list(archs, str, "arch"),
            aux_weights=parse_list(aux_weights or "0,1", float, "aux_weight"),
            **grid_axes(settings),
            rounds=request.rounds or (QUICK_ROUNDS if quick else 10),
            pairs=pairs,
            test_pairs=test_pairs or pairs,
            val_fraction=validation_share(preset, settings),
            preset=preset,
            seed=seed,
            variant_options=shared_variant_options(settings),
            arch_overrides=quick_epochs if quick and not settings.get("epochs") else {},
            overrides={name: settings.get(name) for name in OVERRIDES},
        )
    jobs = expand(config)
    return StudyPlan(config, jobs, sum(job.config.epochs for job in jobs) * config.rounds)


def plan_tune(request: TuneRequest, search: dict[str, Any], settings: dict[str, Any], pairs: int,
              test_pairs: int | None, seed: int) -> StudyPlan:  # fmt: skip
    """tune's cells: every architecture × technique (or a preset's cells, with the preset's own search where it
    searched), each with the trials of its grid; ``search`` holds tune's own settings (trials, folds, holdout,
    tune_pairs, rounds)."""
    from .tune import Cell, candidates, cell_epochs, cell_specs

    archs, techniques, aux_weights, preset = request.archs, request.techniques, request.aux_weights, request.preset
    if request.resume is not None:
        config = TuneConfig(**resumed_config(request.resume, "tune"))
    else:
        if preset is not None:
            refuse_grid_with_preset(settings, arch=archs or techniques, aux_weight=aux_weights)
            search = {**search, **preset_search(preset)}
        config = TuneConfig(
            archs=STUDY if archs is None else parse_list(archs, str, "arch"),
            techniques=parse_list(techniques or TECHNIQUES, str, "technique"),
            **{
                "aux_weights": () if preset else parse_list(aux_weights or "1", float, "aux_weight"),
                **grid_axes(settings),
                **search,  # tune's own settings, and a preset's search (its auxiliary weights among them)
            },
            val_fraction=validation_share(preset, settings),
            preset=preset,
            pairs=pairs,
            test_pairs=test_pairs or pairs,
            seed=seed,
            variant_options=shared_variant_options(settings),
            overrides={name: settings.get(name) for name in OVERRIDES},
        )
    cells = [Cell(spec, candidates(config, spec)) for spec in cell_specs(config)]  # checks every cell's grid
    return StudyPlan(config, cells, sum(cell_epochs(config, cell) for cell in cells))


def grid_axes(settings: dict[str, Any]) -> dict[str, Any]:
    """The grid axes of bench and tune among the settings; axes not given take each architecture's own value."""
    return {
        "tower_axes": {name: settings[name] for name in TOWER_OPTIONS if settings.get(name)},
        "lrs": settings.get("lr") or (),
        "batch_sizes": settings.get("batch_size") or (),
        "weight_decays": settings.get("weight_decay") or (),
    }


def validation_share(preset: str | None, settings: dict[str, Any]) -> float:
    """The share of each round's training pairs held out for choosing best.pt: the preset's, else the one given,
    else the protocol's."""
    if preset is not None:
        return float(get_preset(preset).train.get("val_fraction", TrainConfig.val_fraction))
    given = settings.get("val_fraction")
    return TrainConfig.val_fraction if given is None else given


def shared_variant_options(settings: dict[str, Any]) -> dict[str, Any]:
    """The variant options every cell of a grid shares. One added in a later version is left out where it is not
    given, so a configuration (and the trials tune draws from its text) stays what it was before it existed."""
    return {
        name: settings.get(name)
        for name in SHARED_OPTIONS
        if name not in LATER_FIELDS or settings.get(name) is not None
    }


def refuse_grid_with_preset(settings: dict[str, Any], **own: Any) -> None:
    """A preset brings its own cells (the reports' variants, on pooled digits): grid axes and a resolution beside
    it would be ignored, so they are refused."""
    given = [flag(name) for name, value in own.items() if value]
    given += [flag(name) for name in (*TOWER_OPTIONS, *TRAINING_AXES, "resolution") if settings.get(name)]
    if given:
        raise DigitcmpError(f"--preset brings its own cells; drop {', '.join(given)}")


def preset_search(name: str) -> dict[str, Any]:
    """A preset's (reduced) search as TuneConfig fields; its epochs become the tuning trainings' epochs."""
    search = dict(get_preset(name).search)
    if not search:
        raise DigitcmpError(f"preset '{name}' searched nothing (fixed settings); run 'digitcmp bench --preset {name}'")
    if "epochs" in search:
        search["tune_epochs"] = search.pop("epochs")
    return search


def refuse_beside_resume(given: dict[str, str]) -> None:
    """``--resume`` continues a run with the configuration it started with: the options given (name → flag) that
    would change it are refused rather than silently ignored."""
    ignored = [flag for name, flag in given.items() if name not in RESUME_MAY_SET]
    if ignored:
        raise DigitcmpError(f"--resume continues the run with its own configuration; drop {', '.join(ignored)}")


def resumed_config(folder: Path, kind: str) -> dict[str, Any]:
    """The configuration an interrupted run in ``folder`` started with, as the config's fields."""
    saved = read_config(folder)
    if saved["kind"] != kind:
        raise DigitcmpError(f"--resume {folder} holds a {saved['kind']} run; resume it with 'digitcmp {saved['kind']}'")
    return tuples(saved["config"])
