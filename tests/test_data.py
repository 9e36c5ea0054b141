import gzip
import hashlib

import numpy as np
import pytest

from conftest import write_idx_gz
from fashion_cnn import data as D
from fashion_cnn.data import FILES, DataError, IdxFile, read_idx, split_validation


def small_specs(tmp_path, n_train=20, n_test=10):
    """Writes four small valid IDX files; returns FILES-like specs whose checksums match."""
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28)),
        "train_labels": rng.integers(0, 10, n_train),
        "test_images": rng.integers(0, 256, (n_test, 28, 28)),
        "test_labels": rng.integers(0, 10, n_test),
    }
    specs = {}
    for key, arr in arrays.items():
        real = FILES[key]
        path = write_idx_gz(tmp_path / real.name, arr)
        raw = gzip.open(path).read()
        specs[key] = IdxFile(real.name, real.magic, len(arr), hashlib.sha256(raw).hexdigest())
    return specs, arrays


def test_read_idx_valid(tmp_path):
    specs, arrays = small_specs(tmp_path)
    x = read_idx(tmp_path / specs["train_images"].name, specs["train_images"])
    assert x.shape == (20, 28, 28) and x.dtype == np.uint8
    np.testing.assert_array_equal(x, arrays["train_images"])
    y = read_idx(tmp_path / specs["train_labels"].name, specs["train_labels"])
    np.testing.assert_array_equal(y, arrays["train_labels"])


@pytest.mark.parametrize(
    "corrupt, message",
    [
        ("missing", "is missing"),
        ("not_gzip", "not a readable gzip"),
        ("truncated_gzip", "not a readable gzip"),
        ("wrong_magic", "magic number 2049, expected 2051"),
        ("wrong_count", "holds 21 items, expected 20"),
        ("short_body", "truncated or padded"),
        ("wrong_dims", "32x28 images"),
        ("checksum", "differs from the published dataset"),
    ],
)
def test_read_idx_errors_name_file_and_fix(tmp_path, corrupt, message):
    specs, arrays = small_specs(tmp_path)
    spec = specs["train_images"]
    path = tmp_path / spec.name
    if corrupt == "missing":
        path.unlink()
    elif corrupt == "not_gzip":
        path.write_bytes(b"this is not gzip at all")
    elif corrupt == "truncated_gzip":
        path.write_bytes(path.read_bytes()[:200])
    elif corrupt == "wrong_magic":
        write_idx_gz(path, arrays["train_images"], magic=2049)
    elif corrupt == "wrong_count":
        write_idx_gz(path, arrays["train_images"], count=21)
    elif corrupt == "short_body":
        write_idx_gz(path, arrays["train_images"][:19], count=20)
    elif corrupt == "wrong_dims":
        write_idx_gz(path, np.zeros((20, 32, 28)))
    elif corrupt == "checksum":
        changed = arrays["train_images"].copy()
        changed[0, 0, 0] ^= 1
        write_idx_gz(path, changed)
    with pytest.raises(DataError) as e:
        read_idx(path, spec)
    assert message in str(e.value)
    assert str(path) in str(e.value)
    assert "apt-get install dataset-fashion-mnist" in str(e.value)


