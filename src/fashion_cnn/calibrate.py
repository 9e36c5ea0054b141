"""Temperature scaling and the expected calibration error (ECE).

A model's softmax output p is recalibrated as softmax(log(p) / T); T > 1 softens
over-confident predictions. T is fitted on the validation split (never the test set) by
minimizing the negative log-likelihood, and saved with the run as `calibration.json`.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-12
DEFAULT_THRESHOLD = 0.5


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(probs) / temperature), row-wise."""
    logits = np.log(np.clip(probs, EPS, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def nll(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(y)), y], EPS, 1.0)).mean())


def fit_temperature(probs: np.ndarray, y: np.ndarray) -> float:
    """The temperature in [0.05, 20] that minimizes the NLL of `probs` against `y`."""
    from scipy.optimize import minimize_scalar  # here: `predict` only applies temperatures

    res = minimize_scalar(
        lambda log_t: nll(apply_temperature(probs, float(np.exp(log_t))), y),
        bounds=(np.log(0.05), np.log(20.0)),
        method="bounded",
    )
    return float(np.exp(res.x))


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """ECE: the accuracy-vs-confidence gap, averaged over equal-width confidence bins,
    weighted by the share of samples in each bin."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        mask = (conf > lo) & (conf <= hi)
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - conf[mask].mean())
    return float(ece)


def calibrate(probs: np.ndarray, y: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> dict:
    """Fits the temperature on validation predictions; returns the `calibration.json` dict."""
    t = fit_temperature(probs, y)
    return {
        "temperature": t,
        "threshold": threshold,
        "fitted_on": "validation split",
        "n": int(len(y)),
        "val_ece_before": expected_calibration_error(probs, y),
        "val_ece_after": expected_calibration_error(apply_temperature(probs, t), y),
    }
