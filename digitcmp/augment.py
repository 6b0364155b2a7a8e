"""Digit augmentations: random warps and shifts that augment training, changes that imitate real pictures
(rotation, shear, stroke width, blur, contrast, noise), and the fixed views that test-time averaging predicts on.

Warps use one elastic recipe (a smooth displacement field: white noise through a Gaussian filter), so the fixed
test-time warps are drawn from the very distribution the towers were trained on. The fixed views are linear maps
of the pixels, so a model applies all of them as one gather, the same in torch and in its ONNX graph. Every random
draw of network n comes from ``generators[n]``, on the CPU, so a round's augmentation is the same on every device.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from .config import TrainConfig
from .preprocess import INPUT_SIZE

# Every length below is in pixels of the 14×14 pooled digits; on the 28×28 digits of a full-resolution model each
# is twice as many pixels (``in_pixels``), so both resolutions see the same augmentation of the same handwriting.
# Smoothness of the elastic warp: standard deviation of the Gaussian filter that turns white noise into a
# displacement field. 3 px bends whole strokes; 1.5 and 2 px wiggled them and read worse in bundled-protocol
# trials, 4 px approached a plain affine warp and gained less (docs/results.md).
ELASTIC_SIGMA = 3.0
# Test-time views: the digit itself and its four 1-pixel shifts (dy, dx), then the fixed warps.
TTA_SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))
# Strength (displacement std, px) of the fixed test-time warps: vgg4's training strength; 0.4-0.7 averaged the
# same in bundled-protocol trials, 1.0 less (docs/results.md).
TTA_WARP_STRENGTH = 0.5
TTA_WARP_SEED = 0  # the generator of the fixed warps: a model's views are the same on every machine


def in_pixels(length: float, size: int) -> float:
    """A length in pixels of the 14×14 digits, in pixels of digits ``size`` a side."""
    return length * (size / INPUT_SIZE)  # exactly the length at 14: 1.0 times it


def filter_radius(size: int) -> int:
    """The elastic filter's reach on each side (2.5 σ): noise is drawn this much larger than the digit."""
    return math.ceil(2.5 * in_pixels(ELASTIC_SIGMA, size))


def random_shift(inputs: torch.Tensor, max_shift: int, generators: list[torch.Generator]) -> torch.Tensor:
    """Shift every digit of networks×…×S×S independently by up to ``max_shift`` pixels (of the 14×14 digits) in
    each direction, filling with black; network n's offsets come from ``generators[n]``."""
    size = inputs.shape[-1]
    max_shift = round(in_pixels(max_shift, size))
    flat = inputs.reshape(-1, size, size)
    per_network = len(flat) // len(generators)
    offsets = torch.cat(
        [torch.randint(0, 2 * max_shift + 1, (2, per_network, 1), generator=g) for g in generators], dim=1
    ).to(inputs.device)
    padded = F.pad(flat, (max_shift,) * 4)
    grid = torch.arange(size, device=inputs.device)
    rows, cols = offsets[0] + grid, offsets[1] + grid
    shifted = padded[torch.arange(len(flat), device=inputs.device)[:, None, None], rows[:, :, None], cols[:, None, :]]
    return shifted.view_as(inputs)


