"""The training loss: the comparison term, plus the auxiliary digit term weighted by the variant."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def all_pairs_logits(digits: torch.Tensor) -> torch.Tensor:
    """Digit logits E×N×10 → the structured head's comparison logit for every ordered pair, E×N×N: entry (i, j)
    is the logit of P(digit i ≤ digit j) = Σ_a p_i(a)·P(digit j ≥ a), in log space like ``StructuredHead``.

    The same quantity as ``StructuredHead`` (a test checks it pair by pair), summed through the cumulative
    distribution instead of the 10×10 joint table: over the (2B)² pairs of a training batch that table would be
    10× larger and sit in every step's backward pass."""
    log_p = F.log_softmax(digits, dim=-1)
    log_ge = log_p.flip(-1).logcumsumexp(-1).flip(-1)  # log P(d ≥ a)
    log_lt = F.pad(log_p.logcumsumexp(-1)[..., :-1], (1, 0), value=-math.inf)  # log P(d < a); P(d < 0) = 0
    log_le = (log_p[:, :, None] + log_ge[:, None]).logsumexp(-1)
    log_gt = (log_p[:, :, None] + log_lt[:, None]).logsumexp(-1)
    return log_le - log_gt


def uniform_loss(digits: torch.Tensor) -> torch.Tensor:
    """Per-member cross-entropy of digit logits E×B×2×10 against the uniform distribution (outlier exposure): the
    target for a picture that is no digit, which should favour no digit over another."""
    return -F.log_softmax(digits, dim=-1).mean(-1).mean((1, 2))


def comparison_loss(
    logits: torch.Tensor,
    digits: torch.Tensor,
    targets: torch.Tensor,
    classes: torch.Tensor,
    aux_weight: float,
    label_smoothing: float = 0.0,
    all_pairs: bool = False,
    average: bool = True,
) -> torch.Tensor:
    """Per-member loss E: (main + w·aux) / (1 + w), main = BCE on the comparison logit, aux = CE(digit 1) + CE(digit 2).

    Dividing by 1 + w keeps the loss scale comparable across auxiliary weights; ``average=False`` leaves the sum
    main + w·aux, as some of the reports trained. ``label_smoothing`` softens the
    digit targets only. ``all_pairs`` takes the main BCE over every ordered pair of the batch's 2B digits (the
    structured head's logit, targets from the digit classes), not only the B drawn pairs.
    """
    if all_pairs:
        codes = classes.expand(digits.shape[:3]).flatten(1)  # E×2B
        pair_logits = all_pairs_logits(digits.flatten(1, 2))
        pair_targets = (codes[:, :, None] <= codes[:, None, :]).to(pair_logits.dtype)
        bce = F.binary_cross_entropy_with_logits(pair_logits, pair_targets, reduction="none")
        n = codes.shape[1]
        main = (bce.sum((1, 2)) - bce.diagonal(dim1=1, dim2=2).sum(-1)) / (n * (n - 1))  # a digit is no pair
    else:
        main = F.binary_cross_entropy_with_logits(logits, targets.expand_as(logits), reduction="none").mean(-1)
    if aux_weight == 0:
        return main
    aux = F.cross_entropy(
        digits.flatten(0, 2),
        classes.expand(digits.shape[:3]).flatten(),
        reduction="none",
        label_smoothing=label_smoothing,
    )
    aux = aux.view(digits.shape[:3]).mean(1).sum(-1)
    total = main + aux_weight * aux
    return total / (1 + aux_weight) if average else total
