"""Preprocessing defined once, shared by training data and ``predict`` (numpy only: predict must not need torch).

A model's input is a pair of 14×14 digits in [0, 1], white on black, each the 2×2 average pool of a 28×28
MNIST-style digit. Normalisation with ``MNIST_MEAN``/``MNIST_STD`` happens inside the model (and so inside the
ONNX graph), never here.
"""

from __future__ import annotations

import numpy as np

MNIST_MEAN = 0.1307  # mean pixel of MNIST training digits scaled to [0, 1]
MNIST_STD = 0.3081  # their standard deviation
INPUT_SIZE = 14


def pool_digits(images: np.ndarray) -> np.ndarray:
    """Turn uint8 digits N×28×28 (0-255) into float32 N×14×14 in [0, 1] by 2×2 average pooling."""
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"expected digits of shape N×28×28, got {images.shape}")
    scaled = images.astype(np.float32) / np.float32(255.0)
    return scaled.reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4), dtype=np.float32)
