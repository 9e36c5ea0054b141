"""Fitting a training run into a time budget on this machine (`train --budget-minutes`).

A recipe's epochs were chosen on one machine; on a slower one the same run takes longer
(29.5 minutes for `fast` on an AVX2-only CPU in float32, against 8.3 on a CPU with native
bf16: BENCHMARKS.md). With a budget, `train` first times a few training steps of the
recipe's model here, on random images through the recipe's own input pipeline, and then
trains as many of the recipe's epochs as fit; the learning-rate schedule spans those
epochs. It never trains more epochs than the recipe says.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np

from fashion_cnn.config import TrainConfig
from fashion_cnn.data import Dataset, split_validation
from fashion_cnn.errors import ConfigError

log = logging.getLogger(__name__)

#: Steps traced and run before the timed ones (building, tracing, warming the pipeline).
WARMUP_STEPS = 3
#: Steps timed.
TIMED_STEPS = 8
#: Share of the budget kept free for what the estimate misses (speed drifts by a few %).
MARGIN = 0.05


def check_minutes(minutes: float) -> float:
    """`minutes` if it is a usable budget.

    Raises:
        ConfigError: `minutes` is not a positive, finite number.
    """
    if (
        isinstance(minutes, bool)
        or not isinstance(minutes, int | float)
        or not 0 < minutes < math.inf
    ):
        raise ConfigError(
            f"Invalid value for `--budget-minutes`: expected a positive number, received {minutes}"
        )
    return minutes


def epochs_within(
    budget_s: float, epoch_s: float, spent_s: float, max_epochs: int, margin: float = MARGIN
) -> int:
    """How many epochs of `epoch_s` seconds fit in `budget_s` less `spent_s` and `margin`.

    Args:
        budget_s: the whole budget, in seconds.
        epoch_s: the estimated duration of one epoch.
        spent_s: what was already used (the timing itself).
        max_epochs: the recipe's epochs, never exceeded.
        margin: share of the budget kept free.

    Returns:
        An epoch count in [1, max_epochs] (1 even where one epoch does not fit).
    """
    left = budget_s * (1.0 - margin) - spent_s
    return max(1, min(max_epochs, math.floor(left / epoch_s)))


def time_epoch(config: TrainConfig, n_train: int, n_val: int) -> float:
    """Seconds one training epoch of `config` takes on this machine, validation included.

    Trains a fresh model of `config` (in `config.precision`, which must be resolved: not
    "auto") for `WARMUP_STEPS` + `TIMED_STEPS` steps on random images through the recipe's
    augmentation, times the last `TIMED_STEPS`, and times one pass over `n_val` images.

    Args:
        config: the resolved config.
        n_train: training images per epoch.
        n_val: validation images scored after each epoch.

    Returns:
        The estimated seconds of one epoch: its steps at the timed rate, plus validation.
    """
    import keras

    from fashion_cnn.batches import epoch_batches, make_augment, make_mix
    from fashion_cnn.evaluate import predict_proba
    from fashion_cnn.train import build_training_state, compiled_model

    steps = WARMUP_STEPS + TIMED_STEPS
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (steps * config.batch_size, 28, 28, 1), dtype=np.uint8)
    y = rng.integers(0, 10, len(x))
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(config.precision)
    try:
        ds, _ = epoch_batches(
            x, y, config.batch_size, 0, 0, 1, augment=make_augment(config), mix=make_mix(config)
        )
        model = compiled_model(config, total_steps=steps)
        build_training_state(model)
        model.fit(ds, steps_per_epoch=WARMUP_STEPS, epochs=1, verbose=0, shuffle=False)
        t0 = time.perf_counter()
        model.fit(
            ds.skip(WARMUP_STEPS), steps_per_epoch=TIMED_STEPS, epochs=1, verbose=0, shuffle=False
        )
        step_s = (time.perf_counter() - t0) / TIMED_STEPS
        val_s = 0.0
        if n_val:
            probe = x[: min(n_val, len(x))]
            predict_proba(model, probe)  # trace first
            t0 = time.perf_counter()
            predict_proba(model, probe)
            val_s = (time.perf_counter() - t0) * n_val / len(probe)
    finally:
        # Keras' global state as before, except the probe's traces and layer names: the run's
        # layers get the names they would have had (clearing resets the policy too).
        keras.backend.clear_session()
        keras.config.set_dtype_policy(previous_policy)
    return math.ceil(n_train / config.batch_size) * step_s + val_s


def fit_to_budget(
    config: TrainConfig, data: Dataset, minutes: float, run_dir: str | Path | None = None
) -> TrainConfig:
    """`config` with as many of its epochs as fit in `minutes` of training on this machine.

    Every epoch is costed at full size: with progressive resizing (`low_res`) the early
    epochs take less, so the budget holds but may be left partly unused.

    Args:
        config: the resolved config (`precision = "auto"` is timed as this machine runs it,
            and stays "auto" in the result, for `train` to record).
        data: the dataset (sizes only).
        minutes: the budget for the training, the timing included.
        run_dir: the run folder; where it already holds a run, that run's epochs are kept,
            so that running the same command again resumes it.

    Returns:
        The config with `epochs` set.

    Raises:
        ConfigError: `minutes` is not a positive number.
    """
    check_minutes(minutes)
    from fashion_cnn.run_folder import saved_config
    from fashion_cnn.train import for_this_machine

    saved = saved_config(Path(run_dir)) if run_dir is not None else None
    if saved is not None:
        log.info("budget: resuming %s with its %d epochs", run_dir, saved["epochs"])
        return config.replace(epochs=saved["epochs"])
    started = time.perf_counter()
    n = min(len(data.x_train), config.train_subset or len(data.x_train))
    _, y_tr, _, y_val = split_validation(
        np.zeros(n, dtype=np.uint8), data.y_train[:n], config.val_fraction, config.split_seed
    )
    epoch_s = time_epoch(for_this_machine(config), len(y_tr), len(y_val))
    spent = time.perf_counter() - started
    epochs = epochs_within(minutes * 60.0, epoch_s, spent, config.epochs)
    if epochs * epoch_s + spent > minutes * 60.0:
        log.warning(
            "budget: one epoch (about %.0f s here) does not fit in the %.1f minutes given; "
            "training 1 epoch",
            epoch_s,
            minutes,
        )
    log.info(
        "budget %.1f min: an epoch takes about %.0f s here (timed in %.0f s), so %d of the "
        "recipe's %d epochs",
        minutes,
        epoch_s,
        spent,
        epochs,
        config.epochs,
    )
    return config.replace(epochs=epochs)