@functools.cache
def elastic_filter(size: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The constant parts of every elastic warp, built once rather than every training step: the Gaussian filter
    as a banded matrix (band @ noise @ band.T filters rows and columns in two small matrix products, three times
    faster on the CPU than two convolutions), scaled so that filtered unit noise moves each pixel by one pixel
    (std; 2/size in grid units), and the identity sampling grid."""
    radius = filter_radius(size)
    taps = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    kernel = torch.exp(-(taps**2) / (2 * in_pixels(ELASTIC_SIGMA, size) ** 2))
    kernel = kernel / kernel.sum()
    band = torch.zeros(size, size + 2 * radius, device=device, dtype=dtype)
    offsets = torch.arange(size, device=device)[:, None] + torch.arange(2 * radius + 1, device=device)
    band.scatter_(1, offsets, kernel.expand(size, -1))
    # Filtered unit noise has the std Σ kernel² (the filter is separable); the square root of the scale goes on
    # each side of the noise.
    band *= (2 / size / kernel.pow(2).sum()) ** 0.5
    identity = F.affine_grid(torch.eye(2, 3, device=device, dtype=dtype)[None], [1, 1, size, size], align_corners=False)
    return band, identity


def warp_grids(
    count: int,
    size: int,
    strength: float,
    device: torch.device,
    dtype: torch.dtype,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``count`` random sampling grids (count×size×size×2, for ``grid_sample``): the identity plus a smooth
    displacement field, white noise through a Gaussian filter of ``ELASTIC_SIGMA`` px, scaled to a standard
    deviation of ``strength`` px per pixel."""
    side = size + 2 * filter_radius(size)
    noise = torch.randn(count, 2, side, side, device=device, dtype=dtype, generator=generator)
    return smooth_grids(noise, size, strength)


def smooth_grids(noise: torch.Tensor, size: int, strength: float) -> torch.Tensor:
    """Sampling grids from white noise N×2×L×L (L = size + the filter's two margins), as ``warp_grids``."""
    band, identity = elastic_filter(size, noise.device, noise.dtype)
    return identity + (band @ noise @ band.T).permute(0, 2, 3, 1) * in_pixels(strength, size)


def elastic_warp(
    inputs: torch.Tensor,
    strength: float,
    generators: list[torch.Generator],
    rotate: float = 0.0,
    shear: float = 0.0,
) -> torch.Tensor:
    """Warp every digit of networks×…×S×S by its own random grid, resampled bilinearly: an elastic field of
    ``strength`` px (``warp_grids``: handwriting varies like that, and 900 training pairs do not show enough of
    it), on top of a rotation of up to ±``rotate`` degrees and a horizontal shear of up to ±``shear`` (slanted
    writing, a tilted camera)."""
    size = inputs.shape[-1]
    flat = inputs.reshape(-1, 1, size, size)
    per_network = len(flat) // len(generators)
    side = size + 2 * filter_radius(size)
    grids = []
    for generator in generators:
        noise = torch.randn(per_network, 2, side, side, dtype=inputs.dtype, generator=generator)
        grid = smooth_grids(noise, size, strength)
        if rotate or shear:
            grid = grid + affine_displacement(per_network, size, rotate, shear, generator)
        grids.append(grid)
    return F.grid_sample(flat, torch.cat(grids).to(inputs.device), align_corners=False).view_as(inputs)


def affine_displacement(count: int, size: int, rotate: float, shear: float, generator: torch.Generator) -> torch.Tensor:
    """How far a random rotation (uniform within ±``rotate`` degrees) and shear (within ±``shear``) about the
    centre move each sampling point: count×size×size×2, in grid units."""
    angle = torch.deg2rad((torch.rand(count, generator=generator) * 2 - 1) * rotate)
    slant = (torch.rand(count, generator=generator) * 2 - 1) * shear
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin + slant, torch.zeros(count)], -1),
                         torch.stack([sin, cos, torch.zeros(count)], -1)], 1)  # fmt: skip
    identity = torch.eye(2, 3).expand(count, 2, 3)
    return F.affine_grid(theta - identity, [count, 1, size, size], align_corners=False)


