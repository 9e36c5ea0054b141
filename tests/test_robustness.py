import numpy as np
import pytest

from fashion_cnn.errors import ConfigError
from fashion_cnn.images import looks_like_fashion_mnist, preprocess
from fashion_cnn.robustness import SHIFTS, evaluate_robustness, render_photos, render_shift


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
    seen, refused = render_shift(name, garment()[None])
    back = seen[0, ..., 0]
    assert not refused.any()
    assert looks_like_fashion_mnist(back)  # dark background again
    assert np.abs(back.astype(int) - garment().astype(int)).mean() < 40


def test_rendering_is_seeded():
    a, _ = render_shift("noisy", np.stack([garment()] * 2), seed=1)
    b, _ = render_shift("noisy", np.stack([garment()] * 2), seed=1)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ConfigError, match=r"`seed`: expected an integer in \[0, 4294967295\]"):
        render_shift("noisy", np.stack([garment()]), seed=-1)


def test_threads_render_the_photos_the_report_shows():
    # each image has its own generator: the result does not depend on the thread count
    images = np.stack([garment(), garment()[::-1], garment()[:, ::-1]])
    one, _ = render_shift("rotated_10deg", images, seed=3, workers=1)
    assert one.shape == (3, 28, 28, 1) and one.dtype == np.uint8
    np.testing.assert_array_equal(render_shift("rotated_10deg", images, 3, workers=3)[0], one)
    shown = render_photos("rotated_10deg", images, seed=3)  # robustness.html's samples
    np.testing.assert_array_equal(np.stack([preprocess(p) for p in shown])[..., None], one)
    # and the first images' photos do not change when more images are rendered
    np.testing.assert_array_equal(render_shift("rotated_10deg", images[:1], seed=3)[0], one[:1])
    assert not np.array_equal(render_shift("rotated_10deg", images, seed=4)[0], one)


def test_unknown_shift():
    with pytest.raises(ConfigError, match=r"`name`: expected one of \['photo_white', "):
        render_shift("sepia", np.stack([garment()]))


def test_evaluate_robustness_reports_every_shift(caplog):
    caplog.set_level("INFO", logger="fashion_cnn.robustness")

    class ByBrightness:
        def __call__(self, x, training=False):
            p = np.full((len(x), 10), 0.01, "float32")
            p[np.arange(len(x)), (np.asarray(x).mean(axis=(1, 2, 3)) > 60).astype(int)] = 0.91
            return p

    # a blank image, classified right on its own, is refused as a photo: a wrong answer
    x = np.stack([garment(), np.zeros((28, 28), np.uint8)])[..., None]
    result = evaluate_robustness(ByBrightness(), x, np.array([1, 0]))
    assert result["clean_accuracy"] == 1.0
    assert set(result["shifts"]) == set(SHIFTS)
    for r in result["shifts"].values():
        assert r == {"accuracy": 0.5, "relative": 0.5, "refused": 1}
    progress = [r.getMessage() for r in caplog.records if r.name == "fashion_cnn.robustness"]
    assert len(progress) == len(SHIFTS)  # minutes of work: each shift says when it is done
    assert progress[0].startswith("robustness: 1/9 shifts done (photo_white: ")


def _photo_by_formula(x, rng, background=None, item_colour=None, off_centre=False):
    """`_photo` written plainly over full-size float arrays, as it first was."""
    from PIL import Image

    size = int(rng.integers(200, 801))
    item = Image.fromarray(x).resize((size, size), Image.Resampling.BICUBIC)
    alpha = np.asarray(item, np.float32)[..., None] / 255.0
    m = rng.uniform(0.1, 0.3, size=4) * size
    if off_centre:
        m[rng.integers(0, 2)] *= 4
        m[2 + rng.integers(0, 2)] *= 4
    left, right, top, bottom = (int(v) for v in m)
    h, w = size + top + bottom, size + left + right
    rows = np.full((1, 1, 3), 255.0, np.float32) if background is None else background(h)
    bg = np.broadcast_to(rows, (h, w, 3)).copy()
    colour = np.zeros(3, np.float32) if item_colour is None else item_colour
    region = bg[top : top + size, left : left + size]
    bg[top : top + size, left : left + size] = region * (1 - alpha) + colour * alpha
    return np.clip(bg, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("case", range(6))
def test_photos_are_the_plain_formula_s(case):
    """The blocked, channel-by-channel composition gives the formula's bytes exactly."""
    from fashion_cnn.robustness import _photo, _solid

    draw = np.random.default_rng(case)
    x = (draw.random((28, 28)) * 255).astype(np.uint8)
    a, b = draw.uniform(170, 255, 3), draw.uniform(170, 255, 3)

    def gradient(h):
        t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
        return (a * (1 - t) + b * t).astype(np.float32)

    kwargs = [
        {},
        {"background": _solid(draw.uniform(120, 255, 3))},
        {"background": gradient},
        {"item_colour": draw.uniform(0, 110, 3).astype(np.float32)},
        {"off_centre": True},
        {"background": gradient, "item_colour": np.full(3, 300, np.float32)},  # clipped
    ][case]
    got = np.asarray(_photo(x, np.random.default_rng(100 + case), **kwargs))
    expected = _photo_by_formula(x, np.random.default_rng(100 + case), **kwargs)
    np.testing.assert_array_equal(got, expected)
