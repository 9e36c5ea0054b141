"""Engines: choosing one for a run, clear errors when an export is missing."""

import json

import numpy as np
import pytest

from fashion_cnn import engines
from fashion_cnn.config import TrainConfig
from fashion_cnn.engines import available_engines, default_engine, load_engine, open_artifact
from fashion_cnn.errors import DamagedFileError, RunError
from fashion_cnn.export import export_run
from fashion_cnn.train import train


@pytest.fixture(scope="module")
def run(tmp_path_factory, synthetic_data):
    config = TrainConfig(
        recipe="t", epochs=2, batch_size=32, scale=1 / 255, optimizer="adam", learning_rate=1e-3
    )
    return train(config, synthetic_data, tmp_path_factory.mktemp("run"), verbose=0)


def test_default_is_the_fastest_float_export_never_int8(run, synthetic_data):
    assert available_engines(run) == ["keras"]
    assert default_engine(run) == "keras"
    export_run(run, synthetic_data, "onnx", quantize="int8")
    assert "onnx-int8" in available_engines(run)
    assert default_engine(run) == "keras"  # int8 changes answers: only when asked for
    export_run(run, synthetic_data, "litert")
    assert default_engine(run) == "litert"
    export_run(run, synthetic_data, "onnx")
    assert available_engines(run) == ["keras", "onnx", "onnx-int8", "litert"]
    assert default_engine(run) == engines.PREFERENCE[0] == "onnx"
    assert load_engine(run).name == "onnx"
    # the exports hold the final model: the best checkpoint runs on Keras, never on them
    assert load_engine(run, checkpoint="best").name == "keras"
    with pytest.raises(RunError, match=r"onnx export holds the final model, not the best"):
        load_engine(run, "onnx", checkpoint="best")


def test_missing_export_says_how_to_make_it(run):
    with pytest.raises(RunError, match=r"fashion-cnn export .* --format litert --quantize int8"):
        load_engine(run, "litert-int8")
    with pytest.raises(RunError, match="Invalid value for `engine`"):
        load_engine(run, "tensorrt")


@pytest.mark.parametrize("name", ["model.onnx", "model.tflite"])
def test_a_damaged_export_is_named(tmp_path, name):
    (tmp_path / name).write_bytes(b"\x08\x07 cut off")
    with pytest.raises(DamagedFileError, match=rf"{name} is damaged: .* cannot load it \("):
        open_artifact(tmp_path / name)


def test_missing_runtime_is_named(run, synthetic_data, monkeypatch):
    export_run(run, synthetic_data, "onnx", overwrite=True)
    monkeypatch.setattr(engines, "runtime_installed", lambda name: name == "keras")
    with pytest.raises(RunError, match="'onnxruntime' is not installed"):
        open_artifact(run / "exports" / "onnx" / "model.onnx")


def test_litert_engine_handles_changing_batch_sizes(run, synthetic_data):
    if not (run / "exports" / "litert").exists():
        export_run(run, synthetic_data, "litert")
    engine = load_engine(run, "litert")
    x = synthetic_data.x_test[:9].astype("float32")
    whole = engine(x)
    parts = np.concatenate([engine(x[:1]), engine(x[1:5]), engine(x[5:])])
    np.testing.assert_allclose(whole, parts, atol=1e-6)


def test_an_onnx_int8_export_without_its_quantization_record_is_flagged(
    run, synthetic_data, caplog
):
    folder = run / "exports" / "onnx-int8"
    if not folder.exists():
        export_run(run, synthetic_data, "onnx", quantize="int8")
    with caplog.at_level("WARNING", logger="fashion_cnn.engines"):
        load_engine(run, "onnx-int8")
    # made by this version: 7-bit weights, no warning (TensorFlow's own, e.g. on retracing
    # when other tests ran first in this process, are not this test's business)
    assert not [r for r in caplog.records if r.name.startswith("fashion_cnn")]
    card_path = folder / "card.json"
    card = json.loads(card_path.read_text())
    del card["quantization"]  # as cards of exports made before 7-bit weights
    card_path.write_text(json.dumps(card))
    with caplog.at_level("WARNING", logger="fashion_cnn.engines"):
        engine = load_engine(run, "onnx-int8")
    assert "predates 7-bit weights" in caplog.text and "--overwrite" in caplog.text
    assert engine(synthetic_data.x_test[:2].astype("float32")).shape == (2, 10)  # still runs


def test_an_export_of_an_earlier_model_is_never_used(run, synthetic_data, tmp_path, caplog):
    # after a retrain, predict and serve used to answer with the old model's export
    import shutil

    import keras

    run = shutil.copytree(run, tmp_path / "run")  # the module's run stays as it is
    if not (run / "exports" / "onnx").exists():
        export_run(run, synthetic_data, "onnx")
    card = json.loads((run / "exports" / "onnx" / "card.json").read_text())
    assert card["model_sha256"] == engines.model_sha256(run)
    assert default_engine(run) == "onnx"
    model = keras.models.load_model(run / "model.keras")  # trained again: another model
    model.weights[0].assign(model.weights[0] + 0.01)
    model.save(run / "model.keras")
    with caplog.at_level("WARNING", logger="fashion_cnn.engines"):
        assert "onnx" not in available_engines(run) and default_engine(run) != "onnx"
    assert "export of " in caplog.text and "was made from an earlier model.keras" in caplog.text
    with pytest.raises(RunError, match=r"earlier model.keras.*--format onnx --overwrite`"):
        load_engine(run, "onnx")
    export_run(run, synthetic_data, "onnx", overwrite=True)  # the fix the message names
    assert load_engine(run, "onnx").name == "onnx"
    (run / "model.keras").unlink()  # a run shipped with its exports only: nothing to compare
    assert load_engine(run, "onnx").name == "onnx"


def test_predict_on_an_onnx_export_never_loads_tensorflow(run, synthetic_data, tmp_path):
    # it used to import TensorFlow, Keras and scikit-learn anyway: 9 s and 660 MB for a photo
    import subprocess
    import sys

    from PIL import Image

    if not (run / "exports" / "onnx").exists():
        export_run(run, synthetic_data, "onnx")
    photo = tmp_path / "item.png"
    Image.fromarray(synthetic_data.x_test[0, ..., 0].astype(np.uint8)).save(photo)
    code = (
        "import sys; from fashion_cnn.cli import main; "
        f"rc = main(['-v', 'predict', {str(run)!r}, {str(photo)!r}]); "
        "print(*(m in sys.modules for m in ('tensorflow', 'keras', 'sklearn'))); sys.exit(rc)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "engine: onnx" in done.stderr
    assert f"{photo}: " in done.stdout
    assert done.stdout.split()[-3:] == ["False", "False", "False"], done.stdout
