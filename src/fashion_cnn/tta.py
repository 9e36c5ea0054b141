"""Test-time augmentation views (NumPy only, so that the CLI and configs can name the modes
without loading the evaluation stack)."""

from __future__ import annotations

import numpy as np

# Test-time augmentation: each mode is a list of views (mirrored, dy, dx); the prediction is
# the mean of the views' probabilities. "flip-shift" adds the 1-pixel shifts of a 3x3 grid
# (with and without the mirror): +0.18 +- 0.11 points of validation accuracy over "flip" on
# the 7 tuning-trial models (`python benchmarks/tta_views.py`, BENCHMARKS.md).
_GRID = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
TTA_VIEWS: dict[str, list[tuple[bool, int, int]]] = {
    "none": [(False, 0, 0)],
    "flip": [(False, 0, 0), (True, 0, 0)],
    "flip-shift": [(m, dy, dx) for m in (False, True) for dy, dx in _GRID],
}


def tta_mode(value) -> str:
    """The TTA mode for a config or CLI value; run folders before the modes stored a bool
    (true = "flip").

    Raises:
        ValueError: an unknown mode.
    """
    if isinstance(value, bool) or value is None:
        return "flip" if value else "none"
    if value not in TTA_VIEWS:
        raise ValueError(
            f"Invalid value for `tta`: expected one of {list(TTA_VIEWS)}, received {value!r}"
        )
    return value


def shift_images(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Integer translation of (N, H, W, ...) images by (dy, dx) pixels, zero fill (the
    background of Fashion-MNIST and the training augmentation's fill)."""
    if dy == 0 and dx == 0:
        return x
    h, w = x.shape[1:3]
    if abs(dy) >= h or abs(dx) >= w:
        return np.zeros_like(x)
    out = np.zeros_like(x)
    src_y, dst_y = (
        (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    )
    src_x, dst_x = (
        (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    )
    out[:, dst_y, dst_x] = x[:, src_y, src_x]
    return out
