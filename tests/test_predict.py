import numpy as np
import pytest
from PIL import Image

from fashion_cnn.images import ImageError, load_image
from fashion_cnn.predict import predict_files, top_k


def test_28x28_grayscale_passes_unchanged(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (28, 28)).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    np.testing.assert_array_equal(load_image(tmp_path / "a.png"), arr)


def test_colour_photo_is_gray_and_resized(tmp_path):
    Image.new("RGB", (300, 200), (255, 0, 0)).save(tmp_path / "b.jpg")
    out = load_image(tmp_path / "b.jpg")
    assert out.shape == (28, 28) and out.dtype == np.uint8
    assert abs(int(out.mean()) - 76) <= 2  # ITU-R 601 luma of pure red


@pytest.mark.parametrize(
    "content, message",
    [(b"", "not an image"), (b"hello", "not an image"), (None, "no such file")],
)
def test_bad_files(tmp_path, content, message):
    path = tmp_path / "x.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageError, match=message):
        load_image(path)


def test_truncated_png(tmp_path):
    Image.fromarray(np.zeros((100, 100), np.uint8) + 7).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="t.png"):
        load_image(tmp_path / "t.png")


class FakeModel:
    """Puts all probability on the class given by the image's mean brightness."""

    def __call__(self, x, training=False):
        cls = (np.asarray(x).reshape(len(x), -1).mean(1) // 26).astype(int).clip(0, 9)
        return np.eye(10, dtype="float32")[cls] * 0.9 + 0.01


def test_predict_files_reports_errors_per_file(tmp_path):
    Image.fromarray(np.full((28, 28), 30, np.uint8)).save(tmp_path / "one.png")
    (tmp_path / "bad.png").write_bytes(b"nope")
    Image.fromarray(np.full((40, 40), 240, np.uint8)).save(tmp_path / "nine.png")
    res = predict_files(
        FakeModel(), [tmp_path / "one.png", tmp_path / "bad.png", tmp_path / "nine.png"], k=2
    )
    assert [r["predictions"][0]["label"] for r in (res[0], res[2])] == ["Trouser", "Ankle boot"]
    assert "error" in res[1] and "predictions" not in res[1]
    assert len(res[0]["predictions"]) == 2


def test_top_k_order():
    p = np.array([0.1, 0.5, 0.05, 0.35, 0, 0, 0, 0, 0, 0])
    assert [t["index"] for t in top_k(p, 3)] == [1, 3, 0]
