"""Model builders and the registry (a plain dict from name to builder).

Every model takes raw 0-255 pixels shaped (28, 28, 1) and applies its own scaling in a
`Rescaling` layer, so training, evaluation, prediction and serving cannot drift apart. Every
model ends in a float32 softmax over the 10 classes, also under mixed precision.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
from keras import layers

from fashion_cnn.sam import without_sam

INPUT_SHAPE = (28, 28, 1)


def build_seed(
    scale: float = 1.0,
    num_classes: int = 10,
    width: int = 1,
    fused_bn: bool = False,
    se: int = 0,
    channels: Sequence[int] | None = None,
) -> keras.Model:
    """The blog's network, exactly: 3 convolutions, 2 poolings, 2 dense layers (93,322 weights).

    Args:
        scale: factor for raw pixels (the blog's notebook fed raw 0-255 pixels: 1.0).
        num_classes: size of the softmax.
        width: ignored (the blog's widths are fixed).
        fused_bn: ignored (the blog's network has no BatchNorm).
        se: ignored (the blog's network has no squeeze-and-excitation).
        channels: ignored (the blog's widths are fixed).
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


@keras.saving.register_keras_serializable(package="fashion_cnn")
class FusedBatchNormalization(layers.BatchNormalization):
    """`BatchNormalization` whose training step runs TensorFlow's fused kernel.

    Keras 3 normalizes a batch with separate element-wise ops in float32 (cast, mean,
    variance, scale and shift, cast back, and as many again for the gradient). On the
    TensorFlow backend this layer trains with `FusedBatchNormV3` instead: one kernel each
    way, on bf16 activations directly, and the same moving-average update (of the kernel's
    batch variance, which has Bessel's correction n / (n - 1): under 1.001 for `convnet`,
    whose smallest batch statistics cover over 1,500 values). Inference, and any other
    backend, run the parent's code, so a trained model computes exactly what a
    `BatchNormalization` with the same weights computes. Only 4-D channels-last inputs
    without masks take the fused path.
    """

    def call(self, inputs, training=None, mask=None):
        fused = (
            training
            and self.trainable
            and mask is None
            and keras.backend.backend() == "tensorflow"
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
        )
        if not fused:
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs,
            self.gamma if self.scale else tf.ones_like(self.moving_mean),
            self.beta if self.center else tf.zeros_like(self.moving_mean),
            epsilon=self.epsilon,
            is_training=True,
            data_format="NHWC",
        )
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(
            self.moving_variance * self.momentum + variance * (1.0 - self.momentum)
        )
        return tf.cast(outputs, self.compute_dtype)


def portable(model: keras.Model) -> keras.Model:
    """The model to save for inference: a plain functional model (not the `SharpnessAware`
    one it was trained as), each `FusedBatchNormalization` swapped for a Keras
    `BatchNormalization` with the same config and weights.

    Both compute exactly the same at inference, and the copy loads with plain Keras, with
    no `fashion_cnn` import. Training checkpoints keep the training classes (a resumed run
    trains as it started). A plain model without fused layers is returned as it is.

    Args:
        model: a functional model, e.g. from `build_model`.

    Returns:
        `model`, or an uncompiled model with the same layer names and weights.
    """
    model = without_sam(model)
    if not any(isinstance(layer, FusedBatchNormalization) for layer in model.layers):
        return model

    def clone(layer):
        cls = (
            layers.BatchNormalization
            if isinstance(layer, FusedBatchNormalization)
            else layer.__class__
        )
        return cls.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def float32_clone(model: keras.Model) -> keras.Model:
    """The same model computing in float32 (weights copied), for a mixed-precision model.

    Args:
        model: a Keras model; its weights are float32 already, only the compute dtype
            changes.

    Returns:
        An uncompiled copy with the same layer names and weights.
    """

    def clone_layer(layer):
        config = layer.get_config()
        config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    clone = keras.models.clone_model(model, clone_function=clone_layer)
    clone.set_weights(model.get_weights())
    return clone


def _conv_bn_relu(
    x, filters: int, pool: bool, name: str, fused_bn: bool = False, pool_padding: str = "valid"
):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    if pool:
        x = layers.MaxPooling2D(padding=pool_padding, name=f"{name}_pool")(x)
    norm = FusedBatchNormalization if fused_bn else layers.BatchNormalization
    x = norm(momentum=0.9, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _squeeze_excite(x, ratio: int, name: str):
    """Squeeze-and-excitation (Hu et al., 2018): each channel of `x` scaled by a gate in
    (0, 1) computed from all channels' means by a bottleneck of channels // `ratio` (at
    least 4) units."""
    channels = x.shape[-1]
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_pool")(x)
    s = layers.Dense(max(channels // ratio, 4), activation="relu", name=f"{name}_se_reduce")(s)
    s = layers.Dense(channels, activation="sigmoid", name=f"{name}_se_gate")(s)
    return layers.Multiply(name=f"{name}_se")([x, s])


def stage_channels(width: int = 1, channels: Sequence[int] | None = None) -> tuple[int, ...]:
    """The channels of the stem and the three stages of the models with stages.

    Args:
        width: channel multiplier of the default (16, 32, 64, 128).
        channels: four channel counts that replace the default (then `width` is ignored).

    Returns:
        Four integers.

    Raises:
        ValueError: `channels` is not four positive integers.
    """
    if channels is None:
        return tuple(c * width for c in (16, 32, 64, 128))
    if len(channels) != 4 or not all(
        isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in channels
    ):
        raise ValueError(
            "Invalid value for `channels`: expected 4 positive integers (stem and three "
            f"stages), received {channels!r}"
        )
    return tuple(channels)


def _build_stages(
    name: str,
    scale: float,
    num_classes: int,
    width: int,
    fused_bn: bool,
    residual: bool,
    pool_padding: str = "valid",
    se: int = 0,
    channels: Sequence[int] | None = None,
) -> keras.Model:
    stem, *stages = stage_channels(width, channels)
    inputs = keras.Input(INPUT_SHAPE, name="pixels")
    x = layers.Rescaling(scale, name="rescale")(inputs)
    x = _conv_bn_relu(x, stem, pool=False, name="stem", fused_bn=fused_bn)
    for i, filters in enumerate(stages, start=1):
        x = shortcut = _conv_bn_relu(
            x, filters, pool=True, name=f"s{i}a", fused_bn=fused_bn, pool_padding=pool_padding
        )
        x = _conv_bn_relu(x, filters, pool=False, name=f"s{i}b", fused_bn=fused_bn)
        if residual:
            x = _conv_bn_relu(x, filters, pool=False, name=f"s{i}c", fused_bn=fused_bn)
        if se:
            x = _squeeze_excite(x, se, name=f"s{i}")
        if residual:
            x = layers.Add(name=f"s{i}_add")([x, shortcut])
    x = layers.GlobalMaxPooling2D(name="gmp")(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="probs")(x)
    return keras.Model(inputs, outputs, name=name)


def build_convnet(
    scale: float = 1 / 255,
    num_classes: int = 10,
    width: int = 2,
    fused_bn: bool = False,
    se: int = 0,
    channels: Sequence[int] | None = None,
) -> keras.Model:
    """A compact VGG/airbench-style network: a stem and three conv-pool-BN-ReLU stages.

    Channels are (16, 32, 64, 128) x `width`, or `channels`; resolution 28 -> 14 -> 7 -> 3;
    global max pooling; one dense layer. BatchNorm after every convolution, no biases before it.

    Args:
        scale: factor for raw pixels (1/255 maps them to [0, 1]).
        num_classes: size of the softmax.
        width: channel multiplier.
        fused_bn: train the BatchNorm layers with TensorFlow's fused kernel
            (`FusedBatchNormalization`); same weights and inference, different rounding.
        se: squeeze-and-excitation reduction ratio after each stage (0 = none).
        channels: four channel counts (stem, stages) instead of the multiples of `width`.
    """
    return _build_stages(
        "convnet", scale, num_classes, width, fused_bn, residual=False, se=se, channels=channels
    )


def build_resconv(
    scale: float = 1 / 255,
    num_classes: int = 10,
    width: int = 2,
    fused_bn: bool = False,
    se: int = 0,
    channels: Sequence[int] | None = None,
) -> keras.Model:
    """`convnet` with three convolutions a stage, the last two inside a residual branch.

    Each stage is conv-pool-BN-ReLU, then two conv-BN-ReLU whose output is added to the
    first's (airbench96's "ConvGroup" on CIFAR-10): 1.66x the weights of `convnet` and
    1.31x its FLOPs, mostly at the cheap 14x14, 7x7 and 3x3 resolutions.

    Args:
        scale: factor for raw pixels (1/255 maps them to [0, 1]).
        num_classes: size of the softmax.
        width: channel multiplier: channels are (16, 32, 64, 128) x `width`.
        fused_bn: train the BatchNorm layers with TensorFlow's fused kernel.
        se: squeeze-and-excitation reduction ratio on each stage's residual branch (0 = none).
        channels: four channel counts (stem, stages) instead of the multiples of `width`.
    """
    return _build_stages(
        "resconv", scale, num_classes, width, fused_bn, residual=True, se=se, channels=channels
    )


def build_convnet4(
    scale: float = 1 / 255,
    num_classes: int = 10,
    width: int = 2,
    fused_bn: bool = False,
    se: int = 0,
    channels: Sequence[int] | None = None,
) -> keras.Model:
    """`convnet` whose last pooling keeps the 7x7 map's edge: 7 -> 4 instead of 7 -> 3.

    `convnet`'s third 2x2 pooling drops the last row and column of its 7x7 input, so the
    last stage sees the right and bottom edges less than the left and top ones (and a
    horizontal flip moves a detail from the kept side to the dropped one). Here the
    poolings pad ("same"; the first two halve even sizes, 28 and 14, so only the last one
    changes): the last stage's second convolution runs at 4x4 (6% more FLOPs at width 2);
    same weights.
    Measured as a `best` candidate (`benchmarks/candidates/best-c4.toml`, BENCHMARKS.md).

    Args:
        scale: factor for raw pixels (1/255 maps them to [0, 1]).
        num_classes: size of the softmax.
        width: channel multiplier: channels are (16, 32, 64, 128) x `width`.
        fused_bn: train the BatchNorm layers with TensorFlow's fused kernel.
        se: squeeze-and-excitation reduction ratio after each stage (0 = none).
        channels: four channel counts (stem, stages) instead of the multiples of `width`.
    """
    return _build_stages(
        "convnet4",
        scale,
        num_classes,
        width,
        fused_bn,
        residual=False,
        pool_padding="same",
        se=se,
        channels=channels,
    )


MODELS: dict[str, Callable[..., keras.Model]] = {
    "seed": build_seed,
    "convnet": build_convnet,
    "resconv": build_resconv,
    "convnet4": build_convnet4,
}


def build_model(
    name: str,
    scale: float = 1.0,
    num_classes: int = 10,
    width: int = 1,
    fused_bn: bool = False,
    se: int = 0,
    channels: Sequence[int] | None = None,
) -> keras.Model:
    """Builds a registered model.

    Args:
        name: key of `MODELS`.
        scale: factor the model's `Rescaling` layer applies to raw pixels.
        num_classes: size of the softmax.
        width: channel multiplier (models that have one).
        fused_bn: train BatchNorm with TensorFlow's fused kernel (models that have BatchNorm).
        se: squeeze-and-excitation reduction ratio after each stage, 0 for none (models
            with stages).
        channels: the stem's and the three stages' channels instead of (16, 32, 64, 128) x
            `width` (models with stages; `stage_channels`).

    Raises:
        ValueError: `name` is not in `MODELS`.
    """
    if name not in MODELS:
        raise ValueError(
            f"Invalid value for `name`: expected one of {sorted(MODELS)}, received {name!r}"
        )
    return MODELS[name](
        scale=scale,
        num_classes=num_classes,
        width=width,
        fused_bn=fused_bn,
        se=se,
        channels=channels,
    )


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
