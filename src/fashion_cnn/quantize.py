"""int8 quantization settings for the exports, and ONNX Runtime's static quantization.

`export.export_run` calls `quantize_onnx` for `--format onnx --quantize int8`; the LiteRT
converter quantizes by itself (`LITERT_INT8` describes what it does). The settings end up
in the export's card.json.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OnnxInt8:
    """How `--format onnx --quantize int8` quantizes (static, QDQ; see `quantize_onnx`).

    The defaults are what `export` uses. Percentile calibration and the float first
    convolution were each needed for the `fast` model's export to pass its parity check
    with a margin on an AVX2-only CPU; 7-bit weights make ONNX Runtime's integer sums the
    same on every x86-64 CPU, VNNI or not (`benchmarks/int8_settings.py`, BENCHMARKS.md).

    Attributes:
        reduce_range: 7-bit weights (range +-64) instead of 8-bit.
        calibration: how activation ranges are set: "minmax", "percentile" (99.999) or
            "entropy".
        first_conv_float: keep the first convolution (raw pixels in) in float.
        weights: "int8" or "uint8" (ONNX Runtime's U8U8 kernels never saturate, but run no
            faster than float here).
    """

    reduce_range: bool = True
    calibration: str = "percentile"
    first_conv_float: bool = True
    weights: str = "int8"

    def describe(self) -> dict:
        """The settings as card.json records them."""
        bits = "7-bit range (reduce_range)" if self.reduce_range else "8-bit range"
        return {
            "format": "QDQ",
            "quantized_ops": list(ONNX_QUANTIZED_OPS),
            "weights": f"{self.weights}, per output channel, {bits}",
            "activations": "uint8, per tensor",
            "calibration": self.calibration,
        }


ONNX_QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")  # softmax, pooling and scaling stay float
# What TensorFlow Lite's converter does with `Optimize.DEFAULT` and a representative dataset.
LITERT_INT8 = {
    "weights": "int8, per output channel (convolutions)",
    "activations": "int8, per tensor",
    "calibration": "min/max of activations on the calibration images",
    "kept_in_float": "the model's input and output",
}


def first_conv(path: Path) -> str:
    """The name of the first Conv node of an ONNX graph (the one reading the pixels)."""
    import onnx

    for node in onnx.load(str(path)).graph.node:
        if node.op_type == "Conv":
            return node.name
    raise ValueError(f"The ONNX graph {path} has no Conv node to keep in float.")


def quantize_onnx(
    src: Path,
    dst: Path,
    calibration: np.ndarray,
    input_name: str,
    settings: OnnxInt8 = OnnxInt8(),
) -> dict:
    """Static int8 quantization (QDQ) of `src` into `dst`, calibrated on `calibration`.

    With the default settings the integer results are the same on every x86-64 CPU: ONNX
    Runtime multiplies uint8 activations by int8 weights with VPMADDUBSW on CPUs without
    VNNI, which saturates its 16-bit sums of two products for 8-bit weights
    (2 x 255 x 127 > 32,767); 7-bit weights keep every sum in range (2 x 255 x 64), so an
    export checked on a VNNI machine gives the same answers on an AVX2-only one. With
    8-bit weights the `fast` model lost 1.6-3.0 points of accuracy on an AVX2 CPU.

    Args:
        src, dst: the float ONNX file and the int8 one to write.
        calibration: raw-pixel images that set the activation ranges (never test images).
        input_name: the graph's input.
        settings: how to quantize.

    Returns:
        `settings.describe()` with `float_nodes`: the nodes left in float (for the card).
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    weight_types = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    if settings.calibration not in methods or settings.weights not in weight_types:
        raise ValueError(
            f"Invalid OnnxInt8 settings: calibration must be one of {list(methods)} and "
            f"weights one of {list(weight_types)}, received {settings}"
        )

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._batches = iter(np.array_split(calibration, max(1, len(calibration) // 100)))

        def get_next(self):
            batch = next(self._batches, None)
            return None if batch is None else {input_name: batch}

    prepared = src.with_name("prepared.onnx")
    quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
    float_nodes = [first_conv(prepared)] if settings.first_conv_float else []
    printed = io.StringIO()  # the percentile and entropy calibrators print their progress
    with contextlib.redirect_stdout(printed):
        quantize_static(
            str(prepared),
            str(dst),
            Reader(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(ONNX_QUANTIZED_OPS),
            nodes_to_exclude=float_nodes,
            per_channel=True,
            reduce_range=settings.reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=weight_types[settings.weights],
            calibrate_method=methods[settings.calibration],
        )
    if printed.getvalue().strip():
        log.debug("onnxruntime calibration: %s", printed.getvalue().strip())
    prepared.unlink()
    return {**settings.describe(), "float_nodes": float_nodes}
