"""Training: `train(config, data, out_dir)` -> a self-describing run folder.

A run folder holds:

- `config.json`: the fully resolved config (written first; a re-run must match it);
- `model.keras`: the final model (raw 0-255 pixels in, probabilities out), saved with
  standard Keras layers only (`models.portable`), so plain `keras.models.load_model` reads it;
- `best.keras`: the model at the epoch with the best validation accuracy (the same way);
- `history.json`: per-epoch loss/accuracy for training and validation, and wall time;
- `calibration.json`: the softmax temperature fitted on the validation split;
- `state.json` + `checkpoints/`: the resume point, updated after every epoch.

Interrupting training (Ctrl-C, kill -9) loses at most the current epoch: running the same
command again resumes from the last finished epoch and ends with the same weights as an
uninterrupted run, because each epoch's data order is a function of (seed, epoch) alone and
the checkpoint holds the optimizer state. Every file is written atomically.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
from pathlib import Path

import keras
import tensorflow as tf

from fashion_cnn.batches import (
    epoch_batches,
    epoch_sizes,
    make_augment,
    make_mix,
    without_autotune,
)
from fashion_cnn.calibrate import calibrate
from fashion_cnn.callbacks import Checkpointer, Progress
from fashion_cnn.cluster import check_same_config
from fashion_cnn.config import TrainConfig, save_config
from fashion_cnn.data import NUM_CLASSES, Dataset, split_validation
from fashion_cnn.errors import RunError
from fashion_cnn.evaluate import predict_proba
from fashion_cnn.hardware import agreed_precision, resolve_precision
from fashion_cnn.io_utils import atomic_path, make_folder, read_json, write_json
from fashion_cnn.models import build_model, portable
from fashion_cnn.optim import make_optimizer
from fashion_cnn.run_folder import (
    CALIBRATION_FILE,
    CKPT_DIR,
    CONFIG_FILE,
    HISTORY_FILE,
    MODEL_FILE,
    STATE_FILE,
    check_run_folder,
    load_keras_file,
    locked,
)
from fashion_cnn.sam import with_sam

log = logging.getLogger(__name__)


def reestimate_batchnorm(model: keras.Model, batches: tf.data.Dataset, limit: int = 50) -> int:
    """Recomputes every BatchNormalization layer's moving mean and variance for the model's
    current weights, as the plain average over up to `limit` batches of `batches`.

    Training with `ema` ends with the averaged weights replacing the trained ones, but the
    moving statistics still describe the last trained weights: measured on `fast` (EMA
    0.999, seed 0), that mismatch cost 1.3 points of test accuracy. Forward passes in
    training mode with momentum (k - 1) / k at the k-th batch (so the first batch replaces
    the old statistics) leave the exact average of the batches' statistics. The weights
    don't change.

    Args:
        model: a Keras model; its layers' `momentum` is restored afterwards.
        batches: a dataset of (images, labels) training batches, augmented as in training.
        limit: most batches to use.

    Returns:
        The number of batches used (0 when the model has no BatchNormalization).
    """
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not norms:
        return 0
    momenta = [layer.momentum for layer in norms]
    used = 0
    try:
        for images, _ in batches.take(limit):
            used += 1
            for layer in norms:
                layer.momentum = (used - 1) / used
            model(images, training=True)
    finally:
        for layer, momentum in zip(norms, momenta, strict=True):
            layer.momentum = momentum
    return used


def for_this_machine(config: TrainConfig) -> TrainConfig:
    """`config` with `precision = "auto"` resolved for this machine: what `train` runs and
    records in the run folder's config.json.

    Raises:
        ConfigError: `config` is invalid.
    """
    return config.replace(precision=resolve_precision(config.validate().precision))


def is_chief(strategy) -> bool:
    """Whether this process writes the run folder: always, except on the non-chief workers
    of a multi-worker strategy (worker 0 is the chief when TF_CONFIG names none)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type in (None, "chief"):
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def compiled_model(config: TrainConfig, total_steps: int) -> keras.Model:
    """A new model of `config`, compiled as training compiles it (optimizer and schedule over
    `total_steps`, loss with label smoothing, SAM where set), in the current dtype policy."""
    model = build_model(config.model, **config.model_options())
    if config.sam:
        model = with_sam(model, config.sam, config.sam_fraction)
    model.compile(
        optimizer=make_optimizer(config, total_steps),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
        jit_compile=config.jit_compile,
    )
    return model


