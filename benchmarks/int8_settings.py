"""Which ONNX Runtime int8 settings keep a run's answers on this CPU, and how fast they run.

    python benchmarks/int8_settings.py RUN [RUN ...] [--seconds 2]

For each run: exports its model to float32 ONNX once (as `fashion-cnn export` does), then
quantizes it with each variant of `fashion_cnn.quantize.OnnxInt8` (the export's default is
marked), runs every variant on the 10,000 test images and prints a Markdown table: same
predicted class as the Keras float32 model, test accuracy and its drop, whether the
export's parity check passes, single-image p50 (one thread) and batch-256 images/s (two
threads), with the float32 ONNX model as the first row.

ONNX Runtime multiplies uint8 activations by int8 weights with VPMADDUBSW on x86 CPUs
without VNNI, whose 16-bit sums of two products saturate for 8-bit weights; with VNNI
(avx512_vnni, avx_vnni) they do not. So the same int8 file can give different answers on
two machines; the header line says which kind this one is.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from inference import time_batch, time_single

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

VARIANTS = {  # label -> OnnxInt8 keyword arguments
    "8-bit weights, minmax (before)": dict(
        reduce_range=False, calibration="minmax", first_conv_float=False
    ),
    "8-bit, percentile, first conv float": dict(reduce_range=False),
    "7-bit, minmax": dict(calibration="minmax", first_conv_float=False),
    "7-bit, percentile": dict(first_conv_float=False),
    "7-bit, minmax, first conv float": dict(calibration="minmax"),
    "7-bit, percentile, first conv float (export default)": dict(),
    "uint8 weights, minmax, first conv float": dict(weights="uint8", calibration="minmax"),
}


def timings(path: Path, x: np.ndarray, seconds: float) -> tuple[float, float]:
    """(single-image p50 ms with one thread, batch images/s with two threads)."""
    from fashion_cnn.engines import OnnxEngine

    single = time_single(
        OnnxEngine(path, threads=1), [x[i : i + 1] for i in range(len(x))], seconds
    )
    batch = time_batch(OnnxEngine(path, threads=2), x, seconds)
    return single["p50_ms"], batch["images_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per measurement")
    args = parser.parse_args()

    from fashion_cnn import export
    from fashion_cnn.data import load_data
    from fashion_cnn.engines import OnnxEngine
    from fashion_cnn.evaluate import predict_proba
    from fashion_cnn.hardware import cpu_flags, cpuinfo_field
    from fashion_cnn.models import float32_clone
    from fashion_cnn.parity import PARITY, check_parity
    from fashion_cnn.quantize import OnnxInt8, quantize_onnx
    from fashion_cnn.runs import load_run_model

    flags = cpu_flags()
    vnni = sorted(flags & {"avx512_vnni", "avx_vnni"}) or ["none: int8 sums can saturate"]
    print(f"CPU: {cpuinfo_field('model name')}, VNNI: {', '.join(vnni)}\n")
    data = load_data(download=False)
    x_test = np.asarray(data.x_test, np.float32).reshape(-1, 28, 28, 1)
    calibration = np.asarray(data.x_train[: export.CALIBRATION_IMAGES], np.float32)
    calibration = calibration.reshape(-1, 28, 28, 1)

    print(
        "| run | ONNX model | same class | test acc % | drop (points) | parity | "
        "single p50 ms | batch 256 images/s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for run in args.runs:
        model = float32_clone(load_run_model(Path(run), precision="trained"))
        reference = predict_proba(model, x_test)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            path, _ = export._write_onnx(model, folder, None, calibration)
            float_path = folder / "float.onnx"
            path.rename(float_path)
            rows = [("float32", float_path)]
            for label, kwargs in VARIANTS.items():
                out = folder / f"{len(rows)}.onnx"
                quantize_onnx(float_path, out, calibration, export.INPUT_NAME, OnnxInt8(**kwargs))
                rows.append((label, out))
            for label, artifact in rows:
                probs = export._batched(OnnxEngine(artifact, threads=2), x_test)
                limits = PARITY[None if label == "float32" else "int8"]
                p = check_parity(reference, probs, data.y_test, limits)
                p50, throughput = timings(artifact, x_test[:256], args.seconds)
                verdict = "passes" if not p["failures"] else "refused"
                print(
                    f"| {Path(run).name} | {label} | {p['agreement']:.2%} | "
                    f"{100 * p['export_accuracy']:.2f} | {p['accuracy_drop_points']:+.2f} | "
                    f"{verdict} | {p50:.3f} | {throughput:,.0f} |",
                    flush=True,
                )
    print(f"\nCommand: `python benchmarks/int8_settings.py {' '.join(sys.argv[1:])}`")


if __name__ == "__main__":
    main()
