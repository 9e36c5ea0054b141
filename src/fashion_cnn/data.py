"""Find, verify and load Fashion-MNIST.

The four IDX files are looked for, in order, in:

1. the folder given explicitly (`--data-dir`) or by the `FASHION_MNIST_DIR` variable;
2. `/usr/share/datasets/fashion-mnist` (Debian/Ubuntu package `dataset-fashion-mnist`);
3. the Keras cache, `~/.keras/datasets/fashion-mnist` (or under `$KERAS_HOME`);
4. a download from the official mirror into the Keras cache, when allowed.

Every file is verified on its *decompressed* content (magic number, dimensions, item
count, label range and a SHA-256 of the IDX bytes), because mirrors recompress the gzip
files differently. A folder that exists but holds bad files is an error, never silently
skipped or overwritten.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import shutil
import struct
import tempfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from fashion_cnn.errors import DataError

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SHAPE = (28, 28)

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",  # Zalando's own
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",  # the one Keras uses
)
APT_HINT = "sudo apt-get install dataset-fashion-mnist"

_IMAGES_MAGIC = 2051
_LABELS_MAGIC = 2049


@dataclasses.dataclass(frozen=True)
class IdxFile:
    """What one of the four files must contain once decompressed."""

    name: str
    magic: int
    count: int
    sha256: str  # of the decompressed IDX bytes


FILES = {
    "train_images": IdxFile(
        "train-images-idx3-ubyte.gz",
        _IMAGES_MAGIC,
        60000,
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    ),
    "train_labels": IdxFile(
        "train-labels-idx1-ubyte.gz",
        _LABELS_MAGIC,
        60000,
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    ),
    "test_images": IdxFile(
        "t10k-images-idx3-ubyte.gz",
        _IMAGES_MAGIC,
        10000,
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    ),
    "test_labels": IdxFile(
        "t10k-labels-idx1-ubyte.gz",
        _LABELS_MAGIC,
        10000,
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ),
}


@dataclasses.dataclass
class Dataset:
    """Fashion-MNIST as uint8 arrays: images (N, 28, 28, 1) in 0-255, labels (N,) in 0-9."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str = ""

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> Dataset:
        """The first `n_train` training and `n_test` test images (all when None)."""
        return Dataset(
            self.x_train[:n_train],
            self.y_train[:n_train],
            self.x_test[:n_test],
            self.y_test[:n_test],
            self.source,
        )


def _fixes(path: Path) -> str:
    replace = "put it there" if not path.exists() else f"replace {path}"
    return (
        f"To fix it: {replace} with the original file, or install the Debian/Ubuntu package "
        f"(`{APT_HINT}`), or pass a folder with the four original files as `--data-dir` / "
        f"FASHION_MNIST_DIR. With internet access, `fashion-cnn data` downloads a verified "
        f"copy into the Keras cache ({keras_cache_dir()}) when no other copy is found."
    )


