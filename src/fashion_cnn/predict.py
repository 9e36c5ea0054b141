"""Batch prediction over image files: one result per file, errors reported per file."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from fashion_cnn.data import CLASS_NAMES
from fashion_cnn.evaluate import predict_proba
from fashion_cnn.images import ImageError, load_image


def top_k(probs: np.ndarray, k: int, class_names: Sequence[str] = CLASS_NAMES) -> list[dict]:
    """The k most probable classes of one probability vector, most probable first."""
    order = np.argsort(-probs, kind="stable")[:k]
    return [
        {"label": class_names[i], "index": int(i), "probability": float(probs[i])} for i in order
    ]


def predict_files(model, paths: Sequence[str | os.PathLike], k: int = 3) -> list[dict]:
    """Classifies each file; a file that fails gets an `error` instead of `predictions`.

    Returns:
        One dict per path, in order: {"file", "predictions": [...]} or {"file", "error"}.
    """
    results: list[dict] = [{"file": str(p)} for p in paths]
    batch, where = [], []
    for i, p in enumerate(paths):
        try:
            batch.append(load_image(p))
            where.append(i)
        except ImageError as e:
            results[i]["error"] = str(e)
    if batch:
        probs = predict_proba(model, np.stack(batch)[..., None])
        for i, pr in zip(where, probs, strict=True):
            results[i]["predictions"] = top_k(pr, k)
    return results
