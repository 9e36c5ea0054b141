"""Training throughput: `fashion-cnn train --recipe seed` against a plain Keras script that
follows the blog (default `compile`, i.e. Keras' XLA auto-compilation), on the same data,
in one run. Prints a Markdown table row per contender and the speed ratio.

    python benchmarks/train_speed.py [--seeds 0 1] [--epochs 10]

Each contender runs in its own process, one after the other, so neither competes for the
two cores. Throughput = training images x epochs / seconds inside `fit` (validation passes
included for both); test accuracy is the final model's on the 10k test images.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PLAIN_KERAS = r"""
import json, os, sys, time
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import keras
from fashion_cnn.data import load_data

seed, epochs = int(sys.argv[1]), int(sys.argv[2])
keras.utils.set_random_seed(seed)
d = load_data(download=False)
# As in the blog's notebook: one-hot labels, channel axis, raw pixels, RMSprop(1e-4).
x, y = d.x_train.astype("float32"), keras.utils.to_categorical(d.y_train, 10)
L = keras.layers
model = keras.Sequential([
    keras.Input((28, 28, 1)),
    L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(),
    L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(),
    L.Conv2D(64, 3, activation="relu"), L.Flatten(),
    L.Dense(64, activation="relu"), L.Dense(10, activation="softmax"),
])
model.compile(optimizer=keras.optimizers.RMSprop(1e-4), loss="categorical_crossentropy",
              metrics=["accuracy"])
t = time.perf_counter()
model.fit(x, y, batch_size=512, epochs=epochs, validation_split=0.1, verbose=0)
fit_s = time.perf_counter() - t
_, acc = model.evaluate(d.x_test.astype("float32"), keras.utils.to_categorical(d.y_test, 10),
                        verbose=0)
print(json.dumps({"fit_seconds": fit_s, "train_images": 54000, "test_accuracy": acc}))
"""


def run_plain(seed: int, epochs: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PLAIN_KERAS, str(seed), str(epochs)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_ours(seed: int, epochs: int, workdir: Path, precision: str | None) -> dict:
    run = workdir / f"seed{seed}"
    cli = [sys.executable, "-m", "fashion_cnn"]
    common = ["--no-download"]
    subprocess.run(
        [
            *cli,
            "train",
            "--recipe",
            "seed",
            "--seed",
            str(seed),
            "--epochs",
            str(epochs),
            "--out",
            str(run),
            "--verbosity",
            "0",
            *common,
            *(["--precision", precision] if precision else []),
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run([*cli, "evaluate", str(run), *common], check=True, capture_output=True)
    history = json.loads((run / "history.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    return {
        "fit_seconds": sum(history["epoch_seconds"]),
        "train_images": history["train_images"],
        "test_accuracy": metrics["test_accuracy"],
    }


def summarize(name: str, results: list[dict], epochs: int) -> dict:
    ips = [r["train_images"] * epochs / r["fit_seconds"] for r in results]
    acc = [100 * r["test_accuracy"] for r in results]

    def ms(v):
        return (
            f"{statistics.mean(v):.1f} ± {statistics.stdev(v):.1f}" if len(v) > 1 else f"{v[0]:.1f}"
        )

    secs = [r["fit_seconds"] for r in results]
    print(f"| {name} | {len(results)} | {ms(secs)} | {ms(ips)} | {ms(acc)} |", flush=True)
    return {"images_per_s": statistics.mean(ips), "accuracy": statistics.mean(acc)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--precision", help="override the seed recipe's precision")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        ours = [run_ours(s, args.epochs, Path(tmp), args.precision) for s in args.seeds]
    plain = [run_plain(s, args.epochs) for s in args.seeds]
    print("| contender | seeds | fit seconds | train images/s | test accuracy % |")
    print("|---|---|---|---|---|")
    a = summarize("plain Keras, blog script (default compile)", plain, args.epochs)
    flag = f" --precision {args.precision}" if args.precision else ""
    b = summarize(f"`fashion-cnn train --recipe seed{flag}`", ours, args.epochs)
    print(
        f"\nspeed ratio {b['images_per_s'] / a['images_per_s']:.2f}x, "
        f"accuracy difference {b['accuracy'] - a['accuracy']:+.2f} points "
        f"(benchmark wall time {time.perf_counter() - t0:.0f} s)"
    )


if __name__ == "__main__":
    main()
