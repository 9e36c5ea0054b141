"""Inference speed of each engine: single-image latency (1 thread) and batch throughput
(batch 256, 2 threads), for trained runs, float and int8, in one run.

    python benchmarks/inference.py runs/seed runs/fast [--write BENCHMARKS.md]

Engines: `model.predict` (Keras' own loop), the direct compiled Keras call that `predict` and
`serve` use, ONNX Runtime and LiteRT, each float32 and int8 (exports are made with
`fashion-cnn export` first when a run lacks them, with its parity check). Every contender
runs in its own process so that the thread count is set before the runtime starts, sees the
same 256 real test images, and is warmed up before timing. `--write` replaces the section
between `<!-- inference:begin -->` and `<!-- inference:end -->` in the given file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CONTENDERS = ("keras-predict", "keras", "onnx", "onnx-int8", "litert", "litert-int8")
BATCH = 256


def setup_threads(threads: int) -> None:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def make_call(run: str, contender: str, threads: int):
    """A function images -> probabilities for one contender."""
    from fashion_cnn.engines import KerasEngine, export_dir, open_artifact
    from fashion_cnn.runs import load_run_model

    if contender.startswith("keras"):
        model = load_run_model(run)
        if contender == "keras-predict":
            return lambda x: model.predict(x, verbose=0, batch_size=BATCH)
        return KerasEngine(model)
    artifact = "model.onnx" if contender.startswith("onnx") else "model.tflite"
    return open_artifact(export_dir(run, contender) / artifact, threads=threads, name=contender)


def time_single(call, images: list, seconds: float) -> dict:
    """p50/p99 ms of `call` on one image at a time, cycling through `images`, after 50
    warm-up calls, for at least `seconds` and 30 calls."""
    for i in range(50):  # warm-up
        call(images[i % len(images)])
    times, start, i = [], time.perf_counter(), 0
    while time.perf_counter() - start < seconds or len(times) < 30:
        t0 = time.perf_counter_ns()
        call(images[i % len(images)])
        times.append(time.perf_counter_ns() - t0)
        i += 1
    ms = np.array(times) / 1e6
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "calls": len(ms),
    }


def time_batch(call, x: np.ndarray, seconds: float) -> dict:
    """Images/s of `call` on the whole batch `x` (median call), after 3 warm-up calls."""
    for _ in range(3):
        call(x)
    times, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 5:
        t0 = time.perf_counter()
        call(x)
        times.append(time.perf_counter() - t0)
    return {"images_per_s": float(len(x) / np.median(times)), "calls": len(times)}


def measure(run: str, contender: str, mode: str, seconds: float) -> dict:
    """Times one contender in this process (the worker side)."""
    from fashion_cnn.data import load_data

    threads = 1 if mode == "single" else 2
    setup_threads(threads)
    x = load_data(download=False).x_test[:BATCH].astype("float32")
    call = make_call(run, contender, threads)
    if mode == "single":
        return time_single(call, [x[i : i + 1] for i in range(BATCH)], seconds)
    return time_batch(call, x, seconds)


def spawn(run: str, contender: str, mode: str, seconds: float) -> dict:
    cmd = [sys.executable, __file__, "--worker", run, contender, mode, str(seconds)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def ensure_exports(runs: list[str]) -> dict:
    """Exports what each run lacks. An int8 export that fails its parity check is refused by
    `fashion-cnn export`; it is still written to a scratch folder here so that its speed
    can be shown, marked as failing.

    Returns:
        {run: {engine: parity note}} for the table.
    """
    from fashion_cnn import export as export_mod
    from fashion_cnn.data import load_data
    from fashion_cnn.engines import CARD_FILE, export_dir
    from fashion_cnn.io_utils import read_json
    from fashion_cnn.models import float32_clone
    from fashion_cnn.runs import load_run_model

    data = None
    notes: dict = {}
    for run in runs:
        precision = read_json(Path(run) / "config.json").get("precision")
        notes[run] = {c: f"the run's model as trained ({precision})" for c in CONTENDERS[:2]}
        for name in CONTENDERS:
            if name.startswith("keras"):
                continue
            folder = export_dir(run, name)
            if not (folder / CARD_FILE).exists():
                data = data or load_data(download=False)
                fmt, _, quant = name.partition("-")
                try:
                    export_mod.export_run(run, data, fmt, quantize=quant or None, overwrite=True)
                except export_mod.ExportError as e:
                    if not quant:
                        raise
                    notes[run][name] = "refused by export: " + str(e).split(": ", 1)[1]
                    model = float32_clone(load_run_model(run, precision="trained"))
                    calibration = data.x_train[: export_mod.CALIBRATION_IMAGES]
                    writer = export_mod._write_onnx if fmt == "onnx" else export_mod._write_litert
                    folder.mkdir(parents=True, exist_ok=True)
                    writer(model, folder, quant, calibration.astype("float32"))
                    (folder / "REFUSED").write_text(notes[run][name])
                    continue
            if (folder / "REFUSED").exists():
                notes[run][name] = (folder / "REFUSED").read_text()
                continue
            p = read_json(folder / CARD_FILE)["parity"]
            notes[run][name] = (
                f"same class {p['agreement']:.2%}, max abs dp {p['max_abs_diff']:.1e}, "
                f"accuracy {p['export_accuracy']:.2%} (Keras float32 {p['keras_accuracy']:.2%})"
            )
            print(run, name, notes[run][name], file=sys.stderr)
    return notes


def table(results: dict, runs: list[str], notes: dict) -> str:
    lines = [
        "| run | engine | single image p50 ms | p99 ms | batch 256 images/s | int8 / float "
        "| parity on the 10k test images |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        for c in CONTENDERS:
            s, b = results[run][c]["single"], results[run][c]["batch"]
            if "error" in s or "error" in b:
                lines.append(
                    f"| {Path(run).name} | {c} | error: {s.get('error') or b.get('error')} | | | |"
                )
                continue
            ratio = ""
            if c.endswith("int8"):
                base = results[run][c.removesuffix("-int8")]["batch"].get("images_per_s")
                ratio = f"{b['images_per_s'] / base:.2f}x" if base else ""
            lines.append(
                f"| {Path(run).name} | {c} | {s['p50_ms']:.3f} | {s['p99_ms']:.3f} | "
                f"{b['images_per_s']:,.0f} | {ratio} | {notes[run].get(c, '')} |"
            )
    return "\n".join(lines)


def write_section(path: Path, text: str) -> None:
    begin, end = "<!-- inference:begin -->", "<!-- inference:end -->"
    doc = path.read_text()
    if begin not in doc or end not in doc:
        raise SystemExit(f"{path} has no {begin} ... {end} section to replace")
    head, rest = doc.split(begin, 1)
    tail = rest.split(end, 1)[1]
    path.write_text(f"{head}{begin}\n{text}\n{end}{tail}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        run, contender, mode, seconds = sys.argv[2:6]
        print(json.dumps(measure(run, contender, mode, float(seconds))))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="trained run folders (e.g. runs/seed runs/fast)")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per measurement")
    parser.add_argument("--write", type=Path, help="Markdown file whose section to replace")
    args = parser.parse_args()
    notes = ensure_exports(args.runs)
    results: dict = {}
    for run in args.runs:
        results[run] = {}
        for c in CONTENDERS:
            results[run][c] = {
                mode: spawn(run, c, mode, args.seconds) for mode in ("single", "batch")
            }
            print(Path(run).name, c, json.dumps(results[run][c]), file=sys.stderr)
    cmd = "python benchmarks/inference.py " + " ".join(args.runs)
    text = table(results, args.runs, notes) + f"\n\nCommand: `{cmd}`"
    print(text)
    if args.write:
        write_section(args.write, text)


if __name__ == "__main__":
    main()
