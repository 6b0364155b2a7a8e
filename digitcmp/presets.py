"""The five course reports as presets: each report's architectures, loss, optimiser and protocol, with the table it
published, so that ``digitcmp bench --preset NAME`` (and ``digitcmp tune --preset NAME`` where the report searched
hyper-parameters) puts the run's figure beside the report's.

Plain data, no torch (``digitcmp list`` shows the presets). Where a report is silent or ambiguous, the choice is
written in the preset's ``choices``; docs/reproductions.md discusses each.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import lookup
from .variant import Technique


@dataclass(frozen=True)
class PresetCell:
    """One cell of a report's table: what it trained, and what it published (test accuracy, mean and std)."""

    row: str  # the report's row (architecture, or its setting)
    technique: Technique  # the report's column
    variant: dict  # create_variant options
    train: dict = field(default_factory=dict)  # TrainConfig fields on top of the preset's
    published: tuple[float, float] | None = None  # accuracy in [0, 1]: mean, std over the report's rounds

    @property
    def label(self) -> str:
        return f"{self.row} · {self.technique.label}"


@dataclass(frozen=True)
class Preset:
    """A report's setup and its published table."""

    name: str
    report: str  # file name among the reports
    summary: str  # one line for digitcmp list
    cells: tuple[PresetCell, ...]
    train: dict  # TrainConfig fields shared by every cell
    published_metric: str = "last"  # last: the last epoch's test accuracy; best-epoch: the best test epoch's
    published_rounds: int = 10  # rounds behind each published mean ± std (every report ran 10)
    protocol: str = "fixed"  # fixed settings | grid: searched on one split | folds: k-fold cross-validation
    search: dict = field(default_factory=dict)  # tune's reduced grid: TuneConfig fields (lrs, folds, ...)
    choices: tuple[str, ...] = ()  # what the report left open, and what the preset chose


def cells(row: str, variant: dict, published: dict[str, tuple[float, float]], aux_weight: float = 1.0,
          **train: object) -> tuple[PresetCell, ...]:  # fmt: skip
    """A row of the reports' usual table: the four techniques of one architecture."""
    return tuple(
        PresetCell(
            row,
            technique,
            {
                **variant,
                "weight_sharing": technique.weight_sharing,
                "aux_weight": aux_weight if technique.has_aux else 0,
            },
            dict(train),
            published.get(technique),
        )
        for technique in Technique
        if technique in published
    )


def from_percent(mean: float, std: float) -> tuple[float, float]:
    """A published figure in percent as the accuracy fraction results use."""
    return round(mean / 100, 6), round(std / 100, 6)


STRIDED_CNN = Preset(
    name="strided-cnn-sgd",
    report="000_e2d4e77be8a242e7.txt",
    summary="one strided CNN (72,554 parameters), plain SGD at 1e-3 for 25 epochs, the three losses summed",
    cells=cells(
        "strided CNN",
        {"arch": "strided-cnn"},
        {  # Table 2, comparison error %, 10 rounds → accuracy
            "none": from_percent(100 - 19.29, 5.95),
            "ws": from_percent(100 - 17.63, 2.45),
            "aux": from_percent(100 - 12.71, 3.66),
            "both": from_percent(100 - 11.99, 2.83),
        },
    ),
    train={
        "optimizer": "sgd",
        "momentum": 0.0,
        "lr": 1e-3,
        "epochs": 25,
        "batch_size": 1,
        "loss": "sum",
        "val_fraction": 0.0,
    },
    choices=(
        "Channels 64 and 96 with weight sharing and a 20 → 20 → 2 comparison head: the only natural sizes that give "
        "the published 72,554 parameters with the stated strides, paddings and pools.",
        "Batch size 1 (not stated): plain SGD at 1e-3 barely moves in 25 epochs of 100-pair batches, and the report "
        "trains well.",
        "ReLU activations (not stated; the report's theory section names ReLU); no batch norm or dropout.",
        "The report's ~49% digit error without the auxiliary loss is not a comparable figure (chance is 90%): only "
        "the comparison table is reproduced.",
    ),
)

