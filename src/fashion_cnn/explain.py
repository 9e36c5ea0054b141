"""Grad-CAM: which part of the 28x28 input made the model choose a class.

Works on functional and Sequential models alike. The Keras 3 pitfall: a Sequential model
(and especially one loaded from a `.keras` file) keeps its own internal graph, so
`keras.Model(model.inputs, layer.output)` is not connected and the gradient comes back None.
For a Sequential model the layers are therefore re-applied to a fresh `keras.Input`, keeping
the last convolution's output on the way.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from PIL import Image


def last_conv_layer(model: keras.Model) -> keras.layers.Layer:
    """The layer whose output is the feature map Grad-CAM explains.

    That is the last layer with a spatial (4-D) output that comes after the last Conv2D:
    the map the classifier head pools or flattens. For a plain network it is the last
    convolution (or its activation); for a residual one the sum of a block's branch and its
    shortcut, so the explanation covers both.

    Raises:
        ValueError: the model has no Conv2D layer.
    """
    layers = list(model.layers)
    convs = [i for i, layer in enumerate(layers) if isinstance(layer, keras.layers.Conv2D)]
    if not convs:
        raise ValueError(f"Model {model.name!r} has no Conv2D layer to explain")
    spatial = [i for i in range(convs[-1], len(layers)) if len(layers[i].output.shape) == 4]
    return layers[spatial[-1]]


def feature_model(model: keras.Model) -> keras.Model:
    """A model mapping the input to (the explained feature map, probabilities)."""
    conv = last_conv_layer(model)
    if isinstance(model, keras.Sequential):
        inputs = keras.Input((28, 28, 1))
        x, features = inputs, None
        for layer in model.layers:
            x = layer(x)
            if layer is conv:
                features = x
        return keras.Model(inputs, [features, x])
    return keras.Model(model.inputs[0], [conv.output, model.outputs[0]])


def grad_cam(
    model: keras.Model, images: np.ndarray, classes: np.ndarray | None = None
) -> np.ndarray:
    """Grad-CAM heatmaps for raw 0-255 images.

    Args:
        model: a Keras model with at least one Conv2D layer.
        images: (N, 28, 28) or (N, 28, 28, 1), 0-255.
        classes: the class to explain per image (default: the predicted one).

    Returns:
        (N, 28, 28) float32 heatmaps in [0, 1] (all zeros where no evidence was found).
    """
    x = np.asarray(images, dtype="float32").reshape(-1, 28, 28, 1)
    grad_model = feature_model(model)
    with tf.GradientTape() as tape:
        features, probs = grad_model(x, training=False)
        if classes is None:
            classes = tf.argmax(probs, axis=1)
        picked = tf.gather(tf.cast(probs, tf.float32), classes, axis=1, batch_dims=1)
        score = tf.math.log(picked + 1e-9)
    # Differentiate with respect to the features as computed (bf16 under mixed precision).
    grads = tf.cast(tape.gradient(score, features), tf.float32)
    features = tf.cast(features, tf.float32)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))[..., None]
    cam = tf.image.resize(cam, (28, 28), method="bilinear")[..., 0].numpy()
    peak = cam.reshape(len(cam), -1).max(axis=1).reshape(-1, 1, 1)
    return np.where(peak > 0, cam / np.maximum(peak, 1e-12), 0.0).astype("float32")


def overlay(image: np.ndarray, heatmap: np.ndarray, size: int = 168) -> Image.Image:
    """The 28x28 image in grey with the heatmap in red/yellow on top, upscaled to `size`."""
    from matplotlib import colormaps

    gray = np.asarray(image, dtype="float32").reshape(28, 28) / 255.0
    colours = colormaps["inferno"](heatmap)[..., :3]
    mixed = 0.55 * np.repeat(gray[..., None], 3, axis=2) + 0.45 * colours
    rgb = Image.fromarray(np.clip(mixed * 255, 0, 255).astype(np.uint8), "RGB")
    return rgb.resize((size, size), Image.Resampling.NEAREST)
