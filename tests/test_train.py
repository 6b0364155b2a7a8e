"""Training: learning above chance, determinism, augmentation semantics, configuration checks."""

from __future__ import annotations

import platform
import statistics
from dataclasses import replace

import pytest
import torch

import digitcmp.train as train_module
from digitcmp import rng
from digitcmp.config import LIGHT_CURVE_PAIRS, TrainConfig
from digitcmp.data import PairSet, RoundData, draw_rounds, load_source
from digitcmp.errors import DigitcmpError
from digitcmp.model.losses import comparison_loss
from digitcmp.model.network import ComparisonNet, member_state
from digitcmp.train import (
    RoundResult,
    RunResult,
    add_swapped,
    epoch_order,
    evaluate,
    keep_freed_memory,
    resolve_device,
    stack,
    train_members,
    train_variant,
)
from digitcmp.variant import Variant, create_variant

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def rounds():
    return draw_rounds(load_source(None), rounds=2, n_train=1000, n_test=1000, val_fraction=0.1, seed=0)


@pytest.mark.slow
def test_short_training_beats_chance_clearly(rounds):
    result = train_variant(
        create_variant("shallow-fc", True, 1.0), rounds, TrainConfig(epochs=8, curves="full"), CPU, seed=0
    )
    summary = result.summary()
    # Always answering "≤" scores about 0.55; a few epochs of a small network should reach 0.75+.
    assert summary["test_accuracy_mean"] > 0.75
    assert summary["digit_accuracy_mean"] > 0.8
    assert len(result.rounds) == 2 and [r.round for r in result.rounds] == [0, 1]
    curves = result.rounds[0].curves
    assert len(curves["train_loss"]) == 8 and curves["train_loss"][-1] < curves["train_loss"][0]
    assert len(curves["test_error"]) == 8 and len(curves["val_error"]) == 8


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["lenet", "vgg4"])
def test_evaluation_uses_the_variants_views_in_small_forwards(arch, rounds, monkeypatch):
    test = stack([r.test for r in rounds], CPU)
    model = ComparisonNet(create_variant(arch, True, 1.0), members=2).eval()
    with torch.no_grad():
        whole = [model(test.inputs, tta=tta)[0] for tta in (None, False)]  # one forward over every pair
    sizes: list[int] = []
    original = model.single_view
    monkeypatch.setattr(model, "single_view", lambda pairs: sizes.append(pairs.shape[1]) or original(pairs))
    for tta, logits in zip((None, False), whole, strict=True):
        sizes.clear()
        accuracy, _ = evaluate(model, test) if tta is None else evaluate(model, test, tta=tta)  # default: variant's
        expected = ((logits > 0).float() == test.targets).float().mean(1)
        assert torch.allclose(accuracy, expected)
        views = model.views() if tta is None else 1  # lenet has no test-time averaging, vgg4 has 37 views
        assert sum(sizes) == views * test.targets.shape[1]
        assert max(sizes) * model.networks <= train_module.CPU_EVAL_PAIRS


@pytest.mark.slow
def test_training_is_deterministic_for_a_seed(rounds):
    config = TrainConfig(epochs=2)
    a = train_variant(create_variant("lenet", False, 0.0), rounds, config, CPU, seed=3)
    b = train_variant(create_variant("lenet", False, 0.0), rounds, config, CPU, seed=3)
    assert [r.test_accuracy for r in a.rounds] == [r.test_accuracy for r in b.rounds]
    assert all(torch.equal(a.best_state[k], b.best_state[k]) for k in a.best_state)


def test_swapped_pairs_keep_equal_digits_at_one(rounds):
    pairs = rounds[0].train
    swapped = add_swapped(pairs)
    n = len(pairs)
    assert swapped.inputs.shape[0] == 2 * n
    assert torch.equal(swapped.inputs[n:, 0], pairs.inputs[:, 1])
    assert torch.equal(swapped.classes[n:], pairs.classes.flip(-1))
    equal = pairs.classes[:, 0] == pairs.classes[:, 1]
    assert equal.any() and (swapped.targets[n:][equal] == 1).all()
    assert torch.equal(swapped.targets[n:][~equal], 1 - pairs.targets[~equal])


