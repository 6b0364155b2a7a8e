"""Models of full resolution (--resolution full): the 28×28 digits from the drawn pairs through augmentation, the
network, the exported graph and its metadata to predict, while pooled models and their cells stay as they were."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_one_line_error
from digits import PAIRS, labelled_pair, write_pair
from typer.testing import CliRunner

from digitcmp.augment import elastic_warp, imitate_pictures, random_shift, take_views, tta_views, warp_grids
from digitcmp.cli import app
from digitcmp.config import TrainConfig
from digitcmp.data import draw_rounds, load_source
from digitcmp.errors import DigitcmpError
from digitcmp.export import export_onnx
from digitcmp.grid import Job, cell_key
from digitcmp.model.checkpoint import load_checkpoint, save_checkpoint
from digitcmp.plan import shared_variant_options
from digitcmp.predict import load_digit, load_model, predict_pairs
from digitcmp.preprocess import model_digits, pool_digits
from digitcmp.train import train_variant
from digitcmp.variant import Variant, create_variant


def test_a_full_resolution_variant_is_named_checked_and_read_back():
    full = create_variant("vgg4", resolution="full")
    assert full.name == "vgg4-full-ws-aux1" and full.resolution.size == 28
    assert Variant.from_dict(full.to_dict()) == full
    pooled = create_variant("vgg4")
    assert pooled.name == "vgg4-ws-aux1" and pooled.resolution.size == 14
    older = {key: value for key, value in pooled.to_dict().items() if key != "resolution"}
    assert Variant.from_dict(older) == pooled  # files written before the setting existed read as pooled
    with pytest.raises(DigitcmpError, match="unknown resolution 'half'; choose from: pooled, full"):
        create_variant("vgg4", resolution="half")


def test_pooled_cells_keep_their_identity_and_full_ones_get_their_own():
    """Baselines, comparisons and --resume of runs from before the setting match pooled cells as before: the
    identity below is what digitcmp 0.4.1 gave this cell."""
    config = TrainConfig(epochs=1)
    pooled, full = Job(create_variant("lenet"), config), Job(create_variant("lenet", resolution="full"), config)
    assert pooled.identity == "lenet-ws-aux1-991e71fba2"
    assert "resolution" not in pooled.key() and full.key()["resolution"] == "full"
    assert pooled.fields()["resolution"] == "pooled"  # what a results record holds
    assert cell_key(pooled.fields()) == cell_key(pooled.key()) != cell_key(full.key())
    assert full.identity.startswith("lenet-full-ws-aux1-") and full.identity != pooled.identity


def test_pooled_augmentation_and_views_are_what_they_were():
    """Measuring lengths in pixels of the pooled digits leaves 14×14 numbers exactly as digitcmp 0.4.1 made them."""
    index, weight = tta_views(32)
    assert int(index.long().sum()) == 2963989
    assert float(weight.double().sum()) == 6916.586825731065
    digits = torch.rand(2, 8, 2, 14, 14, generator=torch.Generator().manual_seed(1))

    def generators() -> list[torch.Generator]:
        return [torch.Generator().manual_seed(seed) for seed in (5, 6)]

    changed = elastic_warp(digits, 0.5, generators(), rotate=10, shear=0.2)
    changed = imitate_pictures(random_shift(changed, 1, generators()), generators(), 0.3, 0.5, 0.3, 0.03)
    assert float(changed.double().sum()) == pytest.approx(2230.1033288584877, rel=1e-12)
    assert float((changed.double() ** 2).sum()) == pytest.approx(1011.6611612825575, rel=1e-12)


def test_elastic_warps_move_28x28_pixels_twice_as_far():
    """A warp of strength 0.5 moves a 14×14 digit's pixels by 0.5 px (std) and a 28×28 digit's by 1 px."""
    grids = warp_grids(400, 28, 0.5, torch.device("cpu"), torch.float32)
    identity = warp_grids(1, 28, 0.0, torch.device("cpu"), torch.float32)
    assert ((grids - identity) * 14).std().item() == pytest.approx(1.0, abs=0.1)  # grid units: 2/28 per pixel


def test_a_full_resolution_run_draws_the_same_digits_unpooled():
    source = load_source(None)
    [full] = draw_rounds(source, 1, 50, 40, 0.2, seed=3, size=28)
    [pooled] = draw_rounds(source, 1, 50, 40, 0.2, seed=3)
    assert full.train.inputs.shape == (40, 2, 28, 28) and full.test.inputs.shape == (40, 2, 28, 28)
    for split in ("train", "val", "test"):
        ours, theirs = getattr(full, split), getattr(pooled, split)
        assert torch.allclose(F.avg_pool2d(ours.inputs.flatten(0, 1), 2).view_as(theirs.inputs), theirs.inputs)
        assert torch.equal(ours.targets, theirs.targets)
    images = source.test.images[:5]
    assert np.array_equal(model_digits(images, 14), pool_digits(images))
    assert np.allclose(model_digits(images, 28) * 255, images)


@pytest.mark.parametrize("size", [14, 28])
def test_test_time_shifts_move_a_digit_by_a_pixel_of_the_pooled_digits(size):
    """At 28×28 each of the four shift views moves the digit by 2 pixels, as 1 pixel does at 14×14."""
    step = size // 14
    digit = torch.zeros(size, size)
    digit[size // 2, size // 2] = 1.0
    index, weight = tta_views(0, size)
    views = take_views(digit.flatten(), index, weight).view(5, size, size)
    places = [tuple(int(i) - size // 2 for i in (view == 1).nonzero()[0]) for view in views]
    assert places == [(0, 0), (-step, 0), (step, 0), (0, -step), (0, step)]


@pytest.mark.parametrize("size", [14, 28])
def test_augmentations_are_measured_in_pixels_of_the_pooled_digits(size):
    """A shift of up to 1 pixel and a thicker stroke reach 1 pixel of the 14×14 digit: 2 pixels at 28×28 (a shift
    takes every whole offset up to there)."""
    step = size // 14
    dot = torch.zeros(1, 400, size, size)
    dot[..., size // 2, size // 2] = 1.0
    moved = random_shift(dot, 1, [torch.Generator().manual_seed(0)])
    rows = torch.stack([(digit == 1).nonzero()[0] for digit in moved[0]]) - size // 2
    assert set(rows.flatten().tolist()) == set(range(-step, step + 1))
    thicker = imitate_pictures(dot[:, :50], [torch.Generator().manual_seed(0)], thickness=1.0)
    widths = {int((digit[size // 2] > 0).sum()) for digit in thicker[0]}
    assert widths <= {1, 2 * step + 1} and 2 * step + 1 in widths


@pytest.fixture(scope="module")
def full_model(tmp_path_factory):
    """A briefly trained full-resolution vgg4, its checkpoint and its export."""
    folder = tmp_path_factory.mktemp("full")
    variant = create_variant("vgg4", True, 1.0, channels=(4,), resolution="full")
    data = draw_rounds(load_source(None), 1, 300, 100, 0.1, seed=0, size=28)
    result = train_variant(variant, data, TrainConfig(epochs=2, curves="off"), torch.device("cpu"))
    checkpoint = save_checkpoint(folder / "full.pt", result.best_state, result.variant,
                                 {"params": result.params, "summary": result.summary()})  # fmt: skip
    summary = export_onnx(checkpoint, folder / "full.onnx", load_source(None), pairs=200)
    return checkpoint, summary


@pytest.mark.slow
def test_a_full_resolution_model_exports_the_28x28_contract(full_model):
    _, summary = full_model
    assert summary.parity_max_difference <= 1e-5
    described = summary.metadata["input"]
    assert described["shape"] == ["batch", 2, 28, 28] and "pooled" not in described["preprocessing"]
    assert summary.metadata["variant"]["resolution"] == "full"
    assert load_model(summary.path).size == 28


@pytest.mark.slow
def test_predict_feeds_a_full_resolution_model_the_28x28_digits(full_model, tmp_path):
    """predict's answer is the torch model's on the prepared 28×28 digits, not on their pooling."""
    checkpoint, summary = full_model
    a, b = write_pair(tmp_path / "pair", *labelled_pair(*PAIRS[0]))
    answer = CliRunner().invoke(app, ["predict", "--model", str(summary.path), str(a), str(b), "--json"])
    assert answer.exit_code == 0, answer.output
    assert json.loads(answer.stdout) == next(predict_pairs(load_model(summary.path), [(a, b)])).to_dict()
    net, _ = load_checkpoint(checkpoint)
    pair = np.stack([load_digit(path).image for path in (a, b)]).astype(np.float32) / 255
    with torch.no_grad():
        _, digits = net.eval()(torch.from_numpy(pair)[None, None])
    read = json.loads(answer.stdout)
    expected = torch.softmax(digits[0, 0], -1)
    assert [read["first"]["digit"], read["second"]["digit"]] == expected.argmax(-1).tolist()
    assert read["first"]["probability"] == pytest.approx(float(expected[0].max()), abs=1e-4)


def test_an_unknown_resolution_is_one_line():
    result = CliRunner().invoke(app, ["train", "--resolution", "half", "--epochs", "1"])
    assert_one_line_error(result, 2, "--resolution", "half")


@pytest.mark.parametrize("command", ["bench", "tune"])
def test_a_preset_refuses_a_resolution_its_cells_would_not_read(command):
    """A preset's cells are the reports' variants on pooled digits: a resolution beside it is refused, not ignored."""
    result = CliRunner().invoke(app, [command, "--preset", "batchnorm-cv", "--resolution", "full"])
    assert_one_line_error(result, 2, "--preset brings its own cells", "--resolution")


def test_a_grid_that_names_no_resolution_keeps_the_configuration_it_had():
    """tune draws its trials from the configuration's text: a setting nobody gave must not change it."""
    assert "resolution" not in shared_variant_options({})
    assert shared_variant_options({"resolution": "full"})["resolution"] == "full"
