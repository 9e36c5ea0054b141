import gzip
import os
import struct

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from fashion_cnn.hardware import prefer_onednn  # noqa: E402

prefer_onednn(os.environ)  # as `fashion-cnn train` does, before TensorFlow is imported

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from fashion_cnn import data as data_mod  # noqa: E402
from fashion_cnn.data import Dataset  # noqa: E402


def write_idx_gz(path, array: np.ndarray, magic: int | None = None, count: int | None = None):
    """Writes `array` (uint8) as a gzip-compressed IDX file, optionally with a wrong header."""
    array = np.asarray(array, dtype=np.uint8)
    if magic is None:
        magic = 2051 if array.ndim == 3 else 2049
    header = struct.pack(">II", magic, array.shape[0] if count is None else count)
    for d in array.shape[1:]:
        header += struct.pack(">I", d)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())
    return path


def make_images(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Learnable synthetic 28x28 images: each class lights up its own 7x7 block, plus noise."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 60, size=(len(labels), 28, 28), dtype=np.uint8)
    for i, c in enumerate(labels):
        r, col = divmod(int(c), 4)
        x[i, r * 9 : r * 9 + 7, col * 7 : col * 7 + 7] = 220
    return x


@pytest.fixture(scope="session")
def synthetic_data() -> Dataset:
    rng = np.random.default_rng(1)
    y_train = rng.integers(0, 10, 600).astype(np.uint8)
    y_test = rng.integers(0, 10, 200).astype(np.uint8)
    return Dataset(
        make_images(y_train, 2)[..., None],
        y_train,
        make_images(y_test, 3)[..., None],
        y_test,
        source="synthetic",
    )


def _real_data_dir():
    try:
        path, _ = data_mod.find_data(download=False)
    except data_mod.DataError:
        return None
    return path


@pytest.fixture(scope="session")
def real_data() -> Dataset:
    """The real Fashion-MNIST; skipped when absent, except under CI where it must be there."""
    if _real_data_dir() is None:
        if os.environ.get("CI"):
            pytest.fail("Fashion-MNIST is missing under CI: `make test` should have installed it")
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    return data_mod.load_data(download=False)
