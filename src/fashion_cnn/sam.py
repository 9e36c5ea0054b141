"""Sharpness-aware minimization (SAM; Foret et al., 2021) as a Keras training step.

Each step first climbs: the gradient of the loss on a share of the batch (`fraction`) gives
the direction in which the loss rises fastest, and the weights move `rho` along it (by
norm). The gradient of the whole batch's loss at that perturbed point is then applied to
the weights as they were. Computing the climb on a share of the batch is the "m-sharpness"
of the SAM paper (smaller m regularizes at least as well) and makes a step cost about
1 + `fraction` plain steps instead of 2. BatchNorm's moving statistics are restored after
the climbing pass, so only the real pass updates them.

Only the training step changes: a `SharpnessAware` model computes exactly what the
functional model it wraps computes, and `fashion_cnn.models.portable` saves the plain
functional model for inference. Training it needs the TensorFlow backend.
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="fashion_cnn")
class SharpnessAware(keras.Model):
    """A functional model trained with SAM (plain steps while `rho` is 0).

    Built like a functional model, `SharpnessAware(inputs, outputs, name=...)`, usually by
    `with_sam`. The SAM settings are not part of the saved config: a training checkpoint
    loads with `rho = 0` and `with_sam` sets them again from the recipe.
    """

    def __init__(self, inputs, outputs, name=None, **kwargs):
        super().__init__(inputs, outputs, name=name, **kwargs)
        self.rho = 0.0
        self.fraction = 1.0

    def train_step(self, data):
        if not self.rho:
            return super().train_step(data)
        import tensorflow as tf

        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        n = tf.shape(x)[0]
        m = tf.maximum(1, tf.cast(tf.math.round(tf.cast(n, "float32") * self.fraction), "int32"))
        weights = self.trainable_weights
        start = [tf.identity(v.value) for v in weights]
        statistics = [tf.identity(v.value) for v in self.non_trainable_variables]

        with tf.GradientTape() as tape:
            loss = self._compute_loss(
                x=x[:m],
                y=y[:m],
                y_pred=self(x[:m], training=True),
                sample_weight=None if sample_weight is None else sample_weight[:m],
                training=True,
            )
        climb = tape.gradient(loss, weights)
        scale = self.rho / (tf.linalg.global_norm(climb) + 1e-12)
        steps = [tf.cast(g * scale, v.dtype) for g, v in zip(climb, weights, strict=True)]
        for v, s in zip(weights, steps, strict=True):
            v.assign_add(s)
        for v, s in zip(self.non_trainable_variables, statistics, strict=True):
            v.assign(s)

        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self._compute_loss(
                x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True
            )
            self._loss_tracker.update_state(loss, sample_weight=n)
            loss = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(loss, weights)
        for v, w in zip(weights, start, strict=True):  # exactly back, not w + s - s
            v.assign(w)
        self.optimizer.apply_gradients(zip(gradients, weights, strict=True))
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


def with_sam(model: keras.Model, rho: float, fraction: float) -> keras.Model:
    """`model` to be trained with SAM, sharing its layers and weights.

    Args:
        model: a functional or Sequential model, or a `SharpnessAware` one (e.g. loaded
            from a training checkpoint), whose settings are then replaced.
        rho: radius of the climbing step (0 = plain training).
        fraction: share of each batch the climbing gradient is computed on, in (0, 1].

    Returns:
        A `SharpnessAware` model (uncompiled, unless `model` was one already).

    Raises:
        ValueError: `rho` > 0 on a backend other than TensorFlow.
    """
    if rho and keras.backend.backend() != "tensorflow":
        raise ValueError(
            f"Invalid value for `sam`: SAM training needs the TensorFlow backend, and "
            f"Keras runs {keras.backend.backend()!r}. Set KERAS_BACKEND=tensorflow, or sam = 0."
        )
    if not isinstance(model, SharpnessAware):
        model = SharpnessAware(model.inputs, model.outputs, name=model.name)
    model.rho, model.fraction = float(rho), float(fraction)
    return model


def step_cost(rho: float, fraction: float) -> float:
    """Compute of a training step relative to a plain one (forward and backward passes over
    1 + `fraction` batches with SAM), for compute-matched comparisons."""
    return 1.0 + fraction if rho else 1.0


def without_sam(model: keras.Model) -> keras.Model:
    """The plain functional model of a `SharpnessAware` one (same layers); others as they are."""
    if isinstance(model, SharpnessAware):
        return keras.Model(model.inputs, model.outputs, name=model.name)
    return model
