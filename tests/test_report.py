import re

import numpy as np
from matplotlib.figure import Figure

from fashion_cnn.data import CLASS_NAMES
from fashion_cnn.evaluate import compute_metrics
from fashion_cnn.report import (
    confused_gallery,
    confusion_heatmap,
    prediction_grid,
    render_html,
    training_curves,
)


def sample():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 60)
    pred = y.copy()
    pred[:15] = (y[:15] + 1) % 10
    images = rng.integers(0, 256, (60, 28, 28, 1)).astype(np.uint8)
    probs = np.eye(10, dtype="float32")[pred]
    return images, y, pred, compute_metrics(probs, y)


def test_heatmap_is_labelled_true_by_predicted_with_counts():
    _, y, pred, m = sample()
    fig = confusion_heatmap(np.array(m["confusion_matrix"]))
    ax = fig.axes[0]
    assert ax.get_xlabel() == "predicted" and ax.get_ylabel() == "true"
    assert [t.get_text() for t in ax.get_xticklabels()] == list(CLASS_NAMES)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(CLASS_NAMES)
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 100 and all(re.fullmatch(r"\d+", t) for t in texts)
    assert sum(int(t) for t in texts) == len(y)
    # cell (row i, column j) is drawn at (j + .5, i + .5): row = true, column = predicted
    cm = np.array(m["confusion_matrix"])
    t, p, c = m["most_confused"][0]
    cell = next(txt for txt in ax.texts if txt.get_position() == (p + 0.5, t + 0.5))
    assert int(cell.get_text()) == cm[t, p] == c


def test_grid_marks_mistakes():
    images, y, pred, _ = sample()
    fig = prediction_grid(images, y, pred)
    assert isinstance(fig, Figure) and len(fig.axes) == 25
    titles = [ax.get_title() for ax in fig.axes]
    wrong = [i for i in range(25) if pred[i] != y[i]]
    assert all("(true: " in titles[i] for i in wrong)
    assert all("(true: " not in titles[i] for i in range(25) if i not in wrong)


def test_other_figures_build():
    images, y, pred, m = sample()
    hist = {
        "loss": [1.0, 0.5],
        "val_loss": [1.1, 0.7],
        "accuracy": [0.5, 0.8],
        "val_accuracy": [0.4, 0.7],
    }
    assert len(training_curves(hist).axes) == 2
    assert len(confused_gallery(images, y, pred, m["most_confused"][:3]).axes) == 3 * 8


def test_html_is_self_contained_and_complete():
    images, y, pred, m = sample()
    page = render_html(m, {"loss": [1.0]}, {"recipe": "seed"}, images, y, pred)
    assert page.count("data:image/png;base64,") == 4
    assert not re.search(r"(src|href)=[\"']https?:", page)
    for part in ("Training curves", "Confusion matrix", "Classification report", "Most confused"):
        assert part in page
    assert f"{m['test_accuracy']:.2%}" in page


def test_robustness_strip_shows_photo_thumbnails_beside_the_model_inputs():
    from fashion_cnn.report import THUMBNAIL, robustness_strip
    from fashion_cnn.robustness import SHIFTS

    images = np.zeros((2, 28, 28, 1), np.uint8)
    images[:, 5:23, 8:20] = 200  # a light item on black, as in Fashion-MNIST
    fig = robustness_strip(images)
    assert isinstance(fig, Figure) and len(fig.axes) == len(SHIFTS) * 4
    shown = [ax.get_images()[0].get_array() for ax in fig.axes]
    photos, inputs = shown[0::2], shown[1::2]  # columns: photo, what the model saw, ...
    assert all(p.ndim == 3 and max(p.shape[:2]) == THUMBNAIL for p in photos)
    assert all(s.shape == (28, 28) for s in inputs)
    assert [fig.axes[4 * row].get_ylabel() for row in range(len(SHIFTS))] == [
        name.replace("_", "\n") for name in SHIFTS
    ]
