import keras
import numpy as np
import pytest

from fashion_cnn.models import MODELS, build_model


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
