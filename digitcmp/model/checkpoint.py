"""Checkpoint files: one model's weights with everything needed to rebuild it without the CLI."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import DigitcmpError
from ..files import atomic_write
from ..variant import Variant
from .network import ComparisonNet

CHECKPOINT_FORMAT = "digitcmp-checkpoint/1"


def save_checkpoint(path: Path, state: dict[str, torch.Tensor], variant: Variant, meta: dict) -> Path:
    """Save one model's weights, its variant and ``meta`` (atomically)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "variant": variant.to_dict(),
        "state_dict": {key: value.detach().cpu() for key, value in state.items()},
        "meta": meta,
    }
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: Path) -> tuple[ComparisonNet, dict]:
    """Rebuild the model saved by ``save_checkpoint`` (no arbitrary unpickling: ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise DigitcmpError(f"checkpoint {path} does not exist; train one with 'digitcmp train' or 'digitcmp bench'")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError... for damaged files
        raise DigitcmpError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}); it is damaged or not one"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise DigitcmpError(f"{path} is not a digitcmp checkpoint (expected format {CHECKPOINT_FORMAT})")
    model = ComparisonNet(Variant.from_dict(payload["variant"]))
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError:
        raise DigitcmpError(f"checkpoint {path} holds weights that do not fit its variant; it is damaged") from None
    return model.eval(), payload["meta"]
