"""Robustness: the test set rendered as photos, classified through the full photo path.

Each test image is turned into a product-photo-like picture (a dark item on a light
background, upscaled to 200-800 px, with margins) and then put through `images.preprocess`
and the model, exactly as a user's photo would be. Every shift is one way real photos differ
from the dataset; its accuracy is reported next to the clean accuracy.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image

from fashion_cnn.config import check_seed
from fashion_cnn.evaluate import predict_proba
from fashion_cnn.images import preprocess

Render = Callable[[np.ndarray, np.random.Generator], Image.Image]


def _photo(
    x: np.ndarray,
    rng: np.random.Generator,
    background: Callable[[int, int], np.ndarray] | None = None,
    item_colour: np.ndarray | None = None,
    margin: tuple[float, float] = (0.1, 0.3),
    off_centre: bool = False,
) -> Image.Image:
    """A dark item on a background: `bg * (1 - a) + item_colour * a` with a = pixels / 255."""
    size = int(rng.integers(200, 801))
    alpha = (
        np.asarray(
            Image.fromarray(x.reshape(28, 28)).resize((size, size), Image.Resampling.BICUBIC),
            dtype=np.float32,
        )[..., None]
        / 255.0
    )
    m = rng.uniform(*margin, size=4) * size
    if off_centre:
        m[rng.integers(0, 2)] *= 4  # much more room on the left or on the right
        m[2 + rng.integers(0, 2)] *= 4  # and above or below
    left, right, top, bottom = (int(v) for v in m)
    h, w = size + top + bottom, size + left + right
    bg = background(h, w) if background else np.full((h, w, 3), 255.0, np.float32)
    colour = np.zeros(3, np.float32) if item_colour is None else item_colour
    region = bg[top : top + size, left : left + size]
    bg[top : top + size, left : left + size] = region * (1 - alpha) + colour * alpha
    return Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8), "RGB")


def _solid(colour) -> Callable[[int, int], np.ndarray]:
    return lambda h, w: np.broadcast_to(np.asarray(colour, np.float32), (h, w, 3)).copy()


def _white(x, rng):
    return _photo(x, rng)


def _light_grey(x, rng):
    return _photo(x, rng, _solid([rng.uniform(200, 235)] * 3))


def _coloured(x, rng):
    return _photo(x, rng, _solid(rng.uniform(120, 255, 3)))


def _gradient(x, rng):
    a, b = rng.uniform(170, 255, 3), rng.uniform(170, 255, 3)

    def bg(h, w):
        t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
        return np.broadcast_to(a * (1 - t) + b * t, (h, w, 3)).astype(np.float32).copy()

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
    arr = arr + rng.normal(0, rng.uniform(5, 15), arr.shape)
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


def render_shift(name: str, images: np.ndarray, seed: int = 0) -> np.ndarray:
    """Renders `images` (N, 28, 28[, 1]) under shift `name` and preprocesses them back.

    Returns:
        (N, 28, 28, 1) uint8: what the model sees for each rendered photo.

    Raises:
        ConfigError: if `seed` is not an integer in [0, 2**32 - 1].
    """
    rng = np.random.default_rng([check_seed(seed), list(SHIFTS).index(name)])
    render = SHIFTS[name]
    return np.stack([preprocess(render(x, rng)) for x in images])[..., None]


def evaluate_robustness(model, images: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict:
    """Accuracy on the clean images and under every shift.

    Returns:
        {"n", "clean_accuracy", "shifts": {name: {"accuracy", "relative"}}, "mean_relative"}
        where relative = accuracy / clean accuracy.
    """
    labels = np.asarray(labels)
    clean = float((predict_proba(model, images).argmax(1) == labels).mean())
    shifts = {}
    for name in SHIFTS:
        seen = render_shift(name, images, seed)
        acc = float((predict_proba(model, seen).argmax(1) == labels).mean())
        shifts[name] = {"accuracy": acc, "relative": acc / clean if clean else 0.0}
    mean_acc = float(np.mean([s["accuracy"] for s in shifts.values()]))
    return {
        "n": int(len(labels)),
        "seed": seed,
        "clean_accuracy": clean,
        "shifts": shifts,
        "mean_shifted_accuracy": mean_acc,
        "mean_relative": mean_acc / clean if clean else 0.0,
    }
