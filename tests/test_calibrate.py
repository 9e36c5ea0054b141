import numpy as np

from fashion_cnn.calibrate import (
    apply_temperature,
    calibrate,
    expected_calibration_error,
    fit_temperature,
)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def overconfident(n=4000, true_t=2.5, seed=0):
    """Model probabilities softmax(z) for labels that really follow softmax(z / true_t)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 10)) * 4
    true_p = softmax(z / true_t)
    y = np.array([rng.choice(10, p=p) for p in true_p])
    return softmax(z).astype("float32"), y


def test_apply_temperature():
    p = softmax(np.random.default_rng(1).normal(size=(5, 10))).astype("float32")
    np.testing.assert_allclose(apply_temperature(p, 1.0), p, rtol=1e-5)
    np.testing.assert_allclose(apply_temperature(p, 1e6), 0.1, atol=1e-4)
    assert (apply_temperature(p, 0.5).max(1) > p.max(1)).all()


def test_ece_on_a_hand_made_case():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    y = np.array([0, 1, 0, 0])
    # bin (0.867, 0.933]: confidence 0.9, accuracy 0.5; bin (0.533, 0.6]: 0.6 vs 1.0
    assert np.isclose(expected_calibration_error(probs, y), 0.5 * 0.4 + 0.5 * 0.4)


def test_fit_recovers_the_temperature_and_lowers_ece():
    probs, y = overconfident()
    t = fit_temperature(probs, y)
    assert 2.0 < t < 3.0
    cal = calibrate(probs, y)
    assert cal["temperature"] == t
    assert cal["val_ece_after"] < cal["val_ece_before"] / 2
