import numpy as np
import pytest

from fashion_cnn.errors import ConfigError
from fashion_cnn.images import looks_like_fashion_mnist
from fashion_cnn.robustness import SHIFTS, evaluate_robustness, render_shift


def garment():
    x = np.zeros((28, 28), np.uint8)
    x[:, 7:21] = 200
    x[3:10, 12:16] = 60
    return x


@pytest.mark.parametrize("name", list(SHIFTS))
def test_each_shift_renders_a_photo_and_converts_back(name):
    rng = np.random.default_rng(0)
    photo = SHIFTS[name](garment(), rng)
    w, h = photo.size
    assert photo.mode == "RGB" and min(w, h) >= 200  # a photo, not a thumbnail
    corners = np.asarray(photo.convert("L"))[[0, 0, -1, -1], [0, -1, 0, -1]]
    assert corners.min() > 100  # a light background, unlike the dataset
    back = render_shift(name, garment()[None])[0, ..., 0]
    assert looks_like_fashion_mnist(back)  # dark background again
    assert np.abs(back.astype(int) - garment().astype(int)).mean() < 40


def test_rendering_is_seeded():
    a = render_shift("noisy", np.stack([garment()] * 2), seed=1)
    b = render_shift("noisy", np.stack([garment()] * 2), seed=1)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ConfigError, match=r"`seed`: expected an integer in \[0, 4294967295\]"):
        render_shift("noisy", np.stack([garment()]), seed=-1)


def test_evaluate_robustness_reports_every_shift():
    class ByBrightness:
        def __call__(self, x, training=False):
            p = np.full((len(x), 10), 0.01, "float32")
            p[np.arange(len(x)), (np.asarray(x).mean(axis=(1, 2, 3)) > 60).astype(int)] = 0.91
            return p

    x = np.stack([garment(), np.zeros((28, 28), np.uint8)])[..., None]
    result = evaluate_robustness(ByBrightness(), x, np.array([1, 0]))
    assert result["clean_accuracy"] == 1.0
    assert set(result["shifts"]) == set(SHIFTS)
    for r in result["shifts"].values():
        assert 0 <= r["accuracy"] <= 1 and r["relative"] == r["accuracy"]