def imitate_pictures(
    inputs: torch.Tensor,
    generators: list[torch.Generator],
    thickness: float = 0.0,
    blur: float = 0.0,
    contrast: float = 0.0,
    noise: float = 0.0,
) -> torch.Tensor:
    """What pictures do to digits that MNIST's do not show, per digit of networks×…×S×S: strokes thicker or
    thinner (a blend with the dilation or erosion by a pixel of the 14×14 digits, weight within ±``thickness``), a
    Gaussian blur of up to ``blur`` px, ink fainter by up to ``contrast`` (a share of full white), and Gaussian
    noise of up to ``noise``."""
    size = inputs.shape[-1]
    reach = round(in_pixels(1, size))  # a pixel of the 14×14 digits
    flat = inputs.reshape(-1, 1, size, size)
    per_network = len(flat) // len(generators)

    def draw(scale: float) -> torch.Tensor:  # a uniform value per digit, network by network
        values = torch.cat([torch.rand(per_network, generator=g) for g in generators])
        return (values * scale).to(flat.device, flat.dtype)[:, None, None, None]

    if thickness:
        weight = draw(2 * thickness) - thickness
        dilated = F.max_pool2d(flat, 2 * reach + 1, 1, reach)
        eroded = -F.max_pool2d(-flat, 2 * reach + 1, 1, reach)
        flat = flat + weight.clamp(min=0) * (dilated - flat) + (-weight).clamp(min=0) * (eroded - flat)
    if blur:
        sigma = draw(in_pixels(blur, size)).clamp(min=1e-3)
        half = 2 * reach
        taps = torch.arange(-half, half + 1, device=flat.device, dtype=flat.dtype)
        kernel = torch.exp(-(taps**2) / (2 * sigma.view(-1, 1) ** 2))
        kernel = kernel / kernel.sum(-1, keepdim=True)  # one filter per digit (5 taps at 14×14), rows then columns
        flat = F.conv2d(flat.transpose(0, 1), kernel[:, None, None, :], padding=(0, half), groups=len(flat))
        flat = F.conv2d(flat, kernel[:, None, :, None], padding=(half, 0), groups=flat.shape[1]).transpose(0, 1)
    if contrast:
        flat = flat * (1 - draw(contrast))
    if noise:
        std = draw(noise)
        gaussian = torch.cat([torch.randn(per_network, 1, size, size, generator=g) for g in generators])
        flat = flat + std * gaussian.to(flat.device, flat.dtype)
    return flat.clamp(0.0, 1.0).view_as(inputs)


def augment(inputs: torch.Tensor, config: TrainConfig, generators: list[torch.Generator]) -> torch.Tensor:
    """A training batch (networks × B × 2 × 14 × 14) through the augmentations the config turns on, in the order
    training has always applied them: warp (elastic, rotation, shear), shift, then the picture-like changes."""
    if config.elastic or config.rotate or config.shear:
        inputs = elastic_warp(inputs, config.elastic, generators, config.rotate, config.shear)
    if config.shift:
        inputs = random_shift(inputs, config.shift, generators)
    if config.imitates_pictures:
        inputs = imitate_pictures(inputs, generators, config.thickness, config.blur, config.contrast, config.noise)
    return inputs


@functools.cache
def tta_views(warps: int, size: int = INPUT_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """Every test-time view of a flattened S×S digit as a sparse linear map: view pixel j of the V·S² (V = 5 +
    ``warps``: the digit, its four shifts by a pixel of the 14×14 digits with black filling in, then ``warps``
    fixed elastic warps of strength ``TTA_WARP_STRENGTH``) is Σ_t weight[j, t]·digit[index[j, t]] over at most 4
    source pixels (bilinear sampling). Stored densely, the map would be S² × V·S² floats, 5.7 MB in every exported
    model at S = 14, V = 37.

    The weights are float32 whatever torch's default dtype: the map is cached, and one built while another default
    was in force would otherwise turn every later model's inputs into that type."""
    pixels = size * size
    basis = torch.eye(pixels, dtype=torch.float32).view(pixels, size, size)  # one image per source pixel
    reach = round(in_pixels(1, size))
    padded = F.pad(basis, (reach,) * 4)
    views = [
        padded[:, reach + reach * dy : reach * (1 + dy) + size, reach + reach * dx : reach * (1 + dx) + size]
        for dy, dx in TTA_SHIFTS
    ]
    generator = torch.Generator().manual_seed(TTA_WARP_SEED)
    for _ in range(warps):  # one grid per view, every one-pixel image warped by it
        grid = warp_grids(1, size, TTA_WARP_STRENGTH, basis.device, basis.dtype, generator)
        views.append(F.grid_sample(basis[:, None], grid.expand(pixels, -1, -1, -1), align_corners=False)[:, 0])
    dense = torch.stack(views, dim=1).flatten(1)  # source pixel × view pixel
    index = dense.topk(4, dim=0).indices  # a bilinear sample reads at most 4 pixels: nothing is dropped
    # int32 indices: half the bytes of int64 in every exported model, and both torch and ONNX Gather take them.
    return index.T.int().contiguous(), dense.gather(0, index).T.contiguous()


def take_views(digits: torch.Tensor, index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Flattened digits …×S² → their views …×(V·S²), the map of ``tta_views`` (a gather, exported as one)."""
    picked = digits.index_select(-1, index.flatten()).unflatten(-1, index.shape)
    return (picked * weight).sum(-1)
