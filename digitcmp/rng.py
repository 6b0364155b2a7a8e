"""Randomness derived from (seed, round) alone, so that a round trains the same whatever else runs with it.

Every random draw of training comes from a ``torch.Generator`` of its own: per round (and per network of an
ensemble) and per purpose (its data draw, initial parameters, batch order, augmentation, dropout masks, the
non-digits it is shown). Which rounds share a batched model, the chunk size, train versus bench, and the device
change nothing: generators live on the CPU and what they draw is moved to the device.
"""

from __future__ import annotations

import hashlib

import torch

STREAMS = ("data", "init", "order", "augment", "dropout", "nondigits")


def derive_seed(seed: int, round_index: int, network: int, stream: str) -> int:
    """A 63-bit seed for one stream of one network of one round: a hash, so nearby seeds give unrelated draws."""
    if stream not in STREAMS:
        raise ValueError(f"unknown random stream {stream!r}")
    digest = hashlib.blake2b(f"{seed}/{round_index}/{network}/{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def generator(seed: int, round_index: int, network: int, stream: str) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, round_index, network, stream))


def network_generators(seed: int, rounds: list[int], ensemble: int, stream: str) -> list[torch.Generator]:
    """One generator per network of a batched model, member-major: round r's ensemble networks k = 0…K−1."""
    return [generator(seed, r, k, stream) for r in rounds for k in range(ensemble)]
