"""Batch augmentation for 28x28 clothing images, vectorized and stateless.

Every random draw takes an explicit seed pair, so the augmentation of batch `i` of a run
depends only on (run seed, i): a resumed run augments exactly as an uninterrupted one.
Flips are horizontal only (clothes are never upside down in Fashion-MNIST).
"""

from __future__ import annotations

import tensorflow as tf

SIZE = 28


def flip_translate(
    images: tf.Tensor,
    seed: tf.Tensor,
    max_shift: int,
    flip: bool,
    flips: tf.Tensor | None = None,
) -> tf.Tensor:
    """Random horizontal flip and integer translation, one draw per image.

    Pixels shifted in from outside are 0 (the dataset's background).

    Args:
        images: (B, 28, 28, 1) float32.
        seed: int32/int64 tensor of shape (2,).
        max_shift: largest shift in pixels, in each direction.
        flip: whether to flip half of the images left-right.
        flips: optional (B,) bool tensor: which images to flip, instead of a random half
            (used by alternating flips; only read when `flip` is true).

    Returns:
        Tensor of the same shape and dtype.
    """
    b = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(seed, 3)
    dx = tf.random.stateless_uniform([b], seeds[0], -max_shift, max_shift + 1, dtype=tf.int32)
    dy = tf.random.stateless_uniform([b], seeds[1], -max_shift, max_shift + 1, dtype=tf.int32)
    if flip and flips is not None:
        sign = tf.where(flips, -1.0, 1.0)
    elif flip:
        sign = tf.where(tf.random.stateless_uniform([b], seeds[2]) < 0.5, -1.0, 1.0)
    else:
        sign = tf.ones([b])
    dx, dy = tf.cast(dx, tf.float32), tf.cast(dy, tf.float32)
    # Output pixel (x, y) reads input (sign*x + offset + dx, y + dy).
    offset = tf.where(sign < 0, float(SIZE - 1), 0.0)
    zeros, ones = tf.zeros([b]), tf.ones([b])
    transforms = tf.stack([sign, zeros, offset + dx, zeros, ones, dy, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.constant([SIZE, SIZE]),
        fill_value=0.0,
        interpolation="NEAREST",
        fill_mode="CONSTANT",
    )


def random_erase(
    images: tf.Tensor, seed: tf.Tensor, probability: float, max_side: int = 14
) -> tf.Tensor:
    """Random erasing: with `probability`, a random rectangle of each image is set to 0.

    Args:
        images: (B, 28, 28, 1) float32.
        seed: tensor of shape (2,).
        probability: share of images that get a rectangle erased.
        max_side: largest side of the rectangle in pixels (smallest is 4).
    """
    b = tf.shape(images)[0]
    s = tf.random.experimental.stateless_split(seed, 5)
    h = tf.random.stateless_uniform([b, 1, 1], s[0], 4, max_side + 1, dtype=tf.int32)
    w = tf.random.stateless_uniform([b, 1, 1], s[1], 4, max_side + 1, dtype=tf.int32)
    y0 = tf.random.stateless_uniform([b, 1, 1], s[2], 0, SIZE, dtype=tf.int32) - h // 2
    x0 = tf.random.stateless_uniform([b, 1, 1], s[3], 0, SIZE, dtype=tf.int32) - w // 2
    apply = tf.random.stateless_uniform([b, 1, 1], s[4]) < probability
    yy = tf.range(SIZE)[None, :, None]
    xx = tf.range(SIZE)[None, None, :]
    inside = (yy >= y0) & (yy < y0 + h) & (xx >= x0) & (xx < x0 + w) & apply
    return tf.where(inside[..., None], 0.0, images)


def augment_batch(
    images: tf.Tensor,
    seed: tf.Tensor,
    max_shift: int = 0,
    flip: bool = False,
    erase: float = 0.0,
    flips: tf.Tensor | None = None,
) -> tf.Tensor:
    """Applies the configured augmentations to a batch (a no-op when all are off).

    `flips` (a (B,) bool tensor) chooses the images to mirror instead of a random draw.
    """
    s = tf.random.experimental.stateless_split(seed, 2)
    if max_shift or flip:
        images = flip_translate(images, s[0], max_shift, flip, flips)
    if erase > 0:
        images = random_erase(images, s[1], erase)
    return images


def cutmix(
    images: tf.Tensor, labels: tf.Tensor, seed: tf.Tensor, probability: float
) -> tuple[tf.Tensor, tf.Tensor]:
    """CutMix (Yun et al., 2019), one draw per image: with `probability`, a rectangle of
    image i is replaced by the same rectangle of image i - 1 of the batch (the batch is in
    random order), and i's one-hot label becomes the mix of the two labels in proportion
    to the pixels each image contributes.

    The rectangle's area is a uniform share of the image (its side is 28 * sqrt(share),
    centred at a uniform pixel and clipped at the border, so clipped rectangles paste
    less); the labels use the area actually pasted.

    Args:
        images: (B, 28, 28, 1) float32.
        labels: (B, classes) float32 one-hot (or already soft) labels.
        seed: tensor of shape (2,).
        probability: share of images that get a rectangle of another image.

    Returns:
        (images, labels) of the same shapes and dtypes.
    """
    b = tf.shape(images)[0]
    s = tf.random.experimental.stateless_split(seed, 4)
    side = SIZE * tf.sqrt(tf.random.stateless_uniform([b, 1, 1], s[0]))
    half = tf.cast(tf.round(side / 2), tf.int32)
    cy = tf.random.stateless_uniform([b, 1, 1], s[1], 0, SIZE, dtype=tf.int32)
    cx = tf.random.stateless_uniform([b, 1, 1], s[2], 0, SIZE, dtype=tf.int32)
    apply = tf.random.stateless_uniform([b, 1, 1], s[3]) < probability
    yy = tf.range(SIZE)[None, :, None]
    xx = tf.range(SIZE)[None, None, :]
    inside = (yy >= cy - half) & (yy < cy + half) & (xx >= cx - half) & (xx < cx + half)
    inside = inside & apply
    share = tf.reduce_mean(tf.cast(inside, labels.dtype), axis=[1, 2])[:, None]
    mixed = tf.where(inside[..., None], tf.roll(images, 1, axis=0), images)
    return mixed, (1.0 - share) * labels + share * tf.roll(labels, 1, axis=0)
