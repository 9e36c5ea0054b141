import keras
import numpy as np
import pytest

from fashion_cnn.models import build_model, portable
from fashion_cnn.sam import SharpnessAware, step_cost, with_sam, without_sam


def tiny_model(bn_momentum=None):
    inputs = keras.Input((4,))
    x = inputs
    if bn_momentum is not None:
        x = keras.layers.BatchNormalization(momentum=bn_momentum, name="bn")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="dense")(x)
    return keras.Model(inputs, outputs, name="tiny")


def batch(n=8):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 3, n), 3).astype("float32")
    return x, y


def gradient(model, x, y):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = keras.losses.CategoricalCrossentropy()(y, model(x, training=True))
    return [g.numpy() for g in tape.gradient(loss, model.trainable_weights)]


def one_step(model, x, y, lr):
    model.compile(optimizer=keras.optimizers.SGD(lr), loss="categorical_crossentropy")
    model.train_on_batch(x, y)
    return [w.numpy() for w in model.trainable_weights]


@pytest.mark.parametrize("fraction, m", [(1.0, 8), (0.25, 2)])
def test_step_applies_the_gradient_taken_at_the_climbed_weights(fraction, m):
    x, y, rho, lr = *batch(), 0.5, 0.1
    keras.utils.set_random_seed(0)
    reference = tiny_model()
    start = [w.numpy() for w in reference.trainable_weights]
    climb = gradient(reference, x[:m], y[:m])
    norm = np.sqrt(sum(float((g**2).sum()) for g in climb))
    for w, w0, g in zip(reference.trainable_weights, start, climb, strict=True):
        w.assign(w0 + rho * g / norm)
    expected = [w0 - lr * g for w0, g in zip(start, gradient(reference, x, y), strict=True)]

    keras.utils.set_random_seed(0)
    model = with_sam(tiny_model(), rho, fraction)
    got = one_step(model, x, y, lr)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    keras.utils.set_random_seed(0)
    plain = one_step(tiny_model(), x, y, lr)  # a plain step from the same start lands elsewhere
    assert not np.allclose(plain[0], got[0], atol=1e-4)


def test_batchnorm_statistics_are_updated_by_the_whole_batch_only():
    x, y = batch()
    model = with_sam(tiny_model(bn_momentum=0.5), 0.5, 0.25)
    one_step(model, x, y, 0.1)
    moving_mean = model.get_layer("bn").moving_mean.numpy()
    np.testing.assert_allclose(moving_mean, 0.5 * x.mean(axis=0), rtol=1e-5, atol=1e-6)


def test_rho_zero_trains_plain_steps():
    x, y = batch()
    keras.utils.set_random_seed(0)
    got = one_step(with_sam(tiny_model(), 0.0, 0.25), x, y, 0.1)
    keras.utils.set_random_seed(0)
    plain = one_step(tiny_model(), x, y, 0.1)
    for a, b in zip(got, plain, strict=True):
        np.testing.assert_array_equal(a, b)


def test_saved_for_inference_as_the_plain_functional_model():
    model = with_sam(build_model("convnet", width=1, fused_bn=True), 0.05, 0.25)
    assert isinstance(model, SharpnessAware)
    x = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1)).astype("float32")
    plain = portable(model)
    assert type(plain).__name__ == "Functional"
    assert not isinstance(plain, SharpnessAware)
    assert not isinstance(without_sam(model), SharpnessAware)
    np.testing.assert_allclose(plain.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


def test_training_checkpoint_reloads_as_sharpness_aware_without_its_settings(tmp_path):
    model = with_sam(tiny_model(), 0.05, 0.25)
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    model.save(tmp_path / "ckpt.keras")
    loaded = keras.models.load_model(tmp_path / "ckpt.keras")
    assert isinstance(loaded, SharpnessAware) and loaded.rho == 0.0
    assert with_sam(loaded, 0.1, 0.5) is loaded and (loaded.rho, loaded.fraction) == (0.1, 0.5)


def test_step_cost_counts_the_climbing_pass():
    assert step_cost(0.0, 0.25) == 1.0
    assert step_cost(0.05, 0.25) == 1.25
