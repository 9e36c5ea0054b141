import csv
import io
import sys

import numpy as np
from PIL import Image

from fashion_cnn.predict import expand_inputs, predict_files, predict_inputs, to_csv, top_k


class FakeModel:
    """Puts most probability on the class given by the image's mean brightness."""

    def __call__(self, x, training=False):
        cls = (np.asarray(x).reshape(len(x), -1).mean(1) // 26).astype(int).clip(0, 9)
        return np.eye(10, dtype="float32")[cls] * 0.9 + 0.01


def fmnist_like(value: int) -> Image.Image:
    """A 28x28 image with dark corners (passes preprocessing unchanged), mean about `value`."""
    arr = np.zeros((28, 28), np.uint8)
    arr[1:27, 1:27] = min(255, round(value * 784 / 676))
    return Image.fromarray(arr)


def test_every_bad_input_gets_its_error_and_the_batch_goes_on(tmp_path):
    fmnist_like(30).save(tmp_path / "one.png")  # mean 30 -> class 1 (Trouser)
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_bytes(b"not an image")
    Image.new("L", (10000, 6000)).save(tmp_path / "huge.png")
    frames = [Image.new("L", (8, 8), v) for v in (0, 255)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    fmnist_like(220).save(tmp_path / "nine.png")
    names = ["one.png", "empty.png", "text.png", "huge.png", "anim.gif", "missing.png", "nine.png"]
    res = predict_inputs(FakeModel(), [tmp_path / n for n in names], k=2)
    assert [("error" in r) for r in res] == [False, True, True, True, True, True, False]
    assert res[0]["label"] == "Trouser" and res[-1]["label"] == "Bag"
    assert len(res[0]["predictions"]) == 2


def test_folders_are_searched_recursively(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    fmnist_like(30).save(tmp_path / "a" / "b" / "deep.png")
    fmnist_like(30).save(tmp_path / "top.JPG", "JPEG")
    (tmp_path / "notes.txt").write_text("skip me")
    found = list(expand_inputs([tmp_path]))
    assert [f.split("/")[-1] for f in found] == ["deep.png", "top.JPG"]


def test_a_folder_without_images_gets_an_error(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    fmnist_like(30).save(tmp_path / "one.png")
    res = predict_inputs(FakeModel(), [tmp_path / "empty", tmp_path / "one.png"])
    assert res[0]["file"] == str(tmp_path / "empty")
    assert "a folder without image files" in res[0]["error"] and ".png" in res[0]["error"]
    assert res[1]["label"] == "Trouser"


def test_stdin(monkeypatch):
    buf = io.BytesIO()
    fmnist_like(220).save(buf, "PNG")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(buf.getvalue())))
    (res,) = predict_inputs(FakeModel(), ["-"])
    assert res["file"] == "<stdin>" and res["label"] == "Bag"


def test_unsure_below_threshold_and_temperature():
    class Flat:
        def __call__(self, x, training=False):
            p = np.full((len(x), 10), 0.05, "float32")
            p[:, 3] = 0.55
            return p

    img = fmnist_like(100)
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        img.save(f"{d}/x.png")
        (sure,) = predict_inputs(Flat(), [f"{d}/x.png"], threshold=0.5)
        (unsure,) = predict_inputs(Flat(), [f"{d}/x.png"], threshold=0.6)
        (soft,) = predict_inputs(Flat(), [f"{d}/x.png"], threshold=0.5, temperature=3.0)
    assert sure["label"] == "Dress" and not sure["unsure"]
    assert unsure["label"] == "unsure" and unsure["unsure"]
    assert unsure["predictions"][0]["label"] == "Dress"  # the candidates are still listed
    assert soft["unsure"] and soft["confidence"] < 0.5


def test_show_input_saves_what_the_model_saw(tmp_path):
    photo = Image.new("RGB", (300, 200), "white")
    photo.paste((0, 0, 0), (100, 20, 200, 180))
    photo.save(tmp_path / "p.jpg")
    (res,) = predict_inputs(FakeModel(), [tmp_path / "p.jpg"], show_input=tmp_path / "seen")
    seen = np.asarray(Image.open(res["input_image"]))
    assert seen.shape == (28, 28) and seen[0, 0] == 0 and seen[14, 14] > 200


def test_csv_output(tmp_path):
    fmnist_like(30).save(tmp_path / "one.png")
    res = predict_files(FakeModel(), [tmp_path / "one.png", tmp_path / "nope.png"], k=2)
    rows = list(csv.reader(io.StringIO(to_csv(res, 2))))
    assert rows[0] == [
        "file",
        "label",
        "confidence",
        "label_1",
        "probability_1",
        "label_2",
        "probability_2",
        "error",
    ]
    assert rows[1][1] == "Trouser" and rows[1][-1] == ""
    assert rows[2][1] == "" and "no such file" in rows[2][-1]


def test_top_k_order():
    p = np.array([0.1, 0.5, 0.05, 0.35, 0, 0, 0, 0, 0, 0])
    assert [t["index"] for t in top_k(p, 3)] == [1, 3, 0]


def test_explain_writes_overlays(tmp_path):
    from fashion_cnn.models import build_model

    fmnist_like(100).save(tmp_path / "x.png")
    (res,) = predict_inputs(build_model("seed"), [tmp_path / "x.png"], explain=tmp_path / "cam")
    overlay = Image.open(res["gradcam_image"])
    assert overlay.mode == "RGB" and overlay.size[0] > 28


def test_progress_bar_goes_to_stderr(tmp_path, capsys):
    for i in range(3):
        fmnist_like(30).save(tmp_path / f"{i}.png")
    res = predict_inputs(FakeModel(), [tmp_path], progress=True, chunk=2)
    assert len(res) == 3 and all(r["label"] == "Trouser" for r in res)
    captured = capsys.readouterr()
    assert captured.out == "" and "3/3" in captured.err


def test_photos_load_on_several_threads_with_the_same_results_in_order(tmp_path, monkeypatch):
    import threading

    from fashion_cnn import predict

    paths = []
    for i in range(11):
        path = tmp_path / f"p{i:02d}.png"
        if i % 4 == 3:
            path.write_bytes(b"not an image")
        else:
            fmnist_like(20 * i + 30).save(path)
        paths.append(path)
    one = predict_inputs(FakeModel(), paths, chunk=4, workers=1)
    threads = set()
    load = predict._load

    def recording_load(item):
        threads.add(threading.get_ident())
        return load(item)

    monkeypatch.setattr(predict, "_load", recording_load)
    several = predict_inputs(FakeModel(), paths, chunk=4, workers=3)
    assert several == one
    assert [r["file"] for r in several] == [str(p) for p in paths]
    assert [("error" in r) for r in several] == [i % 4 == 3 for i in range(11)]
    assert len({r["label"] for r in several if "label" in r}) > 3
    assert len(threads) > 1 and threading.get_ident() not in threads