def read_idx(path: str | os.PathLike, spec: IdxFile, check_sha256: bool = True) -> np.ndarray:
    """Reads and verifies one gzip-compressed IDX file.

    Args:
        path: the `.gz` file.
        spec: what it must contain (magic number, item count, checksum).
        check_sha256: compare the decompressed bytes to `spec.sha256`.

    Returns:
        uint8 array: (count, 28, 28) for images, (count,) for labels.

    Raises:
        DataError: the file is missing, not gzip, truncated, or its content is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Fashion-MNIST file {path} is missing. {_fixes(path)}")
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(
            f"Fashion-MNIST file {path} is not a readable gzip file ({e}); it is probably "
            f"truncated or was saved decompressed. {_fixes(path)}"
        ) from None
    is_images = spec.magic == _IMAGES_MAGIC
    header_len = 16 if is_images else 8
    if len(raw) < header_len:
        raise DataError(
            f"Fashion-MNIST file {path} is too short to be an IDX file "
            f"({len(raw)} bytes after decompression). {_fixes(path)}"
        )
    magic, count = struct.unpack(">II", raw[:8])
    if magic != spec.magic:
        raise DataError(
            f"Fashion-MNIST file {path} has magic number {magic}, expected {spec.magic} "
            f"({'images' if is_images else 'labels'}); is it the right file? {_fixes(path)}"
        )
    if count != spec.count:
        raise DataError(
            f"Fashion-MNIST file {path} holds {count} items, expected {spec.count}. {_fixes(path)}"
        )
    shape: tuple[int, ...] = (count,)
    if is_images:
        rows, cols = struct.unpack(">II", raw[8:16])
        if (rows, cols) != IMAGE_SHAPE:
            raise DataError(
                f"Fashion-MNIST file {path} has {rows}x{cols} images, expected 28x28. "
                f"{_fixes(path)}"
            )
        shape = (count, rows, cols)
    expected_len = header_len + int(np.prod(shape))
    if len(raw) != expected_len:
        raise DataError(
            f"Fashion-MNIST file {path} has {len(raw)} bytes after decompression, expected "
            f"{expected_len}: it is truncated or padded. {_fixes(path)}"
        )
    data = np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(shape)
    if not is_images and data.max(initial=0) >= NUM_CLASSES:
        raise DataError(
            f"Fashion-MNIST file {path} has label {int(data.max())}, expected labels 0-9. "
            f"{_fixes(path)}"
        )
    if check_sha256:
        digest = hashlib.sha256(raw).hexdigest()
        if digest != spec.sha256:
            raise DataError(
                f"Fashion-MNIST file {path} is well-formed but its content differs from the "
                f"published dataset (SHA-256 of the decompressed bytes is {digest}, expected "
                f"{spec.sha256}). {_fixes(path)}"
            )
    return data


def keras_cache_dir() -> Path:
    base = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(base) / "datasets" / "fashion-mnist"


def candidate_dirs(data_dir: str | os.PathLike | None = None) -> list[tuple[Path, str]]:
    """The folders to look in, in order, each with a short description."""
    if data_dir:
        return [(Path(data_dir), "--data-dir")]
    if os.environ.get("FASHION_MNIST_DIR"):
        return [(Path(os.environ["FASHION_MNIST_DIR"]), "FASHION_MNIST_DIR")]
    return [
        (DEBIAN_DIR, "Debian package dataset-fashion-mnist"),
        (keras_cache_dir(), "Keras cache"),
    ]


def verify_dir(
    path: Path, check_sha256: bool = True, keys: tuple[str, ...] | None = None
) -> dict[str, np.ndarray]:
    """Reads and verifies the files in `path` (all four, or those of `keys`); returns them
    by key of `FILES`."""
    return {
        key: read_idx(path / FILES[key].name, FILES[key], check_sha256)
        for key in (keys if keys is not None else FILES)
    }


def _has_any_file(path: Path) -> bool:
    return any((path / spec.name).exists() for spec in FILES.values())


def find_data(data_dir: str | os.PathLike | None = None, download: bool = True) -> tuple[Path, str]:
    """Finds the folder holding the dataset, downloading it only as the last resort.

    Args:
        data_dir: an explicit folder; when given, nothing else is looked at.
        download: whether to download into the Keras cache when no folder has the files.

    Returns:
        (folder, description of where it was found).

    Raises:
        DataError: nothing found (and no download allowed or possible).
    """
    candidates = candidate_dirs(data_dir)
    for path, how in candidates:
        # An explicit folder must work; a default one is used when it has any of the files,
        # so a corrupt copy is reported instead of quietly replaced.
        if data_dir or os.environ.get("FASHION_MNIST_DIR") or _has_any_file(path):
            if path.exists() and not path.is_dir():
                raise DataError(
                    f"{path} ({how}) is a file, not a folder. To fix it: pass the folder "
                    "that holds the four Fashion-MNIST .gz files."
                )
            return path, how
    if download:
        dest = keras_cache_dir()
        download_dataset(dest)
        return dest, "downloaded into the Keras cache"
    looked = ", ".join(str(p) for p, _ in candidates)
    raise DataError(
        f"Fashion-MNIST was not found (looked in {looked}). To fix it: `{APT_HINT}`, or "
        f"pass a folder with the four original .gz files as `--data-dir` / FASHION_MNIST_DIR, "
        f"or run `fashion-cnn data` (it downloads a verified copy) on a machine with "
        f"internet access."
    )


def load_data(
    data_dir: str | os.PathLike | None = None, download: bool = True, train: bool = True
) -> Dataset:
    """Finds, verifies and loads Fashion-MNIST (see `find_data`).

    Args:
        data_dir, download: where to look, and whether to download (see `find_data`).
        train: also read the training files; without them (what `evaluate`, `robustness`
            and `serve` need), `x_train` and `y_train` are empty and loading takes ~0.1 s
            instead of ~0.5 s.

    Returns:
        A `Dataset` with images shaped (N, 28, 28, 1), uint8.
    """
    path, how = find_data(data_dir, download)
    test_keys = ("test_images", "test_labels")
    arrays = verify_dir(path, keys=None if train else test_keys)
    return Dataset(
        arrays["train_images"][..., None] if train else np.zeros((0, 28, 28, 1), np.uint8),
        arrays["train_labels"] if train else np.zeros(0, np.uint8),
        arrays["test_images"][..., None],
        arrays["test_labels"],
        source=f"{path} ({how})",
    )


def download_dataset(dest: Path, mirrors: tuple[str, ...] = MIRRORS) -> None:
    """Downloads the four files into `dest`, verifying each before it is put in place.

    A file already in `dest` is verified and kept, never overwritten.

    Raises:
        DataError: a file in `dest` is corrupt, or no mirror gave a verified copy.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for spec in FILES.values():
        target = dest / spec.name
        if target.exists():
            read_idx(target, spec)
            continue
        errors = []
        for mirror in mirrors:
            fd, tmp = tempfile.mkstemp(prefix=f".{spec.name}.", dir=dest)
            os.close(fd)
            try:
                with urllib.request.urlopen(mirror + spec.name, timeout=60) as r:
                    with open(tmp, "wb") as out:
                        shutil.copyfileobj(r, out)
                read_idx(tmp, spec)
                os.replace(tmp, target)
                break
            except (OSError, DataError) as e:
                errors.append(f"{mirror}: {e}")
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        else:
            raise DataError(
                f"Could not download a verified {spec.name} ({'; '.join(errors)}). To fix it: "
                f"`{APT_HINT}`, or copy the four files into a folder and pass `--data-dir`."
            )


def split_validation(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Carves a stratified validation split off the training images.

    The split depends only on `seed`, not on the training seed, so every run of every
    recipe validates on the same images.

    Returns:
        (x_train, y_train, x_val, y_val); the validation part is empty when fraction is 0.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"Invalid value for `fraction`: expected [0, 1), received {fraction}")
    rng = np.random.default_rng(seed)
    val_idx = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        n_val = int(round(len(idx) * fraction))
        val_idx.append(rng.permutation(idx)[:n_val])
    val = np.sort(np.concatenate(val_idx)) if val_idx else np.array([], dtype=int)
    mask = np.ones(len(y), dtype=bool)
    mask[val] = False
    return x[mask], y[mask], x[val], y[val]
