"""Image files -> 28x28 uint8 arrays the model takes (grayscale, resized)."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from fashion_cnn.errors import FashionCnnError


class ImageError(FashionCnnError):
    """A file could not be read as an image."""


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Reads any image Pillow opens and returns it as (28, 28) uint8 grayscale.

    Raises:
        ImageError: the file is missing, empty, not an image or truncated.
    """
    try:
        with Image.open(path) as im:
            im.load()
            gray = im.convert("L")
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a folder, expected an image file") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image Pillow can read (PNG, JPEG, ...)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{path}: unreadable or truncated image ({e})") from None
    if gray.size != (28, 28):
        gray = gray.resize((28, 28), Image.Resampling.LANCZOS)
    return np.asarray(gray, dtype=np.uint8)
