"""A training loop for `tf.distribute` strategies across processes.

Keras 3's `Model.fit` fails under `MultiWorkerMirroredStrategy` with the TensorFlow backend
(keras-team/keras#20585: the symbolic build reduces a `PerReplica` batch eagerly, and the
metric reductions fail after that). This loop does what `fit` would: each step's global
batch is split across the replicas by `experimental_distribute_dataset`, gradients are
averaged by the strategy's all-reduce inside `apply_gradients`, and the same Keras callbacks
are called at each epoch's start and end with the same logs (loss, accuracy, val_loss,
val_accuracy), so the run folder is written exactly as for a single process.
"""

from __future__ import annotations

import logging
import time

import keras
import numpy as np
import tensorflow as tf

log = logging.getLogger(__name__)


def fit_distributed(
    model: keras.Model,
    strategy: tf.distribute.Strategy,
    dataset: tf.data.Dataset,
    *,
    batch_size: int,
    steps: int,
    epochs: int,
    initial_epoch: int = 0,
    label_smoothing: float = 0.0,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    callbacks: list[keras.callbacks.Callback] | None = None,
    verbose: int | str = 2,
) -> None:
    """Trains a compiled-free `model` (built under `strategy.scope()`, with its optimizer
    in `model.optimizer`) for `epochs - initial_epoch` epochs of `steps` global batches.

    Args:
        dataset: (images, one-hot labels) global batches, all epochs in order.
        batch_size: the global batch size (for the loss average).
        validation: (images, one-hot labels), evaluated on each worker after each epoch
            (every worker holds the same weights).
        verbose: 0 silent, otherwise a log line per epoch.
    """
    optimizer = model.optimizer
    loss_fn = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing, reduction=None)

    @tf.function
    def train_step(batch):
        def replica_step(x, y):
            with tf.GradientTape() as tape:
                probs = model(x, training=True)
                per_image = loss_fn(y, probs)
                loss = tf.nn.compute_average_loss(per_image, global_batch_size=batch_size)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            correct = tf.reduce_sum(
                tf.cast(tf.equal(tf.argmax(probs, 1), tf.argmax(y, 1)), tf.float32)
            )
            return loss, correct, tf.cast(tf.shape(x)[0], tf.float32)

        loss, correct, count = strategy.run(replica_step, args=batch)
        reduce = tf.distribute.ReduceOp.SUM
        return (
            strategy.reduce(reduce, loss, axis=None),
            strategy.reduce(reduce, correct, axis=None),
            strategy.reduce(reduce, count, axis=None),
        )

    callbacks = list(callbacks or [])
    for cb in callbacks:
        cb.set_model(model)
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    for epoch in range(initial_epoch, epochs):
        for cb in callbacks:
            cb.on_epoch_begin(epoch)
        t0 = time.perf_counter()
        total_loss = total_correct = total_count = 0.0
        for _ in range(steps):
            loss, correct, count = train_step(next(iterator))
            # `loss` is the batch's mean; weight it by the batch's images
            total_loss += float(loss) * float(count)
            total_correct += float(correct)
            total_count += float(count)
        logs = {
            "accuracy": total_correct / total_count,
            "loss": total_loss / total_count,
        }
        if validation is not None:
            from fashion_cnn.evaluate import predict_proba

            x_val, y_val = validation
            probs = predict_proba(model, x_val)
            eps = 1e-7
            logs["val_accuracy"] = float((probs.argmax(1) == y_val.argmax(1)).mean())
            logs["val_loss"] = float(
                keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)(
                    y_val, np.clip(probs, eps, 1 - eps)
                )
            )
        if verbose:
            log.info(
                "epoch %d/%d - %.0fs - %s",
                epoch + 1,
                epochs,
                time.perf_counter() - t0,
                " - ".join(f"{k}: {v:.4f}" for k, v in logs.items()),
            )
        for cb in callbacks:
            cb.on_epoch_end(epoch, logs)
    if getattr(optimizer, "use_ema", False):
        optimizer.finalize_variable_values(model.trainable_variables)
