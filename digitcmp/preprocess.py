"""Preprocessing defined once, shared by training data and ``predict`` (no torch: predict must not need it).

A model's input is a pair of 14×14 digits in [0, 1], white on black, each the 2×2 average pool of a 28×28
MNIST-style digit, or (a model of full resolution) the pair of 28×28 digits themselves. Normalisation with
``MNIST_MEAN``/``MNIST_STD`` happens inside the model (and so inside the ONNX graph), never here.
"""

from __future__ import annotations

import numpy as np

from .ink import Ink, isolate, isolate_pair, reduce

MNIST_MEAN = 0.1307  # mean pixel of MNIST training digits scaled to [0, 1]
MNIST_STD = 0.3081  # their standard deviation
INPUT_SIZE = 14


def pool_digits(images: np.ndarray) -> np.ndarray:
    """Turn uint8 digits N×28×28 (0-255) into float32 N×14×14 in [0, 1] by 2×2 average pooling."""
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"expected digits of shape N×28×28, got {images.shape}")
    scaled = images.astype(np.float32) / np.float32(255.0)
    return scaled.reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4), dtype=np.float32)


def model_digits(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 digits N×28×28 (0-255) → float32 N×size×size in [0, 1], the digits a model of that input side reads:
    the 2×2 average pool at 14, the digits themselves at 28."""
    if size == INPUT_SIZE:
        return pool_digits(images)
    if images.ndim != 3 or images.shape[1:] != (size, size):
        raise ValueError(f"expected digits of shape N×{size}×{size}, got {images.shape}")
    return images.astype(np.float32) / np.float32(255.0)


MAX_PIXELS = 50_000_000  # refuse larger images (decompression bombs) before decoding them
MAX_FILE_BYTES = 100_000_000


def mnist_digit(gray: np.ndarray) -> np.ndarray:
    """Bring a grayscale image (float, any size, white digit on black, in [0, 1]) to MNIST's 28×28 convention.

    As MNIST was made: crop to the digit's bounding box, scale it to fit a 20×20 box (aspect kept, anti-aliased),
    and place it in a 28×28 frame with its centre of mass at pixel (14, 14). Returns uint8 0-255. A real MNIST
    digit comes back unchanged (tests/test_predict.py).
    """
    from PIL import Image

    ink = gray > 0.05 * gray.max() if gray.max() > 0 else np.zeros_like(gray, dtype=bool)
    if not ink.any():
        return np.zeros((28, 28), dtype=np.uint8)
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    crop = gray[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].astype(np.float32)
    scale = 20.0 / max(crop.shape)
    height, width = (max(1, round(side * scale)) for side in crop.shape)
    boxed = np.asarray(Image.fromarray(crop, mode="F").resize((width, height), Image.Resampling.LANCZOS))
    boxed = np.clip(boxed, 0.0, 1.0)
    canvas = np.zeros((28, 28), dtype=np.float32)
    top, left = (28 - height) // 2, (28 - width) // 2
    canvas[top : top + height, left : left + width] = boxed
    mass = canvas.sum()
    centre_row = (canvas.sum(axis=1) * np.arange(28)).sum() / mass
    centre_col = (canvas.sum(axis=0) * np.arange(28)).sum() / mass
    # MNIST's centres of mass sit at pixel (14, 14) (measured on the test set: 13.99 ± 0.28, 14.01 ± 0.29).
    shift_row, shift_col = round(14.0 - centre_row), round(14.0 - centre_col)
    # Shift within the frame; the 20×20 box leaves 4 px of margin, so nothing of the digit is cut off.
    canvas = np.roll(canvas, (shift_row, shift_col), axis=(0, 1))
    return np.round(canvas * 255).astype(np.uint8)


def image_to_rgb(image) -> np.ndarray:
    """Any PIL image (L, RGB, RGBA, LA, P, I;16, I, F, 1...) → float RGB H×W×3 in [0, 1].

    Transparent pixels become paper: white behind dark ink, black behind light ink (the digit lives in the alpha
    channel of many drawing apps' exports)."""
    if getattr(image, "n_frames", 1) > 1:  # animated GIF, multi-page TIFF: the first frame
        image.seek(0)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    alpha = None
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        alpha = np.asarray(image.getchannel("A"), dtype=np.float32)[..., None] / 255.0
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        rgb = np.repeat(np.clip(values / top, 0, 1).astype(np.float32)[..., None], 3, axis=-1)
    else:
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    if alpha is not None and alpha.min() < 1.0:
        opaque = alpha[..., 0] > 0.5
        ink_is_dark = opaque.any() and rgb[opaque].mean() < 0.5
        rgb = rgb * alpha + (1.0 if ink_is_dark else 0.0) * (1.0 - alpha)
    return rgb


def picture_digit(image) -> tuple[np.ndarray, Ink]:
    """A picture of a handwritten digit (any PIL image) → its 28×28 MNIST-style digit (uint8) and how it was found.

    The one preparation of predict: the digit isolated from paper, shading and everything else in the picture
    (``digitcmp.ink``), then framed as MNIST was. Raises ``NoDigit`` for a picture with no digit in it,
    ``SeveralDigits`` for one with more."""
    ink = isolate(reduce(image_to_rgb(image)))
    return mnist_digit(ink.image), ink


def picture_pair(image) -> list[tuple[str, np.ndarray, Ink]]:
    """A picture holding both digits of a pair → each digit's place ('left', 'right', or 'top', 'bottom'), its
    28×28 MNIST-style digit and how it was found, in reading order; prepared exactly as ``picture_digit`` does."""
    return [(place, mnist_digit(ink.image), ink) for place, ink in isolate_pair(reduce(image_to_rgb(image)))]


def prepared_array(array: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A .npy digit → (28×28 uint8 digit, 14×14 pooled input): 28×28 (MNIST-style, 0-255 or 0-1) is pooled; 14×14
    is taken as an already pooled digit (and shown at 28×28 by repeating each pixel)."""
    if array.shape not in ((28, 28), (14, 14)) or array.dtype.kind not in "uif":
        raise ValueError(f"{name} holds a {array.dtype} array of shape {array.shape}; expected 28×28 or 14×14 numbers")
    if not np.isfinite(array).all() or array.min() < 0:
        raise ValueError(f"{name} holds negative or non-finite values; expected pixels in [0, 1] or 0-255")
    if array.shape == (28, 28):
        digits = array if array.dtype == np.uint8 else np.round(array * (255 if array.max() <= 1 else 1))
        image = np.clip(digits, 0, 255).astype(np.uint8)
        return image, pool_digits(image[None])[0]
    pooled = np.clip(array.astype(np.float32) / (255.0 if array.max() > 1 else 1.0), 0.0, 1.0)
    return np.round(np.kron(pooled, np.ones((2, 2), np.float32)) * 255).astype(np.uint8), pooled
