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


def build_seed(scale: float = 1.0, num_classes: int = 10, width: int = 1) -> keras.Model:
    """The blog's network, exactly: 3 convolutions, 2 poolings, 2 dense layers (93,322 weights).

    Args:
        scale: factor for raw pixels (the blog's notebook fed raw 0-255 pixels: 1.0).
        num_classes: size of the softmax.
        width: ignored (the blog's widths are fixed).
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


def _conv_bn_relu(x, filters: int, pool: bool, name: str):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    if pool:
        x = layers.MaxPooling2D(name=f"{name}_pool")(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def build_convnet(scale: float = 1 / 255, num_classes: int = 10, width: int = 2) -> keras.Model:
    """A compact VGG/airbench-style network: a stem and three conv-pool-BN-ReLU stages.

    Channels are (16, 32, 64, 128) x `width`; resolution 28 -> 14 -> 7 -> 3; global max
    pooling; one dense layer. BatchNorm after every convolution, no biases before it.

    Args:
        scale: factor for raw pixels (1/255 maps them to [0, 1]).
        num_classes: size of the softmax.
        width: channel multiplier.
    """
    c = 16 * width
    inputs = keras.Input(INPUT_SHAPE, name="pixels")
    x = layers.Rescaling(scale, name="rescale")(inputs)
    x = _conv_bn_relu(x, c, pool=False, name="stem")
    for i, filters in enumerate((2 * c, 4 * c, 8 * c), start=1):
        x = _conv_bn_relu(x, filters, pool=True, name=f"s{i}a")
        x = _conv_bn_relu(x, filters, pool=False, name=f"s{i}b")
    x = layers.GlobalMaxPooling2D(name="gmp")(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="probs")(x)
    return keras.Model(inputs, outputs, name="convnet")


MODELS: dict[str, Callable[..., keras.Model]] = {
    "seed": build_seed,
    "convnet": build_convnet,
}


def build_model(
    name: str, scale: float = 1.0, num_classes: int = 10, width: int = 1
) -> keras.Model:
    """Builds a registered model.

    Raises:
        ValueError: `name` is not in `MODELS`.
    """
    if name not in MODELS:
        raise ValueError(
            f"Invalid value for `name`: expected one of {sorted(MODELS)}, received {name!r}"
        )
    return MODELS[name](scale=scale, num_classes=num_classes, width=width)


def forward_flops(model: keras.Model) -> int:
    """Floating-point operations of one image's forward pass through convolutions and
    dense layers (a multiply-add counts 2); training costs about 3x this.
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            c_in = layer.input.shape[-1]
            kh, kw = layer.kernel_size
            total += 2 * h * w * c_out * c_in * kh * kw
        elif isinstance(layer, layers.Dense):
            total += 2 * layer.input.shape[-1] * layer.units
    return int(total)
