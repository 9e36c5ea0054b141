"""ONNX int8 quantization: 7-bit weights, the first convolution kept in float, the settings."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from fashion_cnn.quantize import OnnxInt8, first_conv, quantize_onnx  # noqa: E402


def _two_convs(path):
    """pixels (N, 1, 8, 8) -> Conv 1->4 -> Relu -> Conv 4->4, with large weights."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(0, 3, (4, 1, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(0, 3, (4, 4, 3, 3)).astype(np.float32), "w2")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["pixels", "w1"], ["a"], name="stem", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["a"], ["b"], name="relu"),
            helper.make_node("Conv", ["b", "w2"], ["out"], name="second", pads=[1, 1, 1, 1]),
        ],
        "two_convs",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 4, 8, 8])],
        [w1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _weights(path):
    graph = onnx.load(str(path)).graph
    return {t.name: numpy_helper.to_array(t) for t in graph.initializer}, graph


@pytest.mark.parametrize(
    "settings, bound, float_nodes",
    [(OnnxInt8(), 64, ["stem"]), (OnnxInt8(reduce_range=False, first_conv_float=False), 127, [])],
)
def test_weight_range_and_float_nodes_follow_the_settings(
    tmp_path, capsys, settings, bound, float_nodes
):
    src = _two_convs(tmp_path / "float.onnx")
    calibration = np.random.default_rng(1).uniform(0, 255, (200, 1, 8, 8)).astype(np.float32)
    record = quantize_onnx(src, tmp_path / "int8.onnx", calibration, "pixels", settings)
    assert not capsys.readouterr().out  # ONNX Runtime's calibration prints go to the log
    assert record["float_nodes"] == float_nodes
    assert record["calibration"] == settings.calibration
    weights, graph = _weights(tmp_path / "int8.onnx")
    int8 = [w for w in weights.values() if w.dtype == np.int8 and w.ndim == 4]  # kernels
    assert max(int(np.abs(w.astype(int)).max()) for w in int8) == bound
    assert len(int8) == 2 - len(float_nodes)
    stem = next(node for node in graph.node if node.name == "stem")
    assert (weights.get(stem.input[1]) is not None) == bool(float_nodes)  # float initializer
    assert not (tmp_path / "prepared.onnx").exists()


def test_first_conv_is_the_one_reading_the_input(tmp_path):
    assert first_conv(_two_convs(tmp_path / "m.onnx")) == "stem"


def test_invalid_settings_are_named(tmp_path):
    src = _two_convs(tmp_path / "float.onnx")
    x = np.zeros((4, 1, 8, 8), np.float32)
    with pytest.raises(ValueError, match="calibration must be one of"):
        quantize_onnx(src, tmp_path / "q.onnx", x, "pixels", OnnxInt8(calibration="mean"))


def test_describe_says_which_weight_range():
    assert "7-bit" in OnnxInt8().describe()["weights"]
    assert "8-bit" in OnnxInt8(reduce_range=False).describe()["weights"]