@pytest.mark.parametrize(
    ("settings", "flag"),
    [
        ({"epochs": 0}, "--epochs"),
        ({"lr": -1}, "--lr"),
        ({"val_fraction": 1.0}, "--val-fraction"),
        ({"elastic": 3.0}, "--elastic"),
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"schedule": "cosine"}, "schedule"),
    ],
)
def test_bad_configuration_names_the_flag(settings, flag):
    with pytest.raises(DigitcmpError, match=flag):
        TrainConfig(**settings)


def test_device_resolution():
    assert resolve_device("cpu") == CPU
    if not torch.cuda.is_available():
        with pytest.raises(DigitcmpError, match="no GPU"):
            resolve_device("cuda")
    with pytest.raises(DigitcmpError, match="unknown device"):
        resolve_device("tpu")


def test_architecture_recipes_and_overrides():
    assert TrainConfig.for_arch("lenet") == TrainConfig()
    vgg = TrainConfig.for_arch("vgg4")
    recipe = (vgg.optimizer, vgg.schedule, vgg.shift, vgg.swap, vgg.epochs, vgg.elastic)
    assert recipe == ("adamw", "onecycle", 2, True, 60, 0.5)
    tuned = TrainConfig.for_arch("vgg4", epochs=5, lr=None, swap=False, elastic=0.0)
    assert (tuned.epochs, tuned.lr, tuned.swap, tuned.elastic) == (5, vgg.lr, False, 0.0)


def test_the_all_pairs_loss_applies_only_where_every_pair_has_a_score_and_a_target():
    vgg = TrainConfig.for_arch("vgg4", all_pairs=True)
    assert vgg.fitted(create_variant("vgg4", True, 1.0)).all_pairs  # structured head, digit classes: it applies
    assert not vgg.fitted(create_variant("vgg4", True, 0.0)).all_pairs  # no auxiliary loss: no digit classes
    assert not vgg.fitted(create_variant("vgg4", False, 1.0, head="mlp")).all_pairs  # a learned head scores drawn pairs
    assert vgg.fitted(create_variant("vgg4", False, 0.0)) == replace(vgg, all_pairs=False)  # nothing else changes


@pytest.mark.slow
def test_training_with_the_all_pairs_loss_learns_and_records_it(rounds):
    variant, config = create_variant("shallow-fc", True, 1.0, head="structured"), TrainConfig(epochs=8, all_pairs=True)
    result = train_variant(variant, rounds, config, CPU, seed=0)
    assert result.config.all_pairs and result.summary()["test_accuracy_mean"] > 0.75
    plain = train_variant(replace(variant, aux_weight=0.0), rounds, config, CPU, seed=0)
    assert not plain.config.all_pairs  # recorded as it ran: no digit classes, drawn pairs only


@pytest.mark.slow
@pytest.mark.parametrize(
    "config",
    [
        TrainConfig(epochs=4, optimizer="adamw", schedule="onecycle", lr=3e-3),
        TrainConfig(epochs=4, optimizer="sgd", lr=0.05),
    ],
    ids=["adamw-onecycle", "sgd"],
)
def test_every_optimizer_and_schedule_learns(rounds, config):
    result = train_variant(create_variant("deep-fc", True, 0.5), rounds, config, CPU)
    for r in result.rounds:
        assert r.curves["train_loss"][-1] < 0.85 * r.curves["train_loss"][0]
    # In 4 epochs from scratch: digits well above chance (10%), comparisons above always answering "≤" (55%).
    assert result.summary()["digit_accuracy_mean"] > 0.5 and result.summary()["test_accuracy_mean"] > 0.62


def test_cpu_rounds_train_in_chunks_of_a_few_networks(monkeypatch):
    monkeypatch.setattr(train_module, "CPU_NETWORKS", 4)  # an ensemble of two: 2 rounds per chunk
    data = draw_rounds(load_source(None), rounds=3, n_train=100, n_test=100, val_fraction=0.1, seed=0)
    result = train_variant(create_variant("shallow-fc", True, 1.0, ensemble=2), data, TrainConfig(epochs=1), CPU)
    assert [r.round for r in result.rounds] == [0, 1, 2]
    seconds = [r.seconds for r in result.rounds]
    assert seconds[0] == seconds[1]  # one chunk's time, shared by its rounds
    assert all(len(r.curves["test_error"]) == 1 for r in result.rounds)
    assert set(result.best_state["tower_a.1.weight"].shape[:1]) == {2}  # both networks of the chosen round


