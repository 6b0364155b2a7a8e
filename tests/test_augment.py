"""Digit warps and picture imitation: training augmentation semantics, and the fixed test-time views as one linear
map."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from digitcmp.augment import (
    TTA_SHIFTS,
    TTA_WARP_STRENGTH,
    elastic_warp,
    imitate_pictures,
    random_shift,
    take_views,
    tta_views,
    warp_grids,
)


def generators(count: int, first: int = 0) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(n) for n in range(first, first + count)]


def random_digits(*shape: int) -> torch.Tensor:
    """Seeded random images in [0, 1]."""
    return torch.rand(*shape, generator=torch.Generator().manual_seed(1))


def test_random_shift_moves_digits_without_changing_shape():
    digits = torch.zeros(3, 4, 2, 14, 14)
    digits[..., 6:8, 6:8] = 1.0
    shifted = random_shift(digits, 2, generators(3))
    assert shifted.shape == digits.shape
    assert torch.equal(shifted.sum((-1, -2)), digits.sum((-1, -2)))  # a centred blob never leaves the frame
    assert not torch.equal(shifted, digits)


def test_random_shift_reaches_every_offset_up_to_the_maximum_both_ways():
    dot = torch.zeros(2, 200, 2, 14, 14)
    dot[..., 7, 7] = 1.0  # one lit pixel: where it lands is the offset
    where = random_shift(dot, 2, generators(2)).flatten(-2).argmax(-1)
    rows, cols = where // 14 - 7, where % 14 - 7
    assert set(rows.unique().tolist()) == set(cols.unique().tolist()) == {-2, -1, 0, 1, 2}


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
    digits = random_digits(6, 14, 14)
    views = apply_views(digits, 0)
    padded = F.pad(digits, (1, 1, 1, 1))
    for k, (dy, dx) in enumerate(TTA_SHIFTS):
        assert torch.equal(views[:, k], padded[:, 1 + dy : 15 + dy, 1 + dx : 15 + dx])


def test_the_fixed_warps_are_smooth_elastic_warps_the_same_for_every_digit_and_every_call():
    ramp = torch.arange(14.0).expand(3, 14, 14)  # bilinear sampling reproduces a ramp: warp − ramp = displacement
    views = apply_views(ramp, 16)
    assert torch.equal(views[:, :5], apply_views(ramp, 0))  # warps come after the shifts
    moved = (views[:, 5:] - ramp[:, None])[..., 4:10, 4:10]
    assert torch.allclose(moved[0], moved[1])  # one field per view, shared by all digits
    assert not torch.allclose(moved[0, 0], moved[0, 1])  # and a different field for each view
    for again, cached, fewer in zip(tta_views.__wrapped__(16), tta_views(16), tta_views.__wrapped__(3), strict=True):
        assert torch.equal(again, cached)  # seeded: the same views
        assert torch.equal(fewer[: 8 * 196], again[: 8 * 196])  # more warps extend the list


def test_the_fixed_warps_move_pixels_by_the_test_time_strength():
    # Ramps along columns and rows: the warped ramp minus the ramp is the displacement in x, then in y (measured for
    # the 32 warps of vgg4's default: 0.49 px against 0.5).
    ramp = torch.arange(14.0).expand(14, 14)
    ramps = torch.stack([ramp, ramp.T])
    moved = (apply_views(ramps, 32)[:, 5:] - ramps[:, None])[..., 4:10, 4:10]
    assert moved.std().item() == pytest.approx(TTA_WARP_STRENGTH, abs=0.04)


def test_the_sparse_view_map_is_the_dense_one():
    # Each view pixel reads at most four source pixels, so four (index, weight) pairs lose nothing: applying the
    # map to every one-pixel image must rebuild, column by column, the same views grid_sample makes directly.
    index, weight = tta_views(4)
    assert index.shape == weight.shape == (9 * 196, 4)
    assert (weight >= 0).all() and (weight.sum(-1) <= 1 + 1e-6).all()
    digits = random_digits(5, 14, 14)
    grid = warp_grids(1, 14, TTA_WARP_STRENGTH, torch.device("cpu"), torch.float32, torch.Generator().manual_seed(0))
    direct = F.grid_sample(digits[:, None], grid.expand(5, -1, -1, -1), align_corners=False)[:, 0]
    assert torch.allclose(apply_views(digits, 4)[:, 5], direct, atol=1e-6)


def test_warp_grids_move_pixels_by_the_asked_strength():
    grids = warp_grids(400, 14, 0.5, torch.device("cpu"), torch.float32)
    identity = warp_grids(1, 14, 0.0, torch.device("cpu"), torch.float32)
    assert grids.shape == (400, 14, 14, 2)
    assert ((grids - identity) * 7).std().item() == pytest.approx(0.5, abs=0.05)  # grid units: 2/14 per pixel


def test_imitating_pictures_changes_nothing_unasked_and_draws_from_each_networks_generator():
    digits = random_digits(3, 4, 2, 14, 14)
    assert torch.equal(imitate_pictures(digits, generators(3)), digits)
    settings = {"thickness": 0.5, "blur": 1.0, "contrast": 0.3, "noise": 0.1}
    pictures = imitate_pictures(digits, generators(3), **settings)
    assert pictures.shape == digits.shape and 0 <= pictures.min() and pictures.max() <= 1
    assert torch.equal(pictures, imitate_pictures(digits, generators(3), **settings))  # seeded
    alone = imitate_pictures(digits[1:], generators(2, first=1), **settings)
    assert torch.allclose(alone, pictures[1:], atol=1e-6)  # network n's draws come from generators[n] alone
    assert not torch.allclose(imitate_pictures(digits, generators(3, first=3), **settings), pictures)


def square_digits(count: int) -> torch.Tensor:
    """count×14×14 digits: a 4×4 square of ink 0.8, away from the borders."""
    digits = torch.zeros(count, 14, 14)
    digits[:, 5:9, 5:9] = 0.8
    return digits


def test_thickness_blends_each_digit_towards_its_dilation_or_its_erosion():
    digits, thickness = square_digits(300), 0.6
    thick = imitate_pictures(digits, generators(300), thickness=thickness)
    dilated = F.max_pool2d(digits[:, None], 3, 1, 1)[:, 0]  # the 6×6 square: strokes one pixel wider
    eroded = -F.max_pool2d(-digits[:, None], 3, 1, 1)[:, 0]  # the 2×2 square
    grew = thick.sum((1, 2)) > digits.sum((1, 2))
    target = torch.where(grew[:, None, None], dilated, eroded) - digits
    share = ((thick - digits) * target).sum((1, 2)) / target.pow(2).sum((1, 2))  # how far along, per digit
    assert torch.allclose(thick, digits + share[:, None, None] * target, atol=1e-6)  # nothing else changes
    weight = torch.where(grew, share, -share)  # the drawn weight: > 0 thickens, < 0 thins
    assert weight.abs().max() <= thickness + 1e-6
    assert weight.max() > 0.9 * thickness and weight.min() < -0.9 * thickness  # uniform within ±thickness


def test_blur_spreads_a_point_into_a_gaussian_of_at_most_the_asked_width():
    digits, blur = torch.zeros(300, 14, 14), 1.5
    digits[:, 7, 7] = 1.0
    blurred = imitate_pictures(digits, generators(300), blur=blur)
    assert torch.allclose(blurred.sum((1, 2)), digits.sum((1, 2)), atol=1e-5)  # ink is kept
    assert blurred[:, 5:10, 5:10].sum((1, 2)).sub(1).abs().max() < 1e-5  # within the 5-tap reach
    centre = blurred[:, 7, 7]
    row = blurred[:, 7, 5:10] / centre[:, None]  # k(t) / k(0) for t = −2 … 2
    # Rows then columns by one kernel, k(t) ∝ exp(−t² / 2σ²): the point becomes k ⊗ k, and k(t)/k(0) = r^(t²).
    separable = centre[:, None, None] * row[:, :, None] * row[:, None, :]
    assert torch.allclose(blurred[:, 5:10, 5:10], separable, atol=1e-6)
    ratio = row[:, 3]
    assert torch.allclose(row, ratio[:, None] ** torch.arange(-2.0, 3.0).pow(2), atol=1e-6)

    def ratio_at(sigma: float) -> float:
        return math.exp(-1 / (2 * sigma**2))

    assert ratio.max() <= ratio_at(blur) + 1e-6  # σ ≤ blur
    assert ratio.max() > ratio_at(0.9 * blur) and ratio.min() < ratio_at(0.2 * blur)  # σ uniform in (0, blur]


def test_contrast_scales_each_digits_ink_by_one_factor_down_to_the_asked_share():
    digits, contrast = random_digits(300, 14, 14), 0.4
    faint = imitate_pictures(digits, generators(300), contrast=contrast)
    scale = faint.sum((1, 2)) / digits.sum((1, 2))
    assert torch.allclose(faint, digits * scale[:, None, None], atol=1e-6)
    assert scale.min() >= 1 - contrast - 1e-6 and scale.max() <= 1
    assert scale.min() < 1 - 0.9 * contrast and scale.max() > 1 - 0.1 * contrast  # uniform in [1 − contrast, 1]


def test_noise_adds_zero_mean_gaussian_noise_of_up_to_the_asked_deviation():
    gray, noise = torch.full((300, 14, 14), 0.5), 0.1  # 5 deviations from black and white: clamping never bites
    noisy = imitate_pictures(gray, generators(300), noise=noise)
    change = (noisy - gray).flatten(1)
    assert change.mean(1).abs().max() < 0.03  # zero mean (196 pixels: the mean's spread is 0.007 at most)
    deviation = change.std(1)
    assert deviation.max() < 1.25 * noise  # up to noise, plus the spread of a 196-pixel estimate
    assert deviation.max() > 0.9 * noise and deviation.min() < 0.1 * noise  # uniform in [0, noise]
    assert not torch.equal(noisy[0], noisy[1])  # every digit its own noise


def source_coordinates(rotate: float, shear: float, count: int) -> torch.Tensor:
    """The linear map (count×2×3: x, y of the source point from x, y, 1, about the centre) by which the rotation and
    shear of ``elastic_warp`` (no elastic field) sample each digit. Bilinear sampling reproduces a linear ramp, so a
    warped ramp of the columns (rows) is, inside the digit, the x (y) coordinate each pixel is read from."""
    ramp = torch.arange(14.0).expand(count, 14, 14)
    read = [elastic_warp(r, 0.0, generators(count), rotate, shear) for r in (ramp, ramp.transpose(1, 2))]
    inner = slice(4, 10)  # where even a 45° turn reads inside the frame
    y, x = torch.meshgrid(torch.arange(4.0, 10.0) - 6.5, torch.arange(4.0, 10.0) - 6.5, indexing="ij")
    design = torch.stack([x.flatten(), y.flatten(), torch.ones(36)], 1)
    coordinates = torch.stack([r[:, inner, inner].flatten(1) - 6.5 for r in read], 1)  # count×2×36
    solution = coordinates @ torch.linalg.pinv(design).T  # least squares, digit by digit
    assert torch.allclose(solution @ design.T, coordinates, atol=1e-4)  # exactly an affine map
    return solution


def test_without_warp_rotation_or_shear_the_digits_are_unchanged():
    digits = random_digits(4, 2, 14, 14)
    assert torch.allclose(elastic_warp(digits, 0.0, generators(4)), digits, atol=1e-6)


def test_rotation_turns_each_digit_about_its_centre_by_up_to_the_asked_angle():
    maps = source_coordinates(30.0, 0.0, 200)
    angle = torch.rad2deg(torch.atan2(maps[:, 1, 0], maps[:, 0, 0]))
    cos, sin = torch.cos(torch.deg2rad(angle)), torch.sin(torch.deg2rad(angle))
    rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], 1)
    assert torch.allclose(maps[:, :, :2], rotation, atol=1e-4)  # a rotation: no stretch, no shear
    assert maps[:, :, 2].abs().max() < 1e-4  # about the centre
    assert angle.abs().max() <= 30 + 1e-3 and angle.max() > 27 and angle.min() < -27  # uniform within ±30°


def test_shear_slants_each_digit_horizontally_by_up_to_the_asked_amount():
    maps = source_coordinates(0.0, 0.4, 200)
    slant = maps[:, 0, 1]
    shear = torch.eye(2, 3).expand(200, 2, 3).clone()
    shear[:, 0, 1] = slant
    assert torch.allclose(maps, shear, atol=1e-4)  # x moves in proportion to y; y stays
    assert slant.abs().max() <= 0.4 + 1e-4 and slant.max() > 0.36 and slant.min() < -0.36
