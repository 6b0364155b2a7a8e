"""Digit warps: training augmentation semantics, and the fixed test-time views as one linear map."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from digitcmp.augment import (
    TTA_SHIFTS,
    TTA_WARP_STRENGTH,
    elastic_warp,
    random_shift,
    take_views,
    tta_views,
    warp_grids,
)


def generators(count: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(n) for n in range(count)]


def test_random_shift_moves_digits_without_changing_shape():
    digits = torch.zeros(3, 4, 2, 14, 14)
    digits[..., 6:8, 6:8] = 1.0
    shifted = random_shift(digits, 2, generators(3))
    assert shifted.shape == digits.shape
    assert torch.equal(shifted.sum((-1, -2)), digits.sum((-1, -2)))  # a centred blob never leaves the frame
    assert not torch.equal(shifted, digits)


def test_elastic_warp_displaces_by_the_asked_strength():
    # Bilinear resampling reproduces a linear ramp exactly, so away from the borders warp(ramp) − ramp is the
    # displacement field itself: its spread must be the strength asked for, and strength 0 must change nothing.
    ramp = torch.arange(14.0).expand(500, 2, 14, 14)
    for strength in (0.0, 0.5, 1.0):
        warped = elastic_warp(ramp, strength, generators(500))
        assert warped.shape == ramp.shape
        moved = (warped - ramp)[..., 4:10, 4:10]
        assert moved.std().item() == pytest.approx(strength, abs=0.05)
    digits = torch.zeros(50, 2, 14, 14)
    digits[..., 5:9, 5:9] = 1.0
    warped = elastic_warp(digits, 0.5, generators(50))
    assert not torch.equal(warped, digits)
    ink = warped.sum((-1, -2))  # a warp stretches or squeezes strokes locally: ink varies, on average it stays
    assert (ink > 8).all() and ink.mean().item() == pytest.approx(16.0, rel=0.05)


def apply_views(digits: torch.Tensor, warps: int) -> torch.Tensor:
    """N×14×14 → N×V×14×14 through the sparse view map."""
    return take_views(digits.flatten(1), *tta_views(warps)).unflatten(1, (5 + warps, 14, 14))


def test_the_first_test_time_views_are_the_digit_and_its_one_pixel_shifts():
    digits = torch.rand(6, 14, 14)
    views = apply_views(digits, 0)
    padded = F.pad(digits, (1, 1, 1, 1))
    for k, (dy, dx) in enumerate(TTA_SHIFTS):
        assert torch.equal(views[:, k], padded[:, 1 + dy : 15 + dy, 1 + dx : 15 + dx])


def test_the_fixed_warps_are_smooth_elastic_warps_the_same_for_every_digit_and_every_call():
    ramp = torch.arange(14.0).expand(3, 14, 14)  # bilinear sampling reproduces a ramp: warp − ramp = displacement
    views = apply_views(ramp, 16)
    assert torch.equal(views[:, :5], apply_views(ramp, 0))  # warps come after the shifts
    moved = (views[:, 5:] - ramp[:, None])[..., 4:10, 4:10]
    assert moved.std().item() == pytest.approx(TTA_WARP_STRENGTH, rel=0.35)
    assert torch.allclose(moved[0], moved[1])  # one field per view, shared by all digits
    assert not torch.allclose(moved[0, 0], moved[0, 1])  # and a different field for each view
    for again, cached, fewer in zip(tta_views.__wrapped__(16), tta_views(16), tta_views.__wrapped__(3), strict=True):
        assert torch.equal(again, cached)  # seeded: the same views
        assert torch.equal(fewer[: 8 * 196], again[: 8 * 196])  # more warps extend the list


def test_the_sparse_view_map_is_the_dense_one():
    # Each view pixel reads at most four source pixels, so four (index, weight) pairs lose nothing: applying the
    # map to every one-pixel image must rebuild, column by column, the same views grid_sample makes directly.
    index, weight = tta_views(4)
    assert index.shape == weight.shape == (9 * 196, 4)
    assert (weight >= 0).all() and (weight.sum(-1) <= 1 + 1e-6).all()
    digits = torch.rand(5, 14, 14)
    grid = warp_grids(1, 14, TTA_WARP_STRENGTH, torch.device("cpu"), torch.float32, torch.Generator().manual_seed(0))
    direct = F.grid_sample(digits[:, None], grid.expand(5, -1, -1, -1), align_corners=False)[:, 0]
    assert torch.allclose(apply_views(digits, 4)[:, 5], direct, atol=1e-6)


def test_warp_grids_move_pixels_by_the_asked_strength():
    grids = warp_grids(400, 14, 0.5, torch.device("cpu"), torch.float32)
    identity = warp_grids(1, 14, 0.0, torch.device("cpu"), torch.float32)
    assert grids.shape == (400, 14, 14, 2)
    assert ((grids - identity) * 7).std().item() == pytest.approx(0.5, abs=0.05)  # grid units: 2/14 per pixel
