import keras
import numpy as np
import pytest

from fashion_cnn.explain import grad_cam, last_conv_layer, overlay
from fashion_cnn.models import build_model


@pytest.mark.parametrize("name", ["seed", "convnet", "resconv"])
def test_grad_cam_on_sequential_and_functional(name):
    model = build_model(name, scale=1 / 255, width=1)
    x = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 1)).astype("float32")
    cams = grad_cam(model, x)
    assert cams.shape == (3, 28, 28)
    assert cams.min() >= 0 and cams.max() <= 1


def test_grad_cam_after_save_and_load(tmp_path):
    model = build_model("seed")
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    x = np.random.default_rng(1).integers(0, 256, (2, 28, 28)).astype("float32")
    np.testing.assert_allclose(grad_cam(loaded, x), grad_cam(model, x), atol=1e-5)


def test_grad_cam_points_at_the_evidence():
    # A hand-built model: one conv filter that fires on bright pixels, class 1 = "bright".
    inputs = keras.Input((28, 28, 1))
    feat = keras.layers.Conv2D(1, 1, use_bias=False, name="c")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(feat)
    out = keras.layers.Dense(2, activation="softmax")(pooled)
    model = keras.Model(inputs, out)
    model.get_layer("c").set_weights([np.ones((1, 1, 1, 1), "float32") / 255])
    model.layers[-1].set_weights([np.array([[-5.0, 5.0]], "float32"), np.zeros(2, "float32")])
    x = np.zeros((1, 28, 28, 1), "float32")
    x[0, 2:8, 20:26] = 255  # bright patch top right
    cam = grad_cam(model, x, classes=np.array([1]))[0]
    assert cam[2:8, 20:26].mean() > 0.9 and cam[15:, :10].max() < 0.1


@pytest.mark.parametrize(
    "name, layer", [("seed", None), ("convnet", "s3b_relu"), ("resconv", "s3_add")]
)
def test_explained_feature_map_is_the_last_spatial_one(name, layer):
    # for a residual network the sum of branch and shortcut, not the branch's convolution
    model = build_model(name, width=1)
    if layer is None:  # the blog's network flattens its last convolution's output
        layer = [x for x in model.layers if isinstance(x, keras.layers.Conv2D)][-1].name
    assert last_conv_layer(model).name == layer


def test_no_conv_layer():
    model = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    with pytest.raises(ValueError, match="no Conv2D layer"):
        last_conv_layer(model)


def test_overlay_size():
    img = overlay(np.zeros((28, 28), np.uint8), np.ones((28, 28), "float32"), size=84)
    assert img.size == (84, 84) and img.mode == "RGB"


def test_grad_cam_under_mixed_precision(tmp_path):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = build_model("convnet", scale=1 / 255, width=1)
    finally:
        keras.config.set_dtype_policy(previous)
    model.save(tmp_path / "m.keras")
    cams = grad_cam(keras.models.load_model(tmp_path / "m.keras"), np.full((2, 28, 28), 99.0))
    assert cams.shape == (2, 28, 28) and np.isfinite(cams).all()
