"""Evaluation: probabilities are computed once; every metric is derived from them (numbers only)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import numpy as np

from fashion_cnn.data import CLASS_NAMES
from fashion_cnn.tta import TTA_VIEWS, shift_images, tta_mode

EPS = 1e-7  # Keras' clipping for cross-entropy


_FORWARD_ATTR = "_fashion_cnn_forward"


def forward_fn(model) -> Callable[[np.ndarray], np.ndarray]:
    """The model's inference call, compiled once per model with `tf.function` (TensorFlow
    backend): an eager call of a Keras model costs ~20 ms of Python per batch, the compiled
    one well under 1 ms. Other callables (the engines of `fashion_cnn.engines`) are called as
    they are, with the batch as their only argument.
    """
    keras = sys.modules.get("keras")  # not imported: not a Keras model (an ONNX engine,
    # say), and importing it here would cost seconds of TensorFlow start-up for nothing
    if (
        keras is None
        or not isinstance(model, keras.Model)
        or keras.backend.backend() != "tensorflow"
    ):
        return lambda x: np.asarray(model(x), dtype="float32")
    fn = getattr(model, _FORWARD_ATTR, None)
    if fn is None:
        import tensorflow as tf

        compiled = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32)],
        )

        def fn(x):
            return np.asarray(compiled(x), dtype="float32")

        # Kept on the model (not in a dict that would keep it alive); object.__setattr__
        # skips Keras' attribute tracking.
        object.__setattr__(model, _FORWARD_ATTR, fn)
    return fn


def predict_proba(
    model, x: np.ndarray, batch_size: int = 256, tta: str | bool = "none"
) -> np.ndarray:
    """Class probabilities for raw 0-255 images, shape (N, 10), float32.

    Calls the model directly on batches (no `model.predict` progress machinery), compiled
    once (see `forward_fn`).

    Args:
        model: a callable Keras model taking (B, 28, 28, 1) raw pixels.
        x: images (N, 28, 28, 1), any numeric dtype, 0-255.
        batch_size: images per call.
        tta: test-time augmentation, a key of `TTA_VIEWS`: "none", "flip" (the mean of each
            image's and its horizontal mirror's probabilities) or "flip-shift" (18 views:
            both, each also shifted by one pixel in the 8 directions). True means "flip".

    Raises:
        ValueError: an unknown `tta`.
    """
    views = TTA_VIEWS[tta_mode(tta)]
    forward = forward_fn(model)
    out = []
    for i in range(0, len(x), batch_size):
        batch = np.asarray(x[i : i + batch_size], dtype="float32").reshape(-1, 28, 28, 1)
        sources = {False: batch}
        if any(mirrored for mirrored, _, _ in views):
            sources[True] = np.ascontiguousarray(batch[:, :, ::-1])
        probs = sum(forward(shift_images(sources[m], dy, dx)) for m, dy, dx in views)
        out.append(probs / len(views))
    if not out:
        return np.zeros((0, len(CLASS_NAMES)), dtype="float32")
    return np.concatenate(out)


def most_confused(cm: np.ndarray, k: int = 10) -> list[tuple[int, int, int]]:
    """The `k` largest off-diagonal cells as (true, predicted, count), largest first."""
    off = cm.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:k]
    rows, cols = np.unravel_index(order, cm.shape)
    pairs = [(int(t), int(p), int(off[t, p])) for t, p in zip(rows, cols, strict=True)]
    return [pair for pair in pairs if pair[2] > 0]


def compute_metrics(
    probs: np.ndarray, y_true: np.ndarray, class_names: Sequence[str] = CLASS_NAMES
) -> dict:
    """All evaluation numbers from one matrix of probabilities.

    Args:
        probs: (N, C) class probabilities.
        y_true: (N,) integer labels.
        class_names: names of the C classes.

    Returns:
        A JSON-ready dict: test_accuracy, test_loss (mean cross-entropy), per_class
        (precision/recall/F1/support by class name), macro averages, confusion_matrix
        (rows = true class, columns = predicted class), most_confused
        ([true, predicted, count] triples, largest first) and n.
    """
    # Here, not at the top: `predict` and `serve` need `predict_proba` from this module,
    # not the 1.5 s that importing scikit-learn takes.
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    y_true = np.asarray(y_true).astype(int)
    n_classes = len(class_names)
    if probs.shape != (len(y_true), n_classes):
        raise ValueError(
            f"Invalid shape for `probs`: expected ({len(y_true)}, {n_classes}), "
            f"received {probs.shape}"
        )
    y_pred = probs.argmax(axis=1)
    labels = list(range(n_classes))
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    picked = np.clip(probs[np.arange(len(y_true)), y_true], EPS, 1.0)
    return {
        "n": int(len(y_true)),
        "test_accuracy": float((y_pred == y_true).mean()) if len(y_true) else 0.0,
        "test_loss": float(-np.log(picked).mean()) if len(y_true) else 0.0,
        "per_class": {
            name: {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(s[i]),
            }
            for i, name in enumerate(class_names)
        },
        "macro_avg": {
            "precision": float(p.mean()),
            "recall": float(r.mean()),
            "f1": float(f.mean()),
        },
        "class_names": list(class_names),
        "confusion_matrix": cm.tolist(),
        "most_confused": [list(t) for t in most_confused(cm)],
    }
