import numpy as np
import pytest
import tensorflow as tf

from fashion_cnn.augment import augment_batch, cutmix, flip_translate, random_erase


def batch(n=16, seed=0):
    return tf.constant(
        np.random.default_rng(seed).integers(0, 256, (n, 28, 28, 1)).astype("float32")
    )


def test_keeps_shape_and_dtype():
    x = batch()
    out = augment_batch(x, tf.constant([1, 2], tf.int64), max_shift=3, flip=True, erase=0.5)
    assert out.shape == x.shape and out.dtype == x.dtype


def test_flip_is_horizontal_only():
    x = batch(64)
    out = flip_translate(x, tf.constant([0, 7], tf.int64), max_shift=0, flip=True).numpy()
    x = x.numpy()
    flipped = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, x, strict=True)]
    same = [np.array_equal(o, i) for o, i in zip(out, x, strict=True)]
    assert all(f or s for f, s in zip(flipped, same, strict=True))
    assert 10 < sum(flipped) < 54  # about half
    assert not any(np.array_equal(o, i[::-1, :]) for o, i in zip(out, x, strict=True))


def test_translation_is_an_integer_shift_with_zero_fill():
    x = batch(32)
    k = 3
    out = flip_translate(x, tf.constant([5, 5], tf.int64), max_shift=k, flip=False).numpy()
    x = x.numpy()
    for o, i in zip(out, x, strict=True):
        padded = np.pad(i[..., 0], k)
        matches = [
            (dy, dx)
            for dy in range(-k, k + 1)
            for dx in range(-k, k + 1)
            if np.array_equal(o[..., 0], padded[k + dy : k + dy + 28, k + dx : k + dx + 28])
        ]
        assert matches, "each output is the input shifted by at most k pixels"


def test_erase_sets_a_rectangle_to_zero():
    x = tf.fill([8, 28, 28, 1], 200.0)
    out = random_erase(x, tf.constant([3, 4], tf.int64), probability=1.0).numpy()[..., 0]
    for img in out:
        ys, xs = np.nonzero(img == 0)
        assert len(ys) > 0
        assert len(ys) == (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)  # a rectangle
    assert np.array_equal(
        random_erase(x, tf.constant([3, 4], tf.int64), probability=0.0).numpy(), x.numpy()
    )


@pytest.mark.parametrize("fn", [lambda x, s: augment_batch(x, s, 2, True, 0.5)])
def test_same_seed_same_result(fn):
    x = batch()
    a = fn(x, tf.constant([9, 1], tf.int64)).numpy()
    b = fn(x, tf.constant([9, 1], tf.int64)).numpy()
    c = fn(x, tf.constant([9, 2], tf.int64)).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_flips_mask_chooses_the_mirrored_images():
    x = batch(8)
    mask = tf.constant([True, False, False, True, True, False, True, False])
    out = flip_translate(x, tf.constant([0, 1], tf.int64), 0, flip=True, flips=mask).numpy()
    for o, i, m in zip(out, x.numpy(), mask.numpy(), strict=True):
        np.testing.assert_array_equal(o, i[:, ::-1] if m else i)


def test_cutmix_pastes_a_rectangle_of_the_previous_image_and_mixes_labels_by_its_area():
    # Image i is filled with the value i + 1, so every pixel shows which image it came from.
    n = 32
    x = tf.constant(
        np.arange(1, n + 1, dtype="float32")[:, None, None, None] * np.ones((28, 28, 1))
    )
    y = tf.one_hot(np.arange(n) % 10, 10)
    out, labels = cutmix(x, y, tf.constant([4, 2], tf.int64), probability=1.0)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert labels.shape == y.shape and labels.dtype == y.dtype
    out, labels, y = out.numpy()[..., 0], labels.numpy(), y.numpy()
    np.testing.assert_allclose(labels.sum(1), 1.0, rtol=1e-6)
    pasted_any = 0
    for i, img in enumerate(out):
        partner = (i - 1) % n
        assert set(np.unique(img)) <= {i + 1, partner + 1}
        ys, xs = np.nonzero(img == partner + 1)
        share = len(ys) / 28**2
        if len(ys):
            pasted_any += 1
            assert len(ys) == (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)  # a rectangle
        expected = (1 - share) * y[i] + share * y[partner]
        np.testing.assert_allclose(labels[i], expected, atol=1e-6)
    assert pasted_any > n // 2


def test_cutmix_probability_zero_changes_nothing_and_the_seed_decides():
    x, y = batch(16), tf.one_hot(np.arange(16) % 10, 10)
    same_x, same_y = cutmix(x, y, tf.constant([1, 1], tf.int64), probability=0.0)
    np.testing.assert_array_equal(same_x.numpy(), x.numpy())
    np.testing.assert_array_equal(same_y.numpy(), y.numpy())
    a = cutmix(x, y, tf.constant([1, 1], tf.int64), probability=0.5)
    b = cutmix(x, y, tf.constant([1, 1], tf.int64), probability=0.5)
    c = cutmix(x, y, tf.constant([1, 2], tf.int64), probability=0.5)
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())
    assert not np.array_equal(a[0].numpy(), c[0].numpy())
    mixed = (a[1].numpy().max(1) < 1).sum()
    assert 2 <= mixed <= 14  # about half of 16 (a few rectangles may be clipped to nothing)
