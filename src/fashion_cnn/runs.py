"""Working with a finished run folder: load its model, evaluate it, write its report."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from fashion_cnn.calibrate import apply_temperature, expected_calibration_error
from fashion_cnn.data import Dataset
from fashion_cnn.errors import RunError
from fashion_cnn.evaluate import compute_metrics, predict_proba
from fashion_cnn.hardware import resolve_precision
from fashion_cnn.io_utils import read_json, write_json, write_text
from fashion_cnn.run_folder import (
    CALIBRATION_FILE,
    CHECKPOINTS,
    CONFIG_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    ROBUSTNESS_FILES,
    evaluation_files,
    load_keras_file,
    model_path,
)
from fashion_cnn.tta import TTA_VIEWS, tta_mode

ROBUSTNESS_FILE, ROBUSTNESS_HTML = ROBUSTNESS_FILES


def final_metrics(run_dir: str | Path) -> dict:
    """The final model's metrics (`metrics.json`), or {} if it was not evaluated. A
    metrics.json of the best checkpoint, written before `evaluation_files`, does not count."""
    path = Path(run_dir) / METRICS_FILE
    metrics = read_json(path) if path.exists() else {}
    return metrics if metrics.get("checkpoint", "final") == "final" else {}


log = logging.getLogger(__name__)


def load_run_model(run_dir: str | Path, checkpoint: str = "final", *, precision: str = "auto"):
    """Loads the model of a run folder.

    Args:
        run_dir: a folder written by `train`.
        checkpoint: "final" (model.keras) or "best" (best validation accuracy).
        precision: "trained" computes as the run trained; "auto" does too, except that a
            `mixed_bfloat16` model computes in float32 on hardware without native bf16
            (same weights; emulated bf16 runs several times slower: `fashion_cnn.hardware`).

    Raises:
        RunError: the folder or the model file is missing, or `precision` is neither
            "auto" nor "trained".
        DamagedFileError: Keras cannot load the model file (`load_keras_file`).
    """
    from fashion_cnn.models import float32_clone

    if precision not in ("auto", "trained"):
        raise RunError(
            f"Invalid value for `precision`: expected 'auto' or 'trained', received {precision!r}"
        )

    path = model_path(run_dir, checkpoint)
    model = load_keras_file(path, "train the run again with --overwrite.")
    bf16 = any(layer.compute_dtype == "bfloat16" for layer in model.layers)
    if precision == "auto" and bf16 and resolve_precision("auto") == "float32":
        log.info("%s trained in mixed_bfloat16; computing in float32 on this machine", path)
        model = float32_clone(model)
    return model


def load_calibration(run_dir: str | Path) -> dict | None:
    """The run's `calibration.json`, or None for a run trained without validation split."""
    path = Path(run_dir) / CALIBRATION_FILE
    return read_json(path) if path.exists() else None


def evaluate_run(
    run_dir: str | Path, data: Dataset, checkpoint: str = "final", tta: str | None = None
) -> dict:
    """Evaluates a run on the test set; writes its metrics and report beside it
    (`metrics.json` and `report.html`, or `evaluation_files(checkpoint)` for "best").

    Args:
        run_dir: a finished run folder.
        data: the dataset (only the test part is used).
        checkpoint: "final" or "best".
        tta: test-time augmentation, a key of `tta.TTA_VIEWS` (default: the run config's
            `tta`).

    Returns:
        The metrics dict (see `compute_metrics`), plus the checkpoint and TTA setting used.

    Raises:
        RunError: the model cannot be loaded, or the TTA mode is unknown.
    """
    from fashion_cnn.report import GALLERY_PAIRS, gallery_indices, render_html

    run = Path(run_dir)
    model = load_run_model(run, checkpoint)
    config = read_json(run / CONFIG_FILE) if (run / CONFIG_FILE).exists() else {}
    try:
        tta = tta_mode(config.get("tta", False) if tta is None else tta)
    except ValueError as e:
        raise RunError(f"{e} (in {run / CONFIG_FILE} or the `tta` argument)") from None
    views = len(TTA_VIEWS[tta])
    log.info(
        "evaluating %s on %d test images%s",
        CHECKPOINTS[checkpoint],
        len(data.y_test),
        f", {views} views each ({tta} TTA)" if views > 1 else "",
    )
    probs = predict_proba(model, data.x_test, tta=tta)
    metrics = compute_metrics(probs, data.y_test)
    metrics["checkpoint"] = checkpoint
    metrics["tta"] = tta
    calibration = load_calibration(run)
    if calibration:
        t = calibration["temperature"]
        metrics["calibration"] = {
            "temperature": t,
            "test_ece_before": expected_calibration_error(probs, data.y_test),
            "test_ece_after": expected_calibration_error(apply_temperature(probs, t), data.y_test),
        }
    metrics_file, report_file = evaluation_files(checkpoint)
    write_json(run / metrics_file, metrics)
    y_pred = probs.argmax(axis=1)
    shown = np.concatenate(
        [np.zeros(0, int)]
        + gallery_indices(data.y_test, y_pred, metrics["most_confused"][:GALLERY_PAIRS])
    ).astype(int)
    cams = None
    if len(shown):
        from fashion_cnn.explain import grad_cam

        heat = grad_cam(model, data.x_test[shown], classes=y_pred[shown])
        cams = dict(zip(shown.tolist(), heat, strict=True))
    robustness = read_json(run / ROBUSTNESS_FILE) if (run / ROBUSTNESS_FILE).exists() else None
    history = read_json(run / HISTORY_FILE) if (run / HISTORY_FILE).exists() else {}
    html = render_html(
        metrics,
        history,
        config,
        data.x_test,
        np.asarray(data.y_test),
        y_pred,
        title=f"fashion-cnn: {run.name}"
        + ("" if checkpoint == "final" else f" ({checkpoint} checkpoint)"),
        cams=cams,
        robustness=robustness,
    )
    write_text(run / report_file, html)
    return metrics


def robustness_run(run_dir: str | Path, data: Dataset, limit: int = 2000, seed: int = 0) -> dict:
    """Runs the robustness evaluation on the first `limit` test images of a run's model;
    writes `robustness.json` and `robustness.html` beside it.
    """
    from fashion_cnn.report import render_robustness_html
    from fashion_cnn.robustness import evaluate_robustness

    run = Path(run_dir)
    model = load_run_model(run)
    x, y = data.x_test[:limit], data.y_test[:limit]
    result = evaluate_robustness(model, x, y, seed=seed)
    write_json(run / ROBUSTNESS_FILE, result)
    write_text(run / ROBUSTNESS_HTML, render_robustness_html(result, x[:8], seed))
    return result