def test_progress_counts_every_epoch_of_every_round_and_training_accuracy_is_single_view(monkeypatch):
    data = draw_rounds(load_source(None), rounds=3, n_train=60, n_test=60, val_fraction=0.1, seed=0)
    views: list[bool | None] = []
    real = train_module.evaluate

    def recording(model, pairs, tta=None):
        views.append(tta)
        return real(model, pairs, tta)

    monkeypatch.setattr(train_module, "evaluate", recording)
    counted: list[int] = []
    variant = create_variant("shallow-fc", True, 1.0, tta=True)
    train_variant(variant, data, TrainConfig(epochs=2, curves="off"), CPU, on_epoch=counted.append)
    assert sum(counted) == 2 * 3  # epochs × rounds: what the progress bar counts
    assert views[0] is False  # the training pairs: one view, whatever the variant's test-time averaging
    assert views[1:] == [None, None]  # validation and test: the variant's own views


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's")
def test_freed_activation_memory_is_reused_without_page_faults() -> None:
    """A batched step's 37 MB activations must not come from a fresh mmap (and its page faults) every step."""
    import resource  # Unix only

    assert keep_freed_memory()

    def faults_for_one_allocation() -> int:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.empty(16 * 2**20).fill_(1.0)  # 64 MB, above glibc's largest mmap threshold (32 MB)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    for _ in range(6):  # the first few grow the heap until it holds the block and what lands beside it
        faults_for_one_allocation()
    # A fresh 64 MB mapping faults ~16,000 times (4 KB pages), every time; reused heap memory does not.
    assert sorted(faults_for_one_allocation() for _ in range(5))[2] < 1000


def random_round(index: int, n: int = 16) -> RoundData:
    """Round ``index`` of n random pairs (and 8 test pairs, no validation), the same for the same index."""
    generator = torch.Generator().manual_seed(index)

    def pairs(count: int) -> PairSet:
        classes = torch.randint(0, 10, (count, 2), generator=generator)
        inputs = torch.rand(count, 2, 14, 14, generator=generator)
        return PairSet(inputs, (classes[:, 0] <= classes[:, 1]).float(), classes)

    return RoundData(index, pairs(n), None, pairs(8))


# One epoch of one batch, with plain gradient descent: the trained parameters are the initial ones minus lr × grad.
ONE_STEP = TrainConfig(epochs=1, batch_size=16, optimizer="sgd", lr=0.5, momentum=0.0, curves="off")


def joint_digit_heads(variant: Variant, model: ComparisonNet) -> set[str]:
    """The parameters of the joint network's two digit heads (none for other networks)."""
    if not variant.arch.startswith("joint"):
        return set()
    return {name for name, _ in model.named_parameters() if name.startswith(("tower_a.first.", "tower_a.second."))}


@pytest.mark.parametrize(
    ("variant", "config"),
    [
        (create_variant("shallow-fc", True, 0.0, hidden=(16,)), ONE_STEP),
        (create_variant("shallow-fc", True, 0.5, hidden=(16,)), ONE_STEP),
        (create_variant("shallow-fc", False, 0.5, hidden=(16,)), replace(ONE_STEP, loss="sum", label_smoothing=0.1)),
        (create_variant("joint-conv6", aux_weight=0.0, channels=(4,)), ONE_STEP),
        (create_variant("joint-conv6", aux_weight=0.5, channels=(4,)), ONE_STEP),
    ],
    ids=["aux0", "aux0.5", "aux0.5-sum-smoothing", "joint-aux0", "joint-aux0.5"],
)
def test_a_training_step_descends_the_variants_own_loss(variant, config):
    """A step of training is a gradient step on the comparison loss with the variant's auxiliary weight and the
    configuration's loss kind and label smoothing, from the round's initial parameters, batch order and dropout
    masks. Without the auxiliary loss nothing trains the joint network's digit heads; with it, they learn."""
    data, seed = random_round(1), 4
    trained, _ = train_members(variant, [data], config, CPU, seed=seed)
    model = ComparisonNet(variant, 1, rng.network_generators(seed, [1], 1, "init")).train()
    model.use_dropout_generators(rng.network_generators(seed, [1], 1, "dropout"))
    order = epoch_order(rng.network_generators(seed, [1], 1, "order"), len(data.train))[0]
    inputs, targets, classes = (t[order][None] for t in (data.train.inputs, data.train.targets, data.train.classes))
    logits, digits = model(inputs)
    weight, smoothing, average = variant.aux_weight, config.label_smoothing, config.loss == "average"
    comparison_loss(logits, digits, targets, classes, weight, smoothing, average=average).sum().backward()
    untouched: set[str] = set()
    for (name, before), after in zip(model.named_parameters(), trained.parameters(), strict=True):
        if before.grad is None:
            untouched.add(name)
        expected = before if before.grad is None else before - config.lr * before.grad
        assert torch.allclose(after, expected, atol=1e-6), name
    assert untouched == (joint_digit_heads(variant, model) if variant.aux_weight == 0 else set())


