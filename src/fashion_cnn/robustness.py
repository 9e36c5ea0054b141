"""Robustness: the test set rendered as photos, classified through the full photo path.

Each test image is turned into a product-photo-like picture (a dark item on a light
background, upscaled to 200-800 px, with margins) and then put through `images.preprocess`
and the model, exactly as a user's photo would be. Every shift is one way real photos differ
from the dataset; its accuracy is reported next to the clean accuracy.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from fashion_cnn.config import check_seed
from fashion_cnn.errors import ConfigError
from fashion_cnn.evaluate import predict_proba
from fashion_cnn.hardware import usable_cores
from fashion_cnn.images import ROW_BLOCK, SIZE, ImageError, preprocess

log = logging.getLogger(__name__)

Render = Callable[[np.ndarray, np.random.Generator], Image.Image]


WHITE = np.full((1, 1, 3), 255.0, np.float32)


def _photo(
    x: np.ndarray,
    rng: np.random.Generator,
    background: Callable[[int], np.ndarray] | None = None,
    item_colour: np.ndarray | None = None,
    margin: tuple[float, float] = (0.1, 0.3),
    off_centre: bool = False,
) -> Image.Image:
    """A dark item on a background: `bg * (1 - a) + item_colour * a` with a = pixels / 255.

    `background(h)` gives the background's colour row by row, float32 of shape (h, 1, 3), or
    (1, 1, 3) for one colour (default: white). The margins are filled by Pillow; only the
    item's square is blended, channel by channel (NumPy's loops over a trailing axis of 3
    are slow) and in blocks of rows that stay in cache (`ROW_BLOCK`).
    """
    size = int(rng.integers(200, 801))
    alpha = (
        np.asarray(
            Image.fromarray(x.reshape(28, 28)).resize((size, size), Image.Resampling.BICUBIC),
            dtype=np.float32,
        )
        / 255.0
    )
    m = rng.uniform(*margin, size=4) * size
    if off_centre:
        m[rng.integers(0, 2)] *= 4  # much more room on the left or on the right
        m[2 + rng.integers(0, 2)] *= 4  # and above or below
    left, right, top, bottom = (int(v) for v in m)
    h, w = size + top + bottom, size + left + right
    rows = background(h) if background else WHITE
    fill = np.clip(rows, 0, 255).astype(np.uint8)  # float -> uint8 truncates
    if len(fill) == 1:
        photo = Image.new("RGB", (w, h), tuple(int(v) for v in fill.ravel()))
    else:
        photo = Image.fromarray(fill).resize((w, h), Image.Resampling.NEAREST)
    colour = (np.zeros(3, np.float32) if item_colour is None else item_colour).reshape(3, 1, 1)
    bg_by_channel = rows.transpose(2, 0, 1)  # (3, h or 1, 1)
    item = np.empty((size, size, 3), np.uint8)
    for start in range(0, size, ROW_BLOCK):
        a = alpha[start : start + ROW_BLOCK]
        bg = (
            bg_by_channel[:, top + start : top + start + len(a)] if len(rows) > 1 else bg_by_channel
        )
        blended = bg * (1 - a) + colour * a
        item[start : start + len(a)] = np.clip(blended, 0, 255, out=blended).transpose(1, 2, 0)
    photo.paste(Image.fromarray(item, "RGB"), (left, top))
    return photo


def _solid(colour) -> Callable[[int], np.ndarray]:
    return lambda h: np.asarray(colour, np.float32).reshape(1, 1, 3)


def _white(x, rng):
    return _photo(x, rng)


def _light_grey(x, rng):
    return _photo(x, rng, _solid([rng.uniform(200, 235)] * 3))


def _coloured(x, rng):
    return _photo(x, rng, _solid(rng.uniform(120, 255, 3)))


def _gradient(x, rng):
    a, b = rng.uniform(170, 255, 3), rng.uniform(170, 255, 3)

    def bg(h):
        t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
        return (a * (1 - t) + b * t).astype(np.float32)

    return _photo(x, rng, bg)


def _tinted(x, rng):
    return _photo(x, rng, item_colour=rng.uniform(0, 110, 3).astype(np.float32))


def _off_centre(x, rng):
    return _photo(x, rng, off_centre=True)


def _rotated(x, rng):
    photo = _photo(x, rng)
    return photo.rotate(rng.uniform(-10, 10), Image.Resampling.BICUBIC, fillcolor=(255, 255, 255))


def _jpeg(x, rng):
    buf = io.BytesIO()
    _photo(x, rng).save(buf, "JPEG", quality=int(rng.integers(30, 71)))
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _noisy(x, rng):
    arr = np.asarray(_photo(x, rng), dtype=np.float32)
    arr += rng.uniform(5, 15) * rng.standard_normal(arr.shape, dtype=np.float32)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


SHIFTS: dict[str, Render] = {
    "photo_white": _white,
    "light_grey_background": _light_grey,
    "coloured_background": _coloured,
    "gradient_background": _gradient,
    "tinted_item": _tinted,
    "off_centre": _off_centre,
    "rotated_10deg": _rotated,
    "jpeg_q30_70": _jpeg,
    "noisy": _noisy,
}


def _generators(name: str, n: int, seed: int) -> list[np.random.Generator]:
    """One random generator per image, spawned from (seed, shift): an image's photo does
    not depend on the others, nor on how many threads render them."""
    if name not in SHIFTS:
        raise ConfigError(
            f"Invalid value for `name`: expected one of {list(SHIFTS)}, received {name!r}"
        )
    root = np.random.SeedSequence([check_seed(seed), list(SHIFTS).index(name)])
    return [np.random.default_rng(child) for child in root.spawn(n)]


def render_photos(name: str, images: np.ndarray, seed: int = 0) -> list[Image.Image]:
    """The photos of `images` (N, 28, 28[, 1]) under shift `name`, as `render_shift` makes
    them (the robustness report shows a few).

    Raises:
        ConfigError: an unknown shift, or a `seed` that is not an integer in [0, 2**32 - 1].
    """
    render = SHIFTS.get(name)
    return [
        render(x, rng) for x, rng in zip(images, _generators(name, len(images), seed), strict=True)
    ]


def model_input(photo: Image.Image) -> np.ndarray | None:
    """What the model sees of a rendered photo (`preprocess`'s (28, 28) uint8 image), or
    None where the photo path refuses it as it would a user's ("no item found")."""
    try:
        return preprocess(photo)
    except ImageError:
        return None


def render_shift(
    name: str, images: np.ndarray, seed: int = 0, workers: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Renders `images` (N, 28, 28[, 1]) under shift `name` and preprocesses them back.

    Args:
        name: a key of `SHIFTS`.
        images: the test images.
        seed: the rendering's seed.
        workers: threads that render (Pillow and NumPy release the GIL: 1.9x with 2 on 2
            cores); default: the cores this process may use. The result is the same for
            any number.

    Returns:
        (seen, refused): (N, 28, 28, 1) uint8, what the model sees for each rendered photo,
        and (N,) bool, the photos the photo path refused as it would a user's ("no item
        found"; their `seen` is black).

    Raises:
        ConfigError: an unknown shift, or a `seed` that is not an integer in [0, 2**32 - 1].
    """
    render = SHIFTS.get(name)
    jobs = list(zip(images, _generators(name, len(images), seed), strict=True))

    with ThreadPoolExecutor(workers or usable_cores()) as pool:
        seen = list(pool.map(lambda job: model_input(render(*job)), jobs))
    refused = np.array([s is None for s in seen], bool)
    black = np.zeros((SIZE, SIZE), np.uint8)
    return np.stack([black if s is None else s for s in seen])[..., None], refused


def evaluate_robustness(
    model, images: np.ndarray, labels: np.ndarray, seed: int = 0, workers: int | None = None
) -> dict:
    """Accuracy on the clean images and under every shift; logs each shift as it ends (the
    whole takes minutes for the default 2,000 images).

    Args:
        model: a Keras model (or any callable `predict_proba` takes).
        images, labels: the test images (N, 28, 28[, 1]) and their classes.
        seed: the rendering's seed.
        workers: rendering threads (`render_shift`).

    Returns:
        {"n", "seed", "clean_accuracy", "shifts": {name: {"accuracy", "relative",
        "refused"}}, "mean_shifted_accuracy", "mean_relative"} where relative = accuracy /
        clean accuracy, and a photo the photo path refuses ("no item found", `refused` of
        them) counts as a wrong answer.
    """
    labels = np.asarray(labels)
    clean = float((predict_proba(model, images).argmax(1) == labels).mean())
    shifts = {}
    start = time.monotonic()
    for i, name in enumerate(SHIFTS, start=1):
        seen, refused = render_shift(name, images, seed, workers)
        right = (predict_proba(model, seen).argmax(1) == labels) & ~refused
        acc = float(right.mean())
        shifts[name] = {
            "accuracy": acc,
            "relative": acc / clean if clean else 0.0,
            "refused": int(refused.sum()),
        }
        log.info(
            "robustness: %d/%d shifts done (%s: %.2f%%), %.0f s",
            i,
            len(SHIFTS),
            name,
            100 * acc,
            time.monotonic() - start,
        )
    mean_acc = float(np.mean([s["accuracy"] for s in shifts.values()]))
    return {
        "n": int(len(labels)),
        "seed": seed,
        "clean_accuracy": clean,
        "shifts": shifts,
        "mean_shifted_accuracy": mean_acc,
        "mean_relative": mean_acc / clean if clean else 0.0,
    }
