import keras
import numpy as np
from sklearn.metrics import classification_report, confusion_matrix

from fashion_cnn.evaluate import compute_metrics, most_confused


def random_probs(n, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 10)) * 3
    p = np.exp(logits)
    return (p / p.sum(axis=1, keepdims=True)).astype("float32"), rng.integers(0, 10, n)


def test_confusion_matrix_matches_sklearn_and_is_true_by_predicted():
    probs, y = random_probs(500)
    m = compute_metrics(probs, y)
    pred = probs.argmax(1)
    np.testing.assert_array_equal(
        m["confusion_matrix"], confusion_matrix(y, pred, labels=range(10))
    )
    counts = np.zeros((10, 10), int)
    for t, p in zip(y, pred, strict=True):
        counts[t, p] += 1  # row = true class, column = predicted class
    np.testing.assert_array_equal(m["confusion_matrix"], counts)


def test_orientation_on_a_hand_made_case():
    y = np.array([0, 0, 0, 1])
    probs = np.eye(10, dtype="float32")[[1, 1, 0, 1]]  # two T-shirts predicted as Trouser
    m = compute_metrics(probs, y)
    assert m["confusion_matrix"][0][1] == 2 and m["confusion_matrix"][1][0] == 0
    assert m["most_confused"] == [[0, 1, 2]]
    assert m["per_class"]["Trouser"]["precision"] == 1 / 3
    assert m["per_class"]["T-shirt/top"]["recall"] == 1 / 3


def test_metrics_match_keras_and_sklearn():
    probs, y = random_probs(300, seed=1)
    m = compute_metrics(probs, y)
    assert m["test_accuracy"] == (probs.argmax(1) == y).mean()
    keras_loss = keras.losses.CategoricalCrossentropy()(keras.utils.to_categorical(y, 10), probs)
    np.testing.assert_allclose(m["test_loss"], float(keras_loss), rtol=1e-5)
    ref = classification_report(
        y, probs.argmax(1), labels=range(10), output_dict=True, zero_division=0
    )
    for i, name in enumerate(m["class_names"]):
        np.testing.assert_allclose(m["per_class"][name]["f1"], ref[str(i)]["f1-score"])
        assert m["per_class"][name]["support"] == ref[str(i)]["support"]


def test_most_confused_is_sorted_and_off_diagonal():
    cm = np.diag([50] * 10)
    cm[6, 0], cm[4, 2], cm[2, 4], cm[9, 7] = 30, 12, 40, 1
    assert most_confused(cm, k=3) == [(2, 4, 40), (6, 0, 30), (4, 2, 12)]
    assert most_confused(np.diag([5] * 10)) == []


class Lopsided:
    """A 'model' whose output depends on which half of the image is brighter: the left or
    right half (axis 2; mirroring changes the answer) or the top or bottom half (axis 1;
    mirroring doesn't, vertical shifts can)."""

    def __init__(self, axis: int = 2):
        self.axis = axis

    def __call__(self, x, training=False):
        x = np.moveaxis(np.asarray(x, dtype="float32"), self.axis, 1)
        first = x[:, :14].mean(axis=(1, 2, 3))
        second = x[:, 14:].mean(axis=(1, 2, 3))
        p = np.full((len(x), 10), 0.01, dtype="float32")
        p[:, 0] += (first > second) * 0.9
        p[:, 1] += (first <= second) * 0.9
        return p


def test_tta_is_the_average_of_the_two_passes():
    from fashion_cnn.evaluate import predict_proba

    x = np.random.default_rng(0).integers(0, 256, (50, 28, 28, 1)).astype("uint8")
    model = Lopsided()
    plain = predict_proba(model, x, batch_size=16)
    mirrored = predict_proba(model, x[:, :, ::-1], batch_size=16)
    both = predict_proba(model, x, batch_size=16, tta=True)
    np.testing.assert_allclose(both, (plain + mirrored) / 2, rtol=1e-6)
    assert not np.allclose(both, plain)


def test_flip_shift_tta_is_the_average_of_its_18_views():
    from fashion_cnn.evaluate import predict_proba
    from fashion_cnn.tta import shift_images

    x = np.random.default_rng(1).integers(0, 100, (40, 28, 28, 1)).astype("float32")
    x[:, 13:15] = 255  # a bright band across the middle: 1-pixel shifts move it up or down
    model = Lopsided(axis=1)  # top vs bottom
    views = [
        predict_proba(model, shift_images(np.ascontiguousarray(v), dy, dx), batch_size=16)
        for v in (x, x[:, :, ::-1])
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
    ]
    got = predict_proba(model, x, batch_size=16, tta="flip-shift")
    np.testing.assert_allclose(got, np.mean(views, axis=0), rtol=1e-6)
    assert not np.allclose(got, predict_proba(model, x, batch_size=16, tta="flip"))
