import keras
import numpy as np
import pytest

from fashion_cnn.config import FIXED_SIZE, MODEL_NAMES
from fashion_cnn.models import MODELS, build_model, portable, stage_channels


def test_config_names_exactly_the_registered_models():
    # config.py names the registry's keys so that checking a config needs no TensorFlow.
    assert sorted(MODEL_NAMES) == sorted(MODELS)
    assert set(FIXED_SIZE) <= set(MODELS)


def test_seed_is_the_blog_network():
    model = build_model("seed")
    assert model.count_params() == 93_322
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == [
        "Rescaling",
        "Conv2D",
        "MaxPooling2D",
        "Conv2D",
        "MaxPooling2D",
        "Conv2D",
        "Flatten",
        "Dense",
        "Dense",
    ]
    assert all(layer.padding == "valid" for layer in model.layers if hasattr(layer, "padding"))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_only_the_fixed_size_models_refuse_smaller_images(name):
    # Progressive resizing (`low_res`) trains on batches of unknown height and width
    # (12x12..24x24), as here; config validation refuses it for the models in FIXED_SIZE.
    import tensorflow as tf

    model = build_model(name, scale=1 / 255)
    step = tf.function(
        lambda x: model(x, training=True),
        input_signature=[tf.TensorSpec([None, None, None, 1], tf.float32)],
    )
    small = np.zeros((2, 16, 16, 1), "float32")
    if name in FIXED_SIZE:
        with pytest.raises((ValueError, tf.errors.InvalidArgumentError)):  # Dense's input size
            step(small)
    else:
        assert step(small).shape == (2, 10)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_take_raw_pixels_and_output_probabilities(name):
    model = build_model(name, scale=1 / 255)
    assert model.input_shape == (None, 28, 28, 1)
    x = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1)).astype("float32")
    p = np.asarray(model(x))
    assert p.shape == (4, 10)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)


def test_rescaling_is_inside_the_model():
    model = build_model("seed", scale=0.5)
    assert model.layers[0].scale == 0.5


def test_mixed_precision_still_outputs_float32():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = build_model("seed")
    finally:
        keras.config.set_dtype_policy(previous)
    assert model.layers[1].compute_dtype == "bfloat16"
    assert model(np.zeros((1, 28, 28, 1), "float32")).dtype == "float32"


def test_unknown_model():
    with pytest.raises(ValueError, match="expected one of"):
        build_model("nope")


def test_forward_flops_of_the_blog_network():
    from fashion_cnn.models import forward_flops

    expected = (
        2 * 26 * 26 * 32 * 1 * 9  # conv 1 -> 32 at 26x26
        + 2 * 11 * 11 * 64 * 32 * 9  # conv 32 -> 64 at 11x11
        + 2 * 3 * 3 * 64 * 64 * 9  # conv 64 -> 64 at 3x3
        + 2 * 576 * 64
        + 2 * 64 * 10
    )
    assert forward_flops(build_model("seed")) == expected


def test_convnet_width_scales_channels():
    small, wide = build_model("convnet", width=1), build_model("convnet", width=2)
    assert wide.count_params() > 3.5 * small.count_params()
    assert small.get_layer("s3b_conv").filters == 128


@pytest.mark.parametrize("name", ["convnet", "resconv", "convnet4"])
def test_channels_replace_the_multiples_of_width(name):
    model = build_model(name, width=3, channels=[8, 16, 32, 128])
    filters = {layer.name: layer.filters for layer in model.layers if hasattr(layer, "filters")}
    assert filters["stem_conv"] == 8
    assert filters["s1a_conv"] == filters["s1b_conv"] == 16
    assert filters["s2a_conv"] == filters["s2b_conv"] == 32
    assert filters["s3a_conv"] == filters["s3b_conv"] == 128
    assert stage_channels(2) == (32, 64, 128, 256)


@pytest.mark.parametrize("channels", [[8, 16, 32], [8, 16, 0, 128], [8, 16, 32.5, 128]])
def test_bad_channels_are_named(channels):
    with pytest.raises(ValueError, match=r"Invalid value for `channels`: expected 4 positive"):
        build_model("convnet4", channels=channels)


def _bn_pair(dtype_policy="float32"):
    """A Keras BatchNormalization and a FusedBatchNormalization with the same weights.

    Returns:
        (stock layer, fused layer, input batch, initial moving variance).
    """
    from fashion_cnn.models import FusedBatchNormalization

    stock = keras.layers.BatchNormalization(momentum=0.9, dtype=dtype_policy)
    fused = FusedBatchNormalization(momentum=0.9, dtype=dtype_policy)
    rng = np.random.default_rng(0)
    for layer in (stock, fused):
        layer.build((None, 5, 5, 3))
    weights = [rng.normal(1.0, 0.3, 3).astype("float32") for _ in range(4)]
    weights[3] = np.abs(weights[3])  # gamma, beta, moving mean, moving variance
    stock.set_weights(weights)
    fused.set_weights(weights)
    x = rng.normal(2.0, 3.0, (8, 5, 5, 3)).astype("float32")
    return stock, fused, x, weights[3]


def test_fused_batchnorm_trains_like_keras_batchnorm():
    stock, fused, x, variance0 = _bn_pair()
    y_stock = np.asarray(stock(x, training=True))
    y_fused = np.asarray(fused(x, training=True))
    np.testing.assert_allclose(y_fused, y_stock, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fused.moving_mean.numpy(), stock.moving_mean.numpy(), rtol=1e-5)
    # The moving variance: Keras averages in the batch variance, the fused kernel the same
    # with Bessel's correction (n / (n - 1); n = 200 here, over 1,500 in `convnet`).
    batch_var = x.reshape(-1, 3).var(axis=0)
    np.testing.assert_allclose(
        stock.moving_variance.numpy(), 0.9 * variance0 + 0.1 * batch_var, rtol=1e-4
    )
    np.testing.assert_allclose(
        fused.moving_variance.numpy(), 0.9 * variance0 + 0.1 * batch_var * 200 / 199, rtol=1e-4
    )