def build_training_state(model: keras.Model) -> None:
    """Creates the optimizer's and the compiled metrics' variables of `model` before `fit`.

    Without a distribution strategy Keras creates them while TensorFlow traces the training
    step, and a `tf.function` whose first trace created variables is traced a second time:
    building them first halves the tracing at the start of every `fit` (see BENCHMARKS.md).
    Leaves the weights, the random state and the metrics' values as they were.
    """
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    one = keras.ops.zeros((1, *model.input_shape[1:]))
    model.compute_metrics(one, keras.ops.zeros((1, *model.output_shape[1:])), model(one))
    model.reset_metrics()


def configure_backend(config: TrainConfig) -> None:
    """Seeds everything and makes TensorFlow ops deterministic (bit-for-bit repeatable runs)."""
    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()


def train(
    config: TrainConfig,
    data: Dataset,
    out_dir: str | Path,
    *,
    verbose: int | str = "auto",
    overwrite: bool = False,
    callbacks: list[keras.callbacks.Callback] | None = None,
    strategy: tf.distribute.Strategy | None = None,
) -> Path:
    """Trains `config` on `data` into the run folder `out_dir`, resuming if possible.

    Args:
        config: the resolved config; `precision = "auto"` is resolved here for this machine
            (for the whole cluster, under a multi-worker `strategy`: `agreed_precision`),
            and the run folder's config.json records the result.
        data: the dataset (the test part is not touched here).
        out_dir: the run folder; created if needed.
        verbose: Keras' fit verbosity (1 = progress bar, 2 = a line per epoch).
        overwrite: discard an existing run in `out_dir` instead of resuming it.
        callbacks: extra Keras callbacks (after the checkpointer and the progress log).
        strategy: a `tf.distribute` strategy (e.g. `MultiWorkerMirroredStrategy`): the model
            is built under its scope and each step's global batch is split across its
            replicas. Every worker calls `train` with the same arguments; only the chief
            writes `out_dir`, the others write to a temporary folder that is removed.

    Returns:
        The run folder.

    Raises:
        RunError: `out_dir` holds a run with a different config, or an unfinished
            multi-worker run (those cannot resume), or `sam` with several replicas.
        FashionCnnError: the workers of a multi-worker run have different configs.
    """
    requested = config.validate().precision
    config = for_this_machine(config)
    if strategy is not None and strategy.num_replicas_in_sync > 1:
        if requested == "auto":
            config = config.replace(precision=agreed_precision(strategy, config.precision))
        check_same_config(strategy, config.to_dict())
    if strategy is not None and not is_chief(strategy):
        import tempfile

        scratch = Path(tempfile.mkdtemp(prefix="fashion-cnn-worker-"))
        try:
            _train(config, data, scratch, verbose, True, callbacks, strategy)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return Path(out_dir)
    return _train(config, data, Path(out_dir), verbose, overwrite, callbacks, strategy)


def _train(config, data, out: Path, verbose, overwrite, callbacks, strategy) -> Path:
    make_folder(out, "Run folder", "--out")
    with locked(out):
        return _train_locked(config, data, out, verbose, overwrite, callbacks, strategy)


