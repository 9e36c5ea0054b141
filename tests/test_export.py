"""Exports: round trips with parity for each format, refusal of a broken export, the card."""

import json
from pathlib import Path

import numpy as np
import pytest

from fashion_cnn import export as export_mod
from fashion_cnn.config import TrainConfig
from fashion_cnn.data import CLASS_NAMES, FILES
from fashion_cnn.engines import load_engine
from fashion_cnn.errors import DamagedFileError, OutputError
from fashion_cnn.export import ExportError, export_run
from fashion_cnn.models import float32_clone
from fashion_cnn.runs import load_run_model
from fashion_cnn.train import train


@pytest.fixture(scope="module")
def run(tmp_path_factory, synthetic_data):
    """A small bf16-trained model (the exports must come out float32)."""
    config = TrainConfig(
        recipe="t",
        recipe_version=3,
        epochs=2,
        batch_size=32,
        scale=1 / 255,
        optimizer="adam",
        learning_rate=1e-3,
        precision="mixed_bfloat16",
    )
    return train(config, synthetic_data, tmp_path_factory.mktemp("run"), verbose=0)


def test_float32_clone_computes_in_float32_with_the_same_weights(run):
    model = load_run_model(run, precision="trained")
    assert model.layers[1].compute_dtype == "bfloat16"
    clone = float32_clone(model)
    assert {layer.compute_dtype for layer in clone.layers} == {"float32"}
    for a, b in zip(model.get_weights(), clone.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("fmt, quantize", [("savedmodel", None), ("onnx", None), ("litert", None)])
def test_float_export_round_trip_matches_keras(run, synthetic_data, fmt, quantize):
    card = export_run(run, synthetic_data, fmt, quantize=quantize)
    p = card["parity"]
    assert p["n"] == len(synthetic_data.y_test)
    assert p["max_abs_diff"] <= 1e-4 and p["agreement"] >= 0.999 and not p["failures"]
    folder = run / "exports" / fmt
    assert card["export_dir"] == str(folder)
    on_disk = json.loads((folder / "card.json").read_text())
    assert on_disk["class_names"] == list(CLASS_NAMES)
    assert on_disk["input"]["shape"] == [None, 28, 28, 1] and on_disk["input"]["range"] == [0, 255]
    assert on_disk["quantization"] is None
    assert on_disk["parameters"] == load_run_model(run).count_params() > 0
    assert on_disk["export_precision"] == "float32" and on_disk["trained_precision"] == (
        "mixed_bfloat16"
    )
    assert (on_disk["recipe"], on_disk["recipe_version"]) == ("t", 3)
    assert on_disk["dataset_sha256"]["train-images-idx3-ubyte"] == FILES["train_images"].sha256
    assert "git_commit" in on_disk and on_disk["versions"]["keras"]
    assert not list(folder.parent.glob(".*"))  # no staging folder left behind


def test_onnx_and_litert_engines_give_the_keras_answers_on_raw_pixels(run, synthetic_data):
    x = synthetic_data.x_test[:50].astype("float32")  # raw 0-255, no scaling by the caller
    keras_probs = load_engine(run, "keras")(x)
    for name in ("onnx", "litert"):
        if not (run / "exports" / name).exists():
            export_run(run, synthetic_data, name)
        probs = load_engine(run, name)(x)
        assert probs.shape == (50, 10) and probs.dtype == np.float32
        # the Keras engine computes in bf16 (as trained); the export in float32
        assert (probs.argmax(1) == keras_probs.argmax(1)).mean() >= 0.98
        np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)


@pytest.mark.parametrize("fmt", ["onnx", "litert"])
def test_int8_export_within_its_parity_limits(run, synthetic_data, fmt):
    card = export_run(run, synthetic_data, fmt, quantize="int8")
    p = card["parity"]
    assert card["export_precision"] == "int8"
    assert p["agreement"] >= 0.995 and p["accuracy_drop_points"] <= 0.3
    assert (run / "exports" / f"{fmt}-int8" / "card.json").is_file()
    assert load_engine(run, f"{fmt}-int8")(synthetic_data.x_test[:4].astype("float32")).shape == (
        4,
        10,
    )
    assert card["quantization"]["weights"].startswith("int8")


def test_onnx_int8_weights_use_7_bits_and_the_first_convolution_stays_float(run, synthetic_data):
    """8-bit weights saturate ONNX Runtime's int8 kernels on CPUs without VNNI."""
    import onnx
    from onnx import numpy_helper

    folder = run / "exports" / "onnx-int8"
    if not folder.exists():
        export_run(run, synthetic_data, "onnx", quantize="int8")
    card = json.loads((folder / "card.json").read_text())
    graph = onnx.load(str(folder / "model.onnx")).graph
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    int8 = [w for w in weights.values() if w.dtype == np.int8 and w.size > 1]
    assert int8, "no int8 weights in the int8 export"
    # symmetric 7-bit: |w| <= 64, so a pair of uint8 x int8 products stays within int16
    # (2 x 255 x 64 = 32,640 <= 32,767)
    assert all(np.abs(w.astype(int)).max() <= 64 for w in int8)
    convs = [node for node in graph.node if node.op_type == "Conv"]
    assert card["quantization"]["float_nodes"] == [convs[0].name]
    assert weights[convs[0].input[1]].dtype == np.float32  # not fed by a DequantizeLinear
    produced_by = {out: node.op_type for node in graph.node for out in node.output}
    assert all(produced_by.get(conv.input[1]) == "DequantizeLinear" for conv in convs[1:])