def test_fused_batchnorm_has_keras_batchnorms_gradients():
    import tensorflow as tf

    stock, fused, x, _ = _bn_pair()
    w = tf.constant(np.random.default_rng(1).normal(size=x.shape).astype("float32"))
    grads = []
    for layer in (stock, fused):
        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            loss = tf.reduce_sum(layer(xt, training=True) * w)
        grads.append(tape.gradient(loss, [xt, layer.gamma.value, layer.beta.value]))
    for g_stock, g_fused in zip(*grads, strict=True):
        np.testing.assert_allclose(g_fused.numpy(), g_stock.numpy(), rtol=1e-3, atol=1e-4)


def test_fused_batchnorm_infers_exactly_like_keras_batchnorm():
    stock, fused, x, _ = _bn_pair()
    np.testing.assert_array_equal(np.asarray(fused(x)), np.asarray(stock(x)))


def test_fused_batchnorm_runs_in_bfloat16_and_returns_it():
    _, fused, x, _ = _bn_pair("mixed_bfloat16")
    y = fused(x, training=True)
    assert y.dtype == "bfloat16"
    mean = np.asarray(keras.ops.cast(y, "float32")).mean(axis=(0, 1, 2))
    np.testing.assert_allclose(mean, fused.beta.numpy(), atol=0.05)


@pytest.mark.parametrize("name, watched", [("convnet", "stem_bn"), ("resconv", "s3c_bn")])
def test_fused_bn_models_train_save_and_load(tmp_path, name, watched):
    model = build_model(name, scale=1 / 255, width=1, fused_bn=True)
    assert type(model.get_layer(watched)).__name__ == "FusedBatchNormalization"
    model.compile("sgd", "categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (32, 28, 28, 1)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 10, 32), 10)
    before = model.get_layer(watched).moving_mean.numpy().copy()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert not np.allclose(model.get_layer(watched).moving_mean.numpy(), before)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), rtol=1e-6)

    copy = portable(model)
    assert type(copy.get_layer(watched)) is keras.layers.BatchNormalization
    assert [layer.name for layer in copy.layers] == [layer.name for layer in model.layers]
    np.testing.assert_array_equal(np.asarray(copy(x)), np.asarray(model(x)))


def test_portable_returns_a_model_without_fused_layers_as_is():
    model = build_model("convnet", width=1)
    assert portable(model) is model


def test_resconv_adds_a_residual_pair_of_convolutions_to_each_stage():
    plain, res = build_model("convnet", width=1), build_model("resconv", width=1)
    convs = [layer.name for layer in res.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs == [
        "stem_conv",
        *(f"s{i}{part}_conv" for i in (1, 2, 3) for part in "abc"),
    ]
    for i in (1, 2, 3):
        add = res.get_layer(f"s{i}_add")
        sources = {t._keras_history.operation.name for t in add.input}
        assert sources == {f"s{i}a_relu", f"s{i}c_relu"}  # branch + shortcut
    extra = sum(
        res.get_layer(f"s{i}c_conv").count_params() + res.get_layer(f"s{i}c_bn").count_params()
        for i in (1, 2, 3)
    )
    assert res.count_params() == plain.count_params() + extra


def test_convnet4_pools_the_7x7_map_to_4x4_with_convnets_weights():
    plain, edge = build_model("convnet", width=1), build_model("convnet4", width=1)
    assert plain.get_layer("s3a_pool").output.shape[1:3] == (3, 3)
    assert edge.get_layer("s3a_pool").output.shape[1:3] == (4, 4)
    assert edge.count_params() == plain.count_params()


@pytest.mark.parametrize("name", ["convnet", "convnet4", "resconv"])
def test_se_gates_each_stage_with_a_bottleneck(name):
    plain, se = build_model(name, width=1), build_model(name, width=1, se=8)
    extra = 0
    for i, channels in zip((1, 2, 3), (32, 64, 128), strict=True):
        gate = se.get_layer(f"s{i}_se")
        sources = [t._keras_history.operation.name for t in gate.input]
        last = f"s{i}c_relu" if name == "resconv" else f"s{i}b_relu"
        assert sources == [last, f"s{i}_se_gate"]
        assert se.get_layer(f"s{i}_se_reduce").units == max(channels // 8, 4)
        assert se.get_layer(f"s{i}_se_gate").units == channels
        hidden = max(channels // 8, 4)
        extra += channels * hidden + hidden + hidden * channels + channels
        if name == "resconv":  # the gate is on the branch, before the shortcut is added
            add_sources = {t._keras_history.operation.name for t in se.get_layer(f"s{i}_add").input}
            assert add_sources == {f"s{i}a_relu", f"s{i}_se"}
    assert se.count_params() == plain.count_params() + extra
    x = np.random.default_rng(0).integers(0, 256, (2, 28, 28, 1)).astype("float32")
    probs = np.asarray(se(x))
    assert probs.shape == (2, 10)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)


def test_se_zero_builds_the_plain_network():
    plain, off = build_model("convnet", width=1), build_model("convnet", width=1, se=0)
    assert [layer.name for layer in off.layers] == [layer.name for layer in plain.layers]
