"""Training batches: each epoch in its own seeded order, augmented per batch in tf.data.

The order of epoch e depends only on (seed, e) and the augmentation of global batch i only
on (seed, i), so a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from fashion_cnn.augment import SIZE, augment_batch, cutmix
from fashion_cnn.config import TrainConfig
from fashion_cnn.data import NUM_CLASSES

FLIP_STREAM = 0xF11B  # random stream of alternating flips' first-epoch bits (epochs use 0..)
MIX_STREAM = 0xC07  # folded into a batch's seed pair for CutMix (augment uses the pair)


def epoch_batches(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    seed: int,
    first_epoch: int,
    epochs: int,
    augment: Callable[..., tf.Tensor] | None = None,
    alternate_flip: bool = False,
    mix: Callable[..., tuple[tf.Tensor, tf.Tensor]] | None = None,
    sizes: list[int] | None = None,
) -> tuple[tf.data.Dataset, int]:
    """Batches for epochs `first_epoch`..`epochs`-1, each epoch in its own seeded order.

    The order of epoch e depends only on (seed, e) and the augmentation of global batch i
    only on (seed, i), so a resumed run sees exactly the batches an uninterrupted one would.

    Args:
        augment: optional `f(images, seed_pair) -> images` applied per batch.
        alternate_flip: pass `augment` a `flips=` mask: image j is mirrored in epoch e iff
            a fixed random bit of j (drawn from `seed`) differs from e's parity.
        mix: optional `f(images, labels, seed_pair) -> (images, labels)` applied per batch
            after `augment`, with its own random stream (e.g. CutMix).
        sizes: optional image side of every epoch, 0 to `epochs`-1 (`epoch_sizes`): the
            batches of an epoch whose side is under 28 are downscaled to it (by area
            averaging) after augmentation and mixing.

    Returns:
        (dataset of (float32 images, one-hot or mixed labels), steps per epoch). With
        `sizes` below 28, the images' height and width are unknown to the dataset's spec.
    """
    n = len(x)
    steps = math.ceil(n / batch_size)
    perms = np.stack(
        [np.random.default_rng([seed, e]).permutation(n) for e in range(first_epoch, epochs)]
    )
    xs, ys = tf.constant(x), tf.constant(y)
    resize = sizes is not None and min(sizes[first_epoch:epochs], default=SIZE) < SIZE
    if resize:
        side_of_epoch = tf.constant(list(sizes[:epochs]), tf.int32)
    if alternate_flip:
        first_flips = tf.constant(np.random.default_rng([seed, FLIP_STREAM]).random(n) < 0.5)

    def gather(i, idx):
        images = tf.cast(tf.gather(xs, idx), tf.float32)
        pair = tf.stack([tf.cast(seed, tf.int64), i])
        if augment is not None:
            if alternate_flip:
                odd_epoch = tf.equal((i // steps) % 2, 1)
                flips = tf.not_equal(tf.gather(first_flips, idx), odd_epoch)
                images = augment(images, pair, flips=flips)
            else:
                images = augment(images, pair)
        labels = tf.one_hot(tf.gather(ys, idx), NUM_CLASSES)
        if mix is not None:
            images, labels = mix(
                images, labels, tf.random.experimental.stateless_fold_in(pair, MIX_STREAM)
            )
        if resize:
            side = tf.gather(side_of_epoch, i // steps)
            images = tf.cond(
                side < SIZE,
                lambda: tf.image.resize(images, tf.stack([side, side]), method="area"),
                lambda: images,
            )
        return images, labels

    ds = tf.data.Dataset.from_tensor_slices(perms).flat_map(
        lambda p: tf.data.Dataset.from_tensor_slices(p).batch(batch_size)
    )
    ds = ds.enumerate(start=first_epoch * steps)
    return without_autotune(ds.map(gather).prefetch(2)), steps


def epoch_sizes(epochs: int, low_res: int, until: float) -> list[int]:
    """The image side of each epoch under progressive resizing.

    Epoch 0 trains at `low_res`; the side then grows linearly, rounded down to `low_res`
    plus a multiple of 4 pixels, and reaches 28 at epoch `round(until * epochs)`, or at the
    last epoch if that is later: the last epoch always trains at full size.

    Args:
        epochs: the run's epochs.
        low_res: the first epoch's side (28 = no resizing).
        until: share of the epochs after which every epoch is at 28.

    Returns:
        One side per epoch, never decreasing, the last ones 28.
    """
    ramp = min(round(until * epochs), epochs - 1)
    sizes = []
    for e in range(epochs):
        if e >= ramp or low_res >= SIZE:
            sizes.append(SIZE)
        else:
            grown = (SIZE - low_res) * e / ramp
            sizes.append(low_res + 4 * math.floor(grown / 4))
    return sizes


def without_autotune(ds: tf.data.Dataset) -> tf.data.Dataset:
    """`ds` without tf.data's autotuning, which this fixed pipeline has no use for.

    With autotuning on, every iterator starts a model thread that sleeps up to a minute
    between optimizations, and deleting the iterator (at the end of `fit`) waits for that
    sleep to end: measured here as 5-40 s of idle time added at random to a training run.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def make_augment(config: TrainConfig) -> Callable[..., tf.Tensor] | None:
    """The config's augmentation as a batch function, or None when it has none."""
    if not (config.translate or config.flip or config.erase):
        return None
    return functools.partial(
        augment_batch, max_shift=config.translate, flip=config.flip, erase=config.erase
    )


def make_mix(config: TrainConfig) -> Callable[..., tuple[tf.Tensor, tf.Tensor]] | None:
    """The config's label-mixing augmentation (CutMix) as a batch function, or None."""
    if not config.cutmix:
        return None
    return functools.partial(cutmix, probability=config.cutmix)