def test_a_round_trains_the_same_alone_or_beside_another():
    """Round 1's initial parameters, batch order, shifts and dropout masks come from (seed, 1), so it ends with the
    same weights trained alone or beside round 0 (up to float rounding)."""
    variant = create_variant("deep-fc", False, 1.0, hidden=(16, 8), dropout=0.2)
    config = TrainConfig(epochs=2, batch_size=8, shift=1, curves="off")
    rounds = [random_round(0), random_round(1)]
    together, _ = train_members(variant, rounds, config, CPU, seed=4)
    alone, _ = train_members(variant, rounds[1:], config, CPU, seed=4)
    grouped, single = member_state(together, 1), member_state(alone, 0)
    assert all(torch.allclose(grouped[key], single[key], atol=1e-6) for key in single)
    initial = member_state(ComparisonNet(variant, 1, rng.network_generators(4, [1], 1, "init")), 0)
    assert not torch.allclose(single["tower_a.1.weight"], initial["tower_a.1.weight"])  # it trained


def test_of_rounds_that_validate_equally_well_the_first_is_kept_and_only_a_new_best_copies_weights():
    copies: list[int] = []

    def weights(index: int):
        return lambda: copies.append(index) or {"w": torch.tensor(float(index))}

    best = None
    for score, index in ((0.8, 0), (0.9, 1), (0.9, 2), (0.85, 3), (0.95, 4), (0.95, 5)):
        best = train_module.keep_best(best, score, index, weights(index))
    assert best[:2] == (0.95, 4) and best[2]["w"].item() == 4.0
    assert copies == [0, 1, 4]


@pytest.mark.parametrize("val_fraction", [0.25, 0.0], ids=["validation", "no-validation"])
def test_the_kept_weights_are_the_round_that_validates_best(val_fraction, monkeypatch):
    """The checkpoint's round is the one with the best validation accuracy (training accuracy without a validation
    split), never the test set's choice, compared across chunks of rounds; its weights are that round's own.
    Rounds 2-5 in chunks of two: seed 33 makes round 5, the second network of the second chunk, the best."""
    models: dict[int, tuple[ComparisonNet, int]] = {}

    def recording(variant, chunk, *args, **kwargs):
        model, curves = train_members(variant, chunk, *args, **kwargs)
        models.update({data.index: (model, member) for member, data in enumerate(chunk)})
        return model, curves

    monkeypatch.setattr(train_module, "train_members", recording)
    data = draw_rounds(load_source(None), 4, n_train=200, n_test=40, val_fraction=val_fraction, seed=33, first=2)
    config = TrainConfig(epochs=1, rounds_together=2, curves="off")
    result = train_variant(create_variant("shallow-fc", True, 1.0, hidden=(16,)), data, config, CPU, seed=33)
    scores = {r.round: r.val_accuracy if val_fraction else r.train_accuracy for r in result.rounds}
    assert max(scores, key=scores.__getitem__) == 5 and sorted(scores.values())[-2] < scores[5], scores
    assert result.rounds[3].test_accuracy < max(r.test_accuracy for r in result.rounds)  # the test set differs
    assert result.best_round == 5
    model, member = models[5]
    expected = member_state(model, member)
    assert expected.keys() == result.best_state.keys()
    assert all(torch.equal(result.best_state[key], expected[key]) for key in expected)


