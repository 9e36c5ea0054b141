"""Working with a finished run folder: load its model, evaluate it, write its report."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fashion_cnn.data import Dataset
from fashion_cnn.errors import RunError
from fashion_cnn.evaluate import compute_metrics, predict_proba
from fashion_cnn.io_utils import read_json, write_json, write_text
from fashion_cnn.train import BEST_FILE, CONFIG_FILE, HISTORY_FILE, MODEL_FILE

METRICS_FILE = "metrics.json"
REPORT_FILE = "report.html"
CHECKPOINTS = {"final": MODEL_FILE, "best": BEST_FILE}


def load_run_model(run_dir: str | Path, checkpoint: str = "final"):
    """Loads the model of a run folder.

    Args:
        run_dir: a folder written by `train`.
        checkpoint: "final" (model.keras) or "best" (best validation accuracy).

    Raises:
        RunError: the folder or the model file is missing or unreadable.
    """
    import keras

    run = Path(run_dir)
    if checkpoint not in CHECKPOINTS:
        raise RunError(
            f"Invalid value for `checkpoint`: expected one of {list(CHECKPOINTS)}, "
            f"received {checkpoint!r}"
        )
    path = run / CHECKPOINTS[checkpoint]
    if not run.is_dir():
        raise RunError(
            f"Run folder {run} does not exist. Train one with `fashion-cnn train --out {run}`."
        )
    if not path.is_file():
        raise RunError(
            f"Run folder {run} has no {path.name}: training has not finished. Re-run the same "
            f"`fashion-cnn train` command to resume it."
        )
    try:
        return keras.models.load_model(path)
    except Exception as e:  # noqa: BLE001 - any loader failure means the file is unusable
        raise RunError(
            f"Cannot load model {path}: {e}. Re-train the run with --overwrite."
        ) from None


def evaluate_run(
    run_dir: str | Path, data: Dataset, checkpoint: str = "final", tta: bool = False
) -> dict:
    """Evaluates a run on the test set; writes `metrics.json` and `report.html` beside it.

    Args:
        run_dir: a finished run folder.
        data: the dataset (only the test part is used).
        checkpoint: "final" or "best".
        tta: horizontal-flip test-time augmentation.

    Returns:
        The metrics dict (see `compute_metrics`), plus the checkpoint and TTA setting used.
    """
    from fashion_cnn.report import render_html

    run = Path(run_dir)
    model = load_run_model(run, checkpoint)
    probs = predict_proba(model, data.x_test, tta=tta)
    metrics = compute_metrics(probs, data.y_test)
    metrics["checkpoint"] = checkpoint
    metrics["tta"] = tta
    write_json(run / METRICS_FILE, metrics)
    history = read_json(run / HISTORY_FILE) if (run / HISTORY_FILE).exists() else {}
    config = read_json(run / CONFIG_FILE) if (run / CONFIG_FILE).exists() else {}
    html = render_html(
        metrics,
        history,
        config,
        data.x_test,
        np.asarray(data.y_test),
        probs.argmax(axis=1),
        title=f"fashion-cnn: {run.name}",
    )
    write_text(run / REPORT_FILE, html)
    return metrics
