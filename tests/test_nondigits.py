"""Non-digits and calibration: the generated pictures training shows the digit head, the loss on them, the
temperatures fitted on held-out digits, and predict's refusal of a picture that reads as no digit."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from digits import digit, png

from digitcmp import train
from digitcmp.calibration import (
    calibrate,
    comparison_nll,
    digit_confidence,
    digit_nll,
    expected_calibration_error,
    fit_temperature,
    reliability,
)
from digitcmp.config import TrainConfig
from digitcmp.errors import DigitcmpError
from digitcmp.export import ProbabilityModel
from digitcmp.model.losses import uniform_loss
from digitcmp.model.network import ComparisonNet
from digitcmp.nondigits import GLYPHS, LETTERS, SYMBOLS, nondigits, printed, prints
from digitcmp.predict import DIGIT_MASS, Failed, Model, Prediction, digit_mass, load_digit, predict_pairs
from digitcmp.variant import create_variant


def test_nondigits_are_mnist_framed_reproducible_and_of_every_kind() -> None:
    images = nondigits(30, seed=3)
    assert images.shape == (30, 28, 28) and images.dtype == np.uint8
    assert np.array_equal(images, nondigits(30, seed=3)) and not np.array_equal(images, nondigits(30, seed=4))
    for image in images:
        rows, cols = np.flatnonzero(image.any(1)), np.flatnonzero(image.any(0))
        assert max(rows[-1] - rows[0], cols[-1] - cols[0]) <= 21  # the 20×20 box, anti-aliased
        mass = image.astype(float) / image.sum()
        centre = (mass.sum(1) @ np.arange(28), mass.sum(0) @ np.arange(28))
        assert np.allclose(centre, 14, atol=1.0)


def test_characters_written_like_a_digit_are_never_shown_as_non_digits() -> None:
    assert not set("OoQDIiljJ|/ZzSs$bGB&gqΘθσδ∂ιτ†ζξςβγ¢°") & set(LETTERS + SYMBOLS + GLYPHS)


def test_printed_characters_come_in_many_fonts_each_drawing_its_own_glyph() -> None:
    """With matplotlib (the train extra) characters are printed in Pillow's font, STIX and Computer Modern;
    symbols never in Computer Modern, whose files print TeX's glyphs at some symbols' code points."""
    generator = np.random.default_rng(0)
    draws = {kind: [printed(kind, generator) for _ in range(400)] for kind in ("letter", "symbol")}
    letter_fonts = {font.name if font else None for font, _ in draws["letter"]}
    symbol_fonts = {font.name if font else None for font, _ in draws["symbol"]}
    assert {None, "STIXGeneral.ttf", "cmr10.ttf", "cmtt10.ttf"} <= letter_fonts
    assert None in symbol_fonts and "STIXGeneralItalic.ttf" in symbol_fonts
    assert not any(name and name.startswith("cm") for name in symbol_fonts)
    assert {text for _, text in draws["letter"]} <= set(LETTERS)
    assert set(GLYPHS) & {text for _, text in draws["symbol"]} and not prints(None) & set("ΩΣλ§¶")
    assert all(text in prints(font) for font, text in draws["letter"] + draws["symbol"])


def test_the_uniform_loss_is_log_10_for_equal_logits_and_grows_with_confidence() -> None:
    flat = torch.zeros(2, 3, 2, 10)
    assert torch.allclose(uniform_loss(flat), torch.full((2,), math.log(10)))
    peaked = flat.clone()
    peaked[1, :, :, 4] = 5.0
    loss = uniform_loss(peaked)
    assert loss.shape == (2,) and loss[0] == pytest.approx(math.log(10)) and loss[1] > loss[0] + 1


def test_each_batch_gets_a_quarter_more_pairs_of_non_digits_from_each_networks_generator() -> None:
    pool = torch.rand(50, 14, 14)
    batch = torch.zeros(3, 10, 2, 14, 14)
    generators = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
    grown = train.with_nondigits(batch, pool, generators)
    assert grown.shape == (3, 13, 2, 14, 14)
    assert torch.equal(grown[:, :10], batch)
    picked = grown[:, 10:].flatten(1, 2)
    assert all(any(torch.equal(p, q) for q in pool) for p in picked[0])
    assert not torch.equal(grown[0, 10:], grown[1, 10:])  # each network its own draw
    assert train.with_nondigits(batch, None, generators) is batch


def test_non_digits_join_training_only_with_the_setting_and_digit_names() -> None:
    config = TrainConfig(nondigits=1.0)
    named = create_variant("deep-fc", True, 1.0)
    pool = train.nondigit_pool(config, named, 40, seed=0, device=torch.device("cpu"))
    assert pool is not None and pool.shape == (80, 14, 14) and 0 <= pool.min() and pool.max() <= 1
    assert train.nondigit_pool(TrainConfig(), named, 40, 0, torch.device("cpu")) is None
    assert train.nondigit_pool(config, create_variant("deep-fc", True, 0.0), 40, 0, torch.device("cpu")) is None


def test_the_step_adds_the_weighted_uniform_loss_of_the_non_digits_only() -> None:
    variant = create_variant("deep-fc", True, 1.0)
    inputs = torch.rand(2, 6, 2, 14, 14)
    targets, classes = torch.ones(2, 4), torch.randint(0, 10, (2, 4, 2))

    def step_loss(weight: float, extra: bool) -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(0)
        model = ComparisonNet(variant, 2)
        optimizer = torch.optim.SGD(model.parameters(), 0.0)
        config = replace(TrainConfig(), nondigits=weight)
        return train.step(model, optimizer, None, inputs if extra else inputs[:, :4], targets, classes, config)

    plain, logits = step_loss(0.0, extra=False)
    assert logits.shape == (2, 4)
    with_zero_weight, _ = step_loss(0.0, extra=True)
    weighted, _ = step_loss(2.0, extra=True)
    torch.manual_seed(0)
    digits = ComparisonNet(variant, 2).single_view(inputs)[1]
    assert torch.allclose(with_zero_weight, plain)
    assert torch.allclose(weighted, plain + 2.0 * uniform_loss(digits[:, 4:]).detach(), atol=1e-5)


def test_a_fitted_temperature_undoes_a_known_over_confidence() -> None:
    generator = np.random.default_rng(0)
    true_logits = generator.normal(0, 2, (4000, 10))
    p = np.exp(true_logits) / np.exp(true_logits).sum(1, keepdims=True)
    labels = np.array([generator.choice(10, p=row) for row in p])
    assert fit_temperature(digit_nll, 3.0 * true_logits, labels) == pytest.approx(3.0, rel=0.1)
    binary = generator.normal(0, 2, 4000)
    targets = (generator.random(4000) < 1 / (1 + np.exp(-binary))).astype(float)
    assert fit_temperature(comparison_nll, 0.5 * binary, targets) == pytest.approx(0.5, rel=0.1)


def test_expected_calibration_error_and_reliability_on_known_answers() -> None:
    assert expected_calibration_error(np.full(10, 0.8), np.arange(10) < 8) == pytest.approx(0.0)
    assert expected_calibration_error(np.full(10, 0.95), np.arange(10) < 5) == pytest.approx(0.45)
    # half the answers at 0.95 (all right), half at 0.55 (right 2 of 5 times): (|1 - 0.95| + |0.4 - 0.55|) / 2
    confidence = np.array([0.95] * 5 + [0.55] * 5)
    correct = np.array([1] * 5 + [1, 1, 0, 0, 0])
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.1)
    rows = reliability(confidence, correct)
    assert [(r["low"], r["count"], r["accuracy"]) for r in rows] == [(0.5, 5, 0.4), (pytest.approx(0.9), 5, 1.0)]


def test_calibration_of_an_over_confident_model_brings_its_error_down() -> None:
    generator = np.random.default_rng(1)
    true_logits = generator.normal(0, 2, (1000, 2, 10))
    p = np.exp(true_logits) / np.exp(true_logits).sum(-1, keepdims=True)
    classes = np.array([[generator.choice(10, p=q) for q in pair] for pair in p])
    comparison = generator.normal(0, 2, 1000)
    targets = (generator.random(1000) < 1 / (1 + np.exp(-comparison))).astype(float)
    found = calibrate(4 * true_logits, classes, 4 * comparison, targets)
    assert found.digits == 2000 and found.digit_temperature == pytest.approx(4, rel=0.15)
    assert found.digit_ece_calibrated < 0.03 < found.digit_ece
    assert found.comparison_ece_calibrated < 0.03 < found.comparison_ece
    confidence, right = digit_confidence(4 * true_logits.reshape(-1, 10), classes.reshape(-1), 4.0)
    assert expected_calibration_error(confidence, right) == pytest.approx(found.digit_ece_calibrated, abs=0.01)


def test_the_exported_graph_divides_each_output_by_its_temperature() -> None:
    torch.manual_seed(0)
    net = ComparisonNet(create_variant("deep-fc", True, 1.0)).eval()
    pairs = torch.rand(5, 2, 14, 14)
    le, digits = ProbabilityModel(net).eval()(pairs)
    calibrated = ProbabilityModel(net, {"digit_temperature": 2.0, "comparison_temperature": 0.5}).eval()
    le_t, digits_t = calibrated(pairs)
    with torch.no_grad():
        logits, digit_logits = net(pairs.unsqueeze(0))
    assert torch.allclose(digits_t, torch.softmax(digit_logits[0] / 2.0, -1), atol=1e-6)
    assert torch.allclose(le_t, torch.sigmoid(logits[0] / 0.5), atol=1e-6)
    assert torch.equal(digits_t.argmax(-1), digits.argmax(-1)) and torch.equal(le_t > 0.5, le > 0.5)


def probabilities(first_mass: float) -> np.ndarray:
    """2×10 digit probabilities: the first digit with ``first_mass`` on its two likeliest digits, the second a 7."""
    rest = (1 - first_mass) / 8
    first = np.array([first_mass / 2, first_mass / 2] + [rest] * 8)
    second = np.full(10, 0.01)
    second[7] = 0.91
    return np.stack([first, second])


def test_a_picture_is_refused_as_no_digit_only_below_the_digit_mass_and_by_a_model_that_learned_it() -> None:
    assert digit_mass(probabilities(0.3)[0]) == pytest.approx(0.3)
    low = Prediction(digit(1), digit(7), 0.5, probabilities(DIGIT_MASS - 0.01), refuses_nondigits=True)
    high = Prediction(digit(1), digit(7), 0.5, probabilities(DIGIT_MASS + 0.01), refuses_nondigits=True)
    untaught = Prediction(digit(1), digit(7), 0.5, probabilities(0.2), refuses_nondigits=False)
    assert not low.is_digit(0) and low.is_digit(1) and low.nondigit is low.first
    assert high.is_digit(0) and high.nondigit is None
    assert untaught.is_digit(0) and untaught.nondigit is None


class Answers(Model):
    """A model that answers every pair with fixed digit probabilities (the first digit's mass chosen per file)."""

    def __init__(self, mass_by_pixel_sum: dict[int, float]) -> None:
        super().__init__(Path("fixed.onnx"), None, "pairs", {"train_config": {"nondigits": 1.0}})
        self.mass = mass_by_pixel_sum

    def run(self, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        masses = [self.mass[round(float(p[0].sum()))] for p in pairs]
        return np.full(len(pairs), 0.9), np.stack([probabilities(m) for m in masses])


def test_predict_refuses_a_non_digit_in_one_line_or_fails_only_its_row_in_a_batch(tmp_path: Path) -> None:
    files = {}
    for name, label in (("shape", 0), ("one", 1), ("seven", 7)):
        files[name] = tmp_path / f"{name}.png"
        files[name].write_bytes(png(digit(label).image))
    key = {name: round(float(load_digit(path).pooled.sum())) for name, path in files.items()}
    model = Answers({key["shape"]: 0.2, key["one"]: 0.99, key["seven"]: 0.99})
    with pytest.raises(DigitcmpError) as refused:
        list(predict_pairs(model, [(files["shape"], files["seven"])]))
    assert str(refused.value) == f"no digit in {files['shape']}: it does not look like a handwritten digit"
    rows = list(predict_pairs(model, [(files["one"], files["seven"]), (files["shape"], files["seven"])], True))
    assert isinstance(rows[0], Prediction) and isinstance(rows[1], Failed)
    assert rows[1].files == (files["shape"], files["seven"]) and str(files["shape"]) in rows[1].error
