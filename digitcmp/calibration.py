"""Probabilities that mean what they say: temperature scaling fitted on held-out training digits, and the expected
calibration error and reliability table that measure it.

A temperature T divides a logit before its softmax (or sigmoid): T > 1 softens an over-confident model, without
changing which digit or answer it picks (Guo et al., "On Calibration of Modern Neural Networks", 2017). numpy and
SciPy only, so that predict's benchmark measures calibration without torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

BINS = 10  # equal-width confidence bins of the expected calibration error and the reliability diagram
LOG_T_RANGE = (-3.0, 3.0)  # temperatures searched: e^-3 … e^3


def log_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = logits / temperature
    shifted = scaled - scaled.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def digit_nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of the true digits (logits N×10, labels N) at ``temperature``."""
    return float(-np.take_along_axis(log_softmax(logits, temperature), labels[:, None], -1).mean())


def comparison_nll(logits: np.ndarray, targets: np.ndarray, temperature: float) -> float:
    """Mean binary cross-entropy of 'first ≤ second' (logits N, targets N in {0, 1}) at ``temperature``."""
    signed = np.where(targets > 0.5, 1.0, -1.0) * logits / temperature
    return float(np.logaddexp(0.0, -signed).mean())


def fit_temperature(nll, logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises ``nll(logits, labels, T)``: a bounded scalar search over log T."""
    from scipy.optimize import minimize_scalar

    found = minimize_scalar(lambda log_t: nll(logits, labels, float(np.exp(log_t))), bounds=LOG_T_RANGE,
                            method="bounded")  # fmt: skip
    return float(np.exp(found.x))


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS) -> list[dict]:
    """Per confidence bin: its range, how many answers fell in it, their mean confidence and their accuracy."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for b in range(bins):
        chosen = which == b
        if chosen.any():
            mean_confidence, accuracy = float(confidence[chosen].mean()), float(correct[chosen].mean())
            rows.append({"low": float(edges[b]), "high": float(edges[b + 1]), "count": int(chosen.sum()),
                         "confidence": mean_confidence, "accuracy": accuracy})  # fmt: skip
    return rows


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS) -> float:
    """Σ over bins of (share of answers in the bin) × |accuracy − mean confidence|: 0 for a calibrated model."""
    rows = reliability(np.asarray(confidence, float), np.asarray(correct, float), bins)
    total = sum(r["count"] for r in rows)
    return float(sum(r["count"] / total * abs(r["accuracy"] - r["confidence"]) for r in rows)) if total else 0.0


def digit_confidence(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The probability of the digit read, and whether it is the true digit."""
    probabilities = np.exp(log_softmax(logits, temperature))
    return probabilities.max(-1), probabilities.argmax(-1) == labels


def comparison_confidence(
    logits: np.ndarray, targets: np.ndarray, temperature: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """The probability of the answer given (≤ or >), and whether it is right."""
    p = 1.0 / (1.0 + np.exp(-logits / temperature))
    return np.maximum(p, 1.0 - p), (p > 0.5) == (targets > 0.5)


@dataclass
class Calibration:
    """The temperatures of a model's two outputs, what they were fitted on, and the error they leave there."""

    digit_temperature: float
    comparison_temperature: float
    digits: int  # held-out training digits (two per validation pair) that fitted the digit temperature
    digit_ece: float  # expected calibration error of the digit probabilities there, before scaling
    digit_ece_calibrated: float  # … after
    comparison_ece: float
    comparison_ece_calibrated: float

    def to_dict(self) -> dict:
        return {key: round(value, 6) if isinstance(value, float) else value for key, value in asdict(self).items()}


def calibrate(
    digit_logits: np.ndarray, classes: np.ndarray, comparison_logits: np.ndarray, targets: np.ndarray
) -> Calibration:
    """Fit both temperatures on held-out pairs: digit logits N×2×10 with classes N×2, comparison logits N with
    targets N."""
    logits, labels = digit_logits.reshape(-1, 10), classes.reshape(-1)
    t_digit = fit_temperature(digit_nll, logits, labels)
    t_comparison = fit_temperature(comparison_nll, comparison_logits, targets)
    return Calibration(
        t_digit,
        t_comparison,
        len(labels),
        expected_calibration_error(*digit_confidence(logits, labels)),
        expected_calibration_error(*digit_confidence(logits, labels, t_digit)),
        expected_calibration_error(*comparison_confidence(comparison_logits, targets)),
        expected_calibration_error(*comparison_confidence(comparison_logits, targets, t_comparison)),
    )
