"""How closely an exported model must give the Keras model's answers, and the check itself.

`export.export_run` runs every artifact on the test images before writing it and refuses
one that fails `check_parity` against the limits in `PARITY` (float exports must match the
probabilities; int8 exports may differ, within a bound on agreement and accuracy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Parity:
    """What an export must match against the Keras model on the test images."""

    max_abs_diff: float | None  # largest allowed |p_export - p_keras|, None: not checked
    min_agreement: float  # fraction of images with the same predicted class
    max_accuracy_drop: float | None  # test-accuracy points the export may lose


PARITY = {
    None: Parity(max_abs_diff=1e-4, min_agreement=0.999, max_accuracy_drop=None),
    "int8": Parity(max_abs_diff=None, min_agreement=0.995, max_accuracy_drop=0.3),
}


def check_parity(
    reference: np.ndarray, probs: np.ndarray, labels: np.ndarray, parity: Parity
) -> dict:
    """Compares an export's probabilities with the Keras model's on the same images.

    Returns:
        max_abs_diff, agreement, keras_accuracy, export_accuracy, accuracy_drop (points),
        and `failures`: a list of messages, empty when the export passes.
    """
    labels = np.asarray(labels).astype(int)
    diff = float(np.abs(probs - reference).max()) if len(probs) else 0.0
    agreement = float((probs.argmax(1) == reference.argmax(1)).mean())
    keras_acc = float((reference.argmax(1) == labels).mean())
    export_acc = float((probs.argmax(1) == labels).mean())
    drop = 100 * (keras_acc - export_acc)
    failures = []
    if parity.max_abs_diff is not None and diff > parity.max_abs_diff:
        failures.append(
            f"max |probability difference| {diff:.2e} exceeds {parity.max_abs_diff:.0e} "
            f"({diff / parity.max_abs_diff:.1f}x the limit)"
        )
    if agreement < parity.min_agreement:
        failures.append(
            f"same predicted class on {agreement:.2%} of images, below {parity.min_agreement:.1%}"
        )
    if parity.max_accuracy_drop is not None and drop > parity.max_accuracy_drop:
        failures.append(
            f"test accuracy {export_acc:.2%} is {drop:.2f} points below the Keras model's "
            f"{keras_acc:.2%} (at most {parity.max_accuracy_drop} allowed)"
        )
    return {
        "n": int(len(labels)),
        "max_abs_diff": diff,
        "agreement": agreement,
        "keras_accuracy": keras_acc,
        "export_accuracy": export_acc,
        "accuracy_drop_points": drop,
        "failures": failures,
    }