THREE_PIPES = Preset(
    name="three-pipes",
    report="001_f22ced5441240016.txt",
    summary="shallow FC, deep FC and a ConvNet pipe, auxiliary weight 0.5 as a weighted average, 50 epochs, best "
    "test epoch reported",
    cells=(
        *cells(
            "shallow FC",
            {"arch": "shallow-fc", "head_width": 50, "head_classes": 2},
            {"none": (0.8205, 0.0149), "ws": (0.8259, 0.0122), "aux": (0.8312, 0.0055), "both": (0.8386, 0.0182)},
        ),
        *cells(
            "deep FC",
            {"arch": "deep-fc", "hidden": (300, 120, 60, 30, 15), "head_width": 50, "head_classes": 2},
            {"none": (0.8118, 0.0169), "ws": (0.8433, 0.0132), "aux": (0.8879, 0.0122), "both": (0.8999, 0.0124)},
        ),
        *cells(
            "ConvNet",
            {"arch": "lenet", "head_width": 32, "head_classes": 2},
            {"none": (0.8506, 0.0115), "ws": (0.8630, 0.0132), "aux": (0.9026, 0.0137), "both": (0.9031, 0.0167)},
        ),
    ),
    # The report's figure is each round's best test epoch: full curves measure every epoch on every test pair.
    train={"optimizer": "adam", "lr": 1e-3, "epochs": 50, "batch_size": 100, "val_fraction": 0.0, "curves": "full"},
    published_metric="best-epoch",
    choices=(
        "Auxiliary weight 0.5 in a weighted average: (1 − 0.5)·main + 0.5·aux is the default loss with weight 1; "
        "aux is the sum of the two digits' cross-entropies (sum or mean is not stated).",
        "Adam, batch 100 (the optimiser and batch size are not stated), PyTorch's default initialisation.",
        "Deep FC: five hidden layers from 300 down (300, 120, 60, 30, 15), about 200,000 parameters with two pipes as "
        "the report says; its deepened classifier is kept at one hidden layer of 50.",
        "ConvNet: the project's lenet pipe (its layers were in a figure lost from the report) with the report's "
        "20 → 32 → 2 classifier.",
        "The report published each round's best test epoch; the preset shows that figure (optimistic) beside the "
        "last epoch's.",
    ),
)


def joint_cell(channels: int, aux: bool, lr: float, batch: int, aux_weight: float, published: tuple[float, float]):
    return PresetCell(
        f"{channels} filters",
        Technique.aux if aux else Technique.none,
        {"arch": "joint-conv6", "channels": (channels,), "weight_sharing": False, "aux_weight": aux_weight},
        {"lr": lr, "batch_size": batch},
        from_percent(*published),
    )


JOINT_CONV6 = Preset(
    name="joint-conv6-grid",
    report="002_d39d18f98ac95264.txt",
    summary="six-block CNN on both digits at once (8-64 filters), three heads, 150 epochs of Adam; learning rate, "
    "batch and auxiliary weight from a grid",
    cells=(
        joint_cell(8, False, 1e-2, 200, 0.0, (81.69, 1.70)),
        joint_cell(8, True, 5e-3, 200, 0.7, (80.81, 3.38)),
        joint_cell(16, False, 5e-3, 100, 0.0, (83.05, 0.97)),
        joint_cell(16, True, 1e-2, 50, 0.8, (84.19, 4.46)),
        joint_cell(32, False, 1e-2, 50, 0.0, (83.84, 0.94)),
        joint_cell(32, True, 5e-3, 50, 1.0, (90.49, 1.76)),
        joint_cell(64, False, 5e-3, 100, 0.0, (83.10, 0.90)),
        joint_cell(64, True, 5e-3, 100, 1.0, (92.03, 0.64)),
    ),
    train={"optimizer": "adam", "epochs": 150, "val_fraction": 0.0},
    protocol="grid",
    search={"lrs": (1e-3, 5e-3, 1e-2), "aux_weights": (0.5, 1.0), "holdout": 0.2, "epochs": 50},
    choices=(
        "The bench preset trains each cell with the settings the report selected (its Table I).",
        "The report searched 13 auxiliary weights × 5 learning rates × 5 batch sizes per filter count on the test "
        "pairs of one split; tune --preset searches 3 learning rates (× 2 auxiliary weights) on 20% held-out "
        "training pairs, for 50 epochs instead of 150, at the batch size the report selected: 36 trainings of 50 "
        "epochs in all instead of the report's 1,300 of 150.",
        "The comparison head outputs one logit (binary cross-entropy, as the report says); its heads are a hidden "
        "layer of 20 units with dropout 0.5 before the output.",
        "Loss (main + w·aux)/(1 + w), the report's (w_m·main + w_a·aux)/(w_m + w_a) with w_m = 1.",
        "The last epoch is reported (the report does not say).",
    ),
)