def test_broken_export_is_refused_and_nothing_is_written(
    run, synthetic_data, tmp_path, monkeypatch
):
    real_writer = export_mod._write_onnx

    def drifting_writer(model, folder, quantize, calibration):
        # the classic bug: the app's export normalises differently from training
        model.get_layer("rescale").scale = 1.0
        return real_writer(model, folder, quantize, calibration)

    monkeypatch.setattr(export_mod, "_write_onnx", drifting_writer)
    out = tmp_path / "broken"
    with pytest.raises(ExportError, match="does not give the Keras model's answers") as e:
        export_run(run, synthetic_data, "onnx", out=out)
    assert "x the limit" in str(e.value) and "Nothing was written" in str(e.value)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_a_damaged_model_file_is_named(run, tmp_path):
    import shutil
    import zipfile

    damaged = shutil.copytree(run, tmp_path / "run", ignore=shutil.ignore_patterns("exports"))
    model = damaged / "model.keras"
    model.write_bytes((run / "model.keras").read_bytes()[:3000])  # a cut-off copy
    with pytest.raises(DamagedFileError, match=r"model.keras is damaged: it is not a .keras"):
        load_run_model(damaged)
    with zipfile.ZipFile(model, "w") as z:  # a zip, but no Keras model in it
        z.writestr("notes.txt", "hello")
    with pytest.raises(
        DamagedFileError, match=r"model.keras is damaged: Keras cannot load it \(.*[^.]\)\. To fix"
    ):
        load_run_model(damaged)


def test_existing_export_needs_overwrite(run, synthetic_data, tmp_path):
    out = tmp_path / "e"
    export_run(run, synthetic_data, "litert", out=out)
    first = (out / "card.json").read_text()
    with pytest.raises(OutputError, match="already exists. Pass --overwrite"):
        export_run(run, synthetic_data, "litert", out=out)
    export_run(run, synthetic_data, "litert", out=out, overwrite=True)
    assert (out / "card.json").read_text() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e"]


def test_overwrite_replaces_only_an_earlier_export(run, synthetic_data, tmp_path):
    before = sorted(p.name for p in run.iterdir())
    with pytest.raises(OutputError, match="would replace the run folder"):
        export_run(run, synthetic_data, "litert", out=run, overwrite=True)
    with pytest.raises(OutputError, match="would replace the run folder .*, which is inside"):
        export_run(run, synthetic_data, "litert", out=run / "..", overwrite=True)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match="holds files but no export"):
        export_run(run, synthetic_data, "litert", out=tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in run.iterdir()) == before
    (tmp_path / "empty").mkdir()
    export_run(run, synthetic_data, "litert", out=tmp_path / "empty", overwrite=True)
    assert (tmp_path / "empty" / "card.json").is_file()


@pytest.mark.parametrize(
    "fmt, quantize, message",
    [
        ("tflite", None, "Invalid value for `format`"),
        ("onnx", "int4", "Invalid value for `quantize`"),
        ("savedmodel", "int8", "available for --format onnx and litert"),
    ],
)
def test_bad_export_arguments(run, synthetic_data, tmp_path, fmt, quantize, message):
    with pytest.raises(ExportError, match=message):
        export_run(run, synthetic_data, fmt, out=tmp_path / "x", quantize=quantize)


def _staged(parent, text):
    folder = parent / f".staging-{text}"
    folder.mkdir()
    (folder / "card.json").write_text(json.dumps({"export": text}))
    (folder / "model.onnx").write_text(text)
    return folder


@pytest.mark.parametrize("earlier", [False, True])
def test_two_exports_into_one_folder_at_once_take_turns(tmp_path, monkeypatch, earlier):
    """Export A is about to rename its folder into place when export B installs: B waits
    for A (without the lock, B's rename landed first and A's failed: 'Directory not
    empty')."""
    import os
    import threading

    run, out = tmp_path / "run", tmp_path / "exports" / "onnx"
    run.mkdir()
    out.parent.mkdir()
    if earlier:
        _staged(out.parent, "earlier").rename(out)
    a, b = _staged(out.parent, "a"), _staged(out.parent, "b")
    real_replace, errors, other = os.replace, [], []

    def install_b():
        try:
            export_mod._install(b, out, run, overwrite=True)
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    def replace(src, dst):
        if Path(src) == a and not other:  # A is about to install: B tries meanwhile
            other.append(threading.Thread(target=install_b))
            other[0].start()
            other[0].join(timeout=1)  # B finishes here if nothing holds it back
        real_replace(src, dst)

    monkeypatch.setattr(export_mod.os, "replace", replace)
    export_mod._install(a, out, run, overwrite=True)
    other[0].join(timeout=30)
    assert errors == []
    assert json.loads((out / "card.json").read_text()) == {"export": "b"}  # the later one
    assert sorted(p.name for p in out.parent.iterdir()) == ["onnx"]  # nothing left beside it


def test_an_export_that_appears_meanwhile_is_kept_without_overwrite(tmp_path):
    run, out = tmp_path / "run", tmp_path / "exports" / "onnx"
    run.mkdir()
    out.parent.mkdir()
    mine = _staged(out.parent, "mine")
    _staged(out.parent, "other").rename(out)  # installed by another process since the check
    with pytest.raises(OutputError, match="already exists. Pass --overwrite"):
        export_mod._install(mine, out, run, overwrite=False)
    assert json.loads((out / "card.json").read_text()) == {"export": "other"}