def _train_locked(config, data, out: Path, verbose, overwrite, callbacks, strategy) -> Path:
    distributed = strategy is not None and strategy.num_replicas_in_sync > 1
    check_run_folder(out, config, overwrite)
    state_path = out / STATE_FILE
    if (
        state_path.exists()
        and read_json(state_path).get("finished")
        and (out / MODEL_FILE).exists()
    ):
        log.info("run %s is already complete; nothing to do", out)
        return out
    if distributed and config.sam:
        raise RunError(
            "Training over several replicas (a multi-worker or multi-device strategy) does "
            "not support `sam` (its steps are plain gradient steps). To fix it: set sam = 0, "
            "or train on one device."
        )
    if distributed and state_path.exists():
        raise RunError(
            f"Run folder {out} holds an unfinished run; multi-worker training cannot resume "
            f"one (the workers' states would differ). Pass --overwrite to start it again."
        )
    save_config(config, out / CONFIG_FILE)

    x, y = data.x_train, data.y_train
    if config.train_subset:
        x, y = x[: config.train_subset], y[: config.train_subset]
    x_tr, y_tr, x_val, y_val = split_validation(x, y, config.val_fraction, config.split_seed)

    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(config.precision)
    try:
        configure_backend(config)
        state = read_json(state_path) if state_path.exists() else None
        scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
        with scope:
            if state and state.get("checkpoint") and (out / state["checkpoint"]).exists():
                model = load_keras_file(
                    out / state["checkpoint"], "pass --overwrite to start the run again."
                )
                if config.sam:
                    model = with_sam(model, config.sam, config.sam_fraction)
                log.info("resuming %s from epoch %d", out, state["epoch"])
            else:
                state = {"epoch": 0, "history": {}, "best_val_accuracy": -1.0, "best_epoch": None}
                total_steps = config.epochs * math.ceil(len(x_tr) / config.batch_size)
                model = compiled_model(config, total_steps)
        first_epoch = state["epoch"]
        if first_epoch < config.epochs:
            ds, steps = epoch_batches(
                x_tr,
                y_tr,
                config.batch_size,
                config.seed,
                first_epoch,
                config.epochs,
                augment=make_augment(config),
                alternate_flip=config.alternate_flip,
                mix=make_mix(config),
                sizes=epoch_sizes(config.epochs, config.low_res, config.low_res_until),
            )
            validation = None
            if len(x_val):
                y_val_1h = keras.utils.to_categorical(y_val, NUM_CLASSES)
                validation = (x_val.astype("float32"), y_val_1h)
            every_epoch = [Checkpointer(out, state), Progress(config.epochs), *(callbacks or [])]
            if distributed:
                from fashion_cnn.distributed import fit_distributed

                with strategy.scope():
                    model.optimizer.build(model.trainable_variables)
                fit_distributed(
                    model,
                    strategy,
                    ds,
                    batch_size=config.batch_size,
                    steps=steps,
                    epochs=config.epochs,
                    initial_epoch=first_epoch,
                    label_smoothing=config.label_smoothing,
                    validation=validation,
                    callbacks=every_epoch,
                    verbose=verbose,
                )
            else:
                if strategy is None:  # under a strategy Keras builds them itself
                    build_training_state(model)
                model.fit(
                    ds,
                    epochs=config.epochs,
                    initial_epoch=first_epoch,
                    steps_per_epoch=steps,
                    validation_data=None
                    if validation is None
                    else without_autotune(
                        tf.data.Dataset.from_tensor_slices(validation).batch(1024)
                    ),
                    callbacks=every_epoch,
                    verbose=verbose,
                    shuffle=False,  # the dataset is already in its seeded per-epoch order
                )
        if config.ema:
            if first_epoch >= config.epochs:
                # Stopped after the last epoch's checkpoint but before saving: `fit` swaps
                # the averaged weights in at its end, and it did not run this time.
                model.optimizer.finalize_variable_values(model.trainable_variables)
            bn_batches, _ = epoch_batches(
                x_tr,
                y_tr,
                config.batch_size,
                config.seed,
                config.epochs,
                config.epochs + 1,
                augment=make_augment(config),
            )
            reestimate_batchnorm(model, bn_batches)
        if len(x_val):
            val_probs = predict_proba(model, x_val)
            write_json(out / CALIBRATION_FILE, calibrate(val_probs, y_val))
        with atomic_path(out / MODEL_FILE) as tmp:
            portable(model).save(tmp)
        history = dict(state["history"])
        history["best_epoch"] = state["best_epoch"]
        history["train_images"] = int(len(x_tr))
        history["val_images"] = int(len(x_val))
        history["replicas"] = int(strategy.num_replicas_in_sync) if strategy is not None else 1
        write_json(out / HISTORY_FILE, history)
        state["finished"] = True
        write_json(state_path, state)
        shutil.rmtree(out / CKPT_DIR, ignore_errors=True)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    return out