BATCHNORM_CV = Preset(
    name="batchnorm-cv",
    report="003_b3dbaa58b2bf08af.txt",
    summary="FNN and CNN with batch norm, comparison on the softmax outputs, Adam batch 64, 50 epochs; learning "
    "rate and weight decay by 3-fold cross-validation",
    cells=(
        *cells(
            "FNN",
            {
                "arch": "deep-fc",
                "hidden": (256, 128),
                "batch_norm": True,
                "head": "probs",
                "head_width": 64,
                "head_classes": 2,
            },
            {
                "none": from_percent(78.2, 1.5),
                "ws": from_percent(77.4, 2.4),
                "aux": from_percent(93.8, 1.2),
                "both": from_percent(94.8, 1.6),
            },
        ),
        *cells(
            "CNN",
            {
                "arch": "lenet",
                "hidden": (128,),
                "batch_norm": True,
                "head": "probs",
                "head_width": 64,
                "head_classes": 2,
            },
            {
                "none": from_percent(79.7, 2.0),
                "ws": from_percent(82.1, 1.3),
                "aux": from_percent(94.5, 0.9),
                "both": from_percent(94.7, 1.1),
            },
        ),
    ),
    train={
        "optimizer": "adam",
        "lr": 1e-3,
        "weight_decay": 0.0,
        "epochs": 50,
        "batch_size": 64,
        "loss": "sum",
        "val_fraction": 0.0,
    },
    protocol="folds",
    search={"lrs": (1e-3, 5e-3, 1e-2), "weight_decays": (0.0, 1e-3, 1e-2), "folds": 3},
    choices=(
        "Layer widths are not given: FNN towers 196 → 256 → 128 → 10 (its 'two hidden layers'), the CNN tower the "
        "project's lenet with one hidden layer of 128, batch norm before every hidden activation.",
        "The comparison reads both digits' softmax probabilities through one hidden layer of 64 and two classes.",
        "The losses are summed (their combination is not stated).",
        "tune --preset searches 3 learning rates × 3 weight decays with 3-fold cross-validation (the report: 15 × 4); "
        "the bench preset fixes learning rate 1e-3 and no weight decay, as the selected values were not published.",
    ),
)

BUDGET_CONVNET = Preset(
    name="budget-convnet",
    report="004_58e96e1a85be470d.txt",
    summary="a three-convolution net under a 65-75k parameter budget, comparison on the towers' features, "
    "loss digit₁ + digit₂ + 0.8·comparison",
    cells=(
        PresetCell(
            "ConvNet [32, 64, 32, 512]",
            Technique.both,
            {"arch": "convnet3", "weight_sharing": True, "aux_weight": 1.25},
            {},
            from_percent(91.36, 0.63),
        ),
    ),
    train={"optimizer": "adam", "lr": 1e-3, "epochs": 25, "batch_size": 100, "loss": "sum", "val_fraction": 0.0},
    choices=(
        "Only the final network's figure was published (weight sharing and auxiliary loss); its other cells were "
        "in figures lost from the report.",
        "Kernel sizes 3, 3 and 2 without padding (not stated): the features are 32 channels of 1×1, and the whole "
        "model has 66,347 parameters, inside the report's 65-75k budget; digit classifier 32 → 128 → 10.",
        "digit₁ + digit₂ + λ·comparison with λ = 0.8 is 0.8 × (comparison + 1.25·aux): the summed loss with "
        "auxiliary weight 1.25 (Adam does not see the overall scale).",
        "Adam for 25 epochs (neither is stated).",
    ),
)

PRESETS: dict[str, Preset] = {p.name: p for p in (STRIDED_CNN, THREE_PIPES, JOINT_CONV6, BATCHNORM_CV, BUDGET_CONVNET)}


def get_preset(name: str) -> Preset:
    return lookup(PRESETS, name, "preset")