def test_labels_out_of_range(tmp_path):
    specs, _ = small_specs(tmp_path)
    spec = specs["test_labels"]
    write_idx_gz(tmp_path / spec.name, np.full(10, 10))
    with pytest.raises(DataError, match="label 10, expected labels 0-9"):
        read_idx(tmp_path / spec.name, spec, check_sha256=False)


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No real dataset visible: Debian and Keras-cache folders point into tmp_path."""
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)
    monkeypatch.setattr(D, "DEBIAN_DIR", tmp_path / "debian")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    return tmp_path


def test_find_data_order(isolated, monkeypatch):
    tmp = isolated
    with pytest.raises(DataError, match=r"was not found.*run `fashion-cnn data` \(it downl"):
        D.find_data(download=False)
    (tmp / "a.gz").write_bytes(b"")
    with pytest.raises(DataError, match=r"a.gz \(--data-dir\) is a file, not a folder"):
        D.find_data(tmp / "a.gz", download=False)
    small_specs(_mk(tmp / "keras/datasets/fashion-mnist"))
    assert D.find_data(download=False)[1] == "Keras cache"
    small_specs(_mk(tmp / "debian"))
    assert D.find_data(download=False)[1] == "Debian package dataset-fashion-mnist"
    monkeypatch.setenv("FASHION_MNIST_DIR", str(_mk(tmp / "env")))
    assert D.find_data(download=False) == (tmp / "env", "FASHION_MNIST_DIR")
    assert D.find_data(tmp / "explicit", download=False) == (tmp / "explicit", "--data-dir")


def _mk(path):
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_corrupt_default_folder_is_reported_not_skipped(isolated, monkeypatch):
    tmp = isolated
    specs, _ = small_specs(_mk(tmp / "keras/datasets/fashion-mnist"))
    _mk(tmp / "debian")
    (tmp / "debian" / specs["test_labels"].name).write_bytes(b"garbage")
    path, how = D.find_data(download=False)
    assert path == tmp / "debian"
    with pytest.raises(DataError, match="debian/train-images-idx3-ubyte.gz is missing"):
        D.verify_dir(path)


def test_download_verifies_and_never_overwrites(isolated, monkeypatch):
    tmp = isolated
    specs, _ = small_specs(_mk(tmp / "mirror"))
    monkeypatch.setattr(D, "FILES", specs)
    bad = _mk(tmp / "bad_mirror")
    for spec in specs.values():
        (bad / spec.name).write_bytes(b"not gzip")
    dest = tmp / "cache"
    mirrors = (bad.as_uri() + "/", (tmp / "mirror").as_uri() + "/")
    D.download_dataset(dest, mirrors)  # the bad mirror is rejected, the good one used
    for spec in specs.values():
        assert (dest / spec.name).read_bytes() == (tmp / "mirror" / spec.name).read_bytes()
    assert sorted(p.name for p in dest.iterdir()) == sorted(s.name for s in specs.values())
    # A user's corrupt file in the destination is reported, not replaced.
    victim = dest / specs["train_labels"].name
    victim.write_bytes(b"user data")
    with pytest.raises(DataError, match="not a readable gzip"):
        D.download_dataset(dest, mirrors)
    assert victim.read_bytes() == b"user data"


def test_download_failure_explains(isolated, monkeypatch):
    tmp = isolated
    specs, _ = small_specs(_mk(tmp / "empty_src"))
    monkeypatch.setattr(D, "FILES", specs)
    with pytest.raises(DataError, match="Could not download a verified"):
        D.download_dataset(tmp / "cache", ((tmp / "nowhere").as_uri() + "/",))
    assert not any((tmp / "cache").iterdir())


def test_split_validation_stratified_disjoint_deterministic():
    y = np.repeat(np.arange(10), 100)
    x = np.arange(1000)
    xt, yt, xv, yv = split_validation(x, y, 0.1, seed=3)
    assert len(xv) == 100 and len(xt) == 900
    assert np.bincount(yv, minlength=10).tolist() == [10] * 10
    assert not set(xt) & set(xv)
    again = split_validation(x, y, 0.1, seed=3)
    np.testing.assert_array_equal(xv, again[2])
    assert not np.array_equal(xv, split_validation(x, y, 0.1, seed=4)[2])
    assert len(split_validation(x, y, 0.0)[2]) == 0


@pytest.mark.realdata
def test_real_files_verify(real_data):
    assert real_data.x_train.shape == (60000, 28, 28, 1)
    assert real_data.x_test.shape == (10000, 28, 28, 1)
    assert np.bincount(real_data.y_test).tolist() == [1000] * 10


def test_the_test_set_loads_without_reading_the_training_files(tmp_path, monkeypatch):
    specs, arrays = small_specs(tmp_path)
    monkeypatch.setattr(D, "FILES", specs)
    full = D.load_data(tmp_path, download=False)
    assert full.x_train.shape == (20, 28, 28, 1)
    for key in ("train_images", "train_labels"):  # unreadable now: must not be read
        (tmp_path / specs[key].name).write_bytes(b"not gzip")
    with pytest.raises(DataError, match="not a readable gzip"):
        D.load_data(tmp_path, download=False)
    test_only = D.load_data(tmp_path, download=False, train=False)
    np.testing.assert_array_equal(test_only.x_test, full.x_test)
    np.testing.assert_array_equal(test_only.y_test, full.y_test)
    assert test_only.x_train.shape == (0, 28, 28, 1) and test_only.y_train.shape == (0,)
    assert test_only.x_train.dtype == test_only.y_train.dtype == np.uint8
