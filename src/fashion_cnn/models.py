"""Model builders and the registry (a plain dict from name to builder).

Every model takes raw 0-255 pixels shaped (28, 28, 1) and applies its own scaling in a
`Rescaling` layer, so training, evaluation, prediction and serving cannot drift apart. Every
model ends in a float32 softmax over the 10 classes, also under mixed precision.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import layers

INPUT_SHAPE = (28, 28, 1)


def build_seed(scale: float = 1.0, num_classes: int = 10) -> keras.Model:
    """The blog's network, exactly: 3 convolutions, 2 poolings, 2 dense layers (93,322 weights).

    Args:
        scale: factor for raw pixels (the blog's notebook fed raw 0-255 pixels: 1.0).
        num_classes: size of the softmax.
    """
    return keras.Sequential(
        [
            keras.Input(INPUT_SHAPE, name="pixels"),
            layers.Rescaling(scale, name="rescale"),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, activation="relu"),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(num_classes, activation="softmax", dtype="float32", name="probs"),
        ],
        name="seed",
    )


MODELS: dict[str, Callable[..., keras.Model]] = {
    "seed": build_seed,
}


def build_model(name: str, scale: float = 1.0, num_classes: int = 10) -> keras.Model:
    """Builds a registered model.

    Raises:
        ValueError: `name` is not in `MODELS`.
    """
    if name not in MODELS:
        raise ValueError(
            f"Invalid value for `name`: expected one of {sorted(MODELS)}, received {name!r}"
        )
    return MODELS[name](scale=scale, num_classes=num_classes)
