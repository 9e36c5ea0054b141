"""Wall time and peak memory of `fashion-cnn predict` on a photo or a folder, per engine.

    python benchmarks/cli_predict.py RUN [INPUT] [--engines keras onnx] [--repeats 5]
                                     [--photos 300]

What a user waits for when classifying photos from the command line: the whole process,
start-up, imports, model load, preprocessing and the answers. INPUT is what `predict`
takes: a photo, or a folder of them; without it, a temporary folder of `--photos` product-
photo-like JPEGs (the first test images, upscaled to 900x900 on a white 1000x1333 canvas,
light noise, quality 90; 1.3 megapixels, ~120 KB each). Each repeat is a fresh process
(`python -m fashion_cnn predict RUN INPUT --engine E`), the engines alternating; the table
gives the median wall time and peak resident memory (`wait4`) of each engine, and whether
the process imported TensorFlow. RUN needs the exports of the engines named
(`fashion-cnn export RUN --format onnx`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROBE = (
    "import runpy, sys; sys.argv = ['fashion-cnn', *sys.argv[1:]]\n"
    "try:\n    runpy.run_module('fashion_cnn', run_name='__main__')\n"
    "finally:\n    print('TENSORFLOW', 'tensorflow' in sys.modules, file=sys.stderr)\n"
)


def one_run(run: str, inputs: str, engine: str) -> tuple[float, float, bool]:
    """(wall s, peak RSS MB, imported TensorFlow) of one `predict` process."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    start = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", PROBE, "predict", run, inputs, "--engine", engine],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    err = child.stderr.read()
    child.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"predict --engine {engine} failed:\n{err}")
    return wall, usage.ru_maxrss / 1024, "TENSORFLOW True" in err


def write_photos(folder: Path, n: int) -> None:
    """`n` product-photo-like JPEGs of the first test images, into `folder`."""
    import numpy as np
    from PIL import Image

    from fashion_cnn.data import load_data

    x = load_data(download=False).x_test[:n, ..., 0]
    rng = np.random.default_rng(0)
    for i, image in enumerate(x):
        item = Image.fromarray(255 - image).resize((900, 900), Image.BICUBIC)
        canvas = Image.new("L", (1000, 1333), 255)
        canvas.paste(item, (50, 200))
        pixels = np.asarray(canvas.convert("RGB"), np.float32)
        pixels += rng.normal(0, 3, pixels.shape)
        photo = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
        photo.save(folder / f"p{i:04d}.jpg", quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("inputs", metavar="INPUT", nargs="?")
    parser.add_argument("--photos", type=int, default=300)
    parser.add_argument("--engines", nargs="+", default=["keras", "onnx"])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float, bool]]] = {e: [] for e in args.engines}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = args.inputs
        if inputs is None:
            write_photos(Path(tmp), args.photos)
            inputs = tmp
            print(f"{args.photos} photos written to a temporary folder")
        for _ in range(args.repeats):
            for engine in args.engines:
                results[engine].append(one_run(args.run, inputs, engine))
    print(
        "| engine | wall s, median (each) | peak RSS MB, median | imports TensorFlow |\n"
        "|---|---|---|---|"
    )
    for engine, runs in results.items():
        walls = [w for w, _, _ in runs]
        each = ", ".join(f"{w:.2f}" for w in walls)
        rss = statistics.median(r for _, r, _ in runs)
        tf_loaded = (
            "yes"
            if all(t for _, _, t in runs)
            else "no"
            if not any(t for *_, t in runs)
            else "sometimes"
        )
        print(f"| {engine} | {statistics.median(walls):.2f} ({each}) | {rss:.0f} | {tf_loaded} |")


if __name__ == "__main__":
    main()