def test_a_summary_gives_each_metrics_mean_and_the_test_spread_over_rounds():
    """Spread is the sample standard deviation over rounds; one round has none."""

    def result(*accuracies: float) -> RunResult:
        rounds = [RoundResult(i, 1 - a, None, a, None, 1.0 + i) for i, a in enumerate(accuracies)]
        return RunResult(create_variant("shallow-fc", True, 0.0), 1, TrainConfig(), "cpu", rounds, 0, {})

    two = result(0.5, 0.75).summary()
    assert (two["test_accuracy_mean"], two["test_accuracy_std"]) == (0.625, statistics.stdev([0.5, 0.75]))
    assert two["train_accuracy_mean"] == 0.375 and two["val_accuracy_mean"] is None
    assert two["seconds_per_round"] == 1.5
    assert result(0.5).summary()["test_accuracy_std"] == 0.0


def test_light_curves_measure_a_fixed_test_sample_every_epoch_and_change_nothing_else():
    data = draw_rounds(load_source(None), rounds=2, n_train=200, n_test=300, val_fraction=0.1, seed=0)
    variant = create_variant("shallow-fc", True, 1.0)
    runs = {
        mode: train_variant(variant, data, TrainConfig(epochs=3, curves=mode), CPU) for mode in ("light", "full", "off")
    }

    def counted(errors: list[float], pairs: int) -> bool:  # each error a whole number of wrong pairs out of ``pairs``
        return all(abs(e * pairs - round(e * pairs)) < 1e-3 for e in errors)

    light, full = runs["light"].rounds[0].curves, runs["full"].rounds[0].curves
    assert len(light["test_error"]) == len(full["test_error"]) == 3 and runs["off"].rounds[0].curves["test_error"] == []
    assert counted(light["test_error"], LIGHT_CURVE_PAIRS) and counted(full["test_error"], 300)
    assert not counted(light["test_error"], 300) or not counted(full["test_error"], LIGHT_CURVE_PAIRS)
    assert light["val_error"] == [] and len(full["val_error"]) == 3  # light curves skip the validation pairs
    # The curves only watch: training, and the final figures on every test pair, are the same in all three.
    for mode in ("light", "off"):
        assert [r.test_accuracy for r in runs[mode].rounds] == [r.test_accuracy for r in runs["full"].rounds]
        assert light["train_loss"] == full["train_loss"]
    # The best test epoch is a figure of every test pair: only full curves give it.
    assert "best_epoch_test_accuracy_mean" in runs["full"].summary()
    assert "best_epoch_test_accuracy_mean" not in runs["light"].summary()


def test_configurations_of_0_2_with_curves_on_or_off_still_load():
    assert TrainConfig(curves=True).curves == "full" and TrainConfig(curves=False).curves == "off"


def test_the_summary_averages_each_figure_over_the_rounds_and_the_best_epoch_over_full_curves():
    variant = create_variant("shallow-fc", True, 1.0)
    curves = [{"test_error": [0.4, 0.2, 0.3]}, {"test_error": [0.5, 0.1, 0.35]}, {"test_error": [0.3, 0.25, 0.4]}]
    rounds = [RoundResult(r, 0.9, 0.8, 0.7 + r / 100, 0.6 + r / 10, 1.0, c) for r, c in enumerate(curves)]
    run = RunResult(variant, 10, TrainConfig(curves="full"), "cpu", rounds, 0, {})
    summary = run.summary()
    assert summary["digit_accuracy_mean"] == pytest.approx(0.7)  # the mean, not the spread
    assert summary["test_accuracy_mean"] == pytest.approx(0.71)
    assert summary["best_epoch_test_accuracy_mean"] == pytest.approx(statistics.fmean([0.8, 0.9, 0.75]))
    assert summary["best_epoch_test_accuracy_std"] == pytest.approx(statistics.stdev([0.8, 0.9, 0.75]))
    one, two = (RunResult(variant, 10, TrainConfig(curves="full"), "cpu", rounds[:n], 0, {}).summary() for n in (1, 2))
    assert (one["best_epoch_test_accuracy_mean"], one["best_epoch_test_accuracy_std"]) == (0.8, 0.0)
    assert two["best_epoch_test_accuracy_std"] == pytest.approx(statistics.stdev([0.8, 0.9]))
    blind = RunResult(create_variant("shallow-fc", True, 0.0), 10, TrainConfig(), "cpu", rounds, 0, {})
    assert blind.summary()["digit_accuracy_mean"] is None  # without the auxiliary loss the digits have no names
