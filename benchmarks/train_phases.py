"""Where a training process's wall time goes: start-up, the first epoch (which traces the
training step), the others, and the time between the last epoch and the end of `train()`
(where tf.data's autotune thread used to stall).

    python benchmarks/train_phases.py [--recipe seed] [--epochs 10] [--repeats 3] [--autotune]
        [--train-subset N]

Each repeat is its own process (a fresh TensorFlow, as `fashion-cnn train` would be).
`--autotune` turns tf.data's autotuning back on for the training data, to reproduce the
stall that `fashion_cnn.batches.without_autotune` removes. `--train-subset` trains on the
first N training images (as `fashion-cnn train --train-subset`), to look at the fixed costs.
The "traces" column counts how often TensorFlow traced Keras' training step.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from fashion_cnn.hardware import prefer_onednn

CHILD = r"""
import dataclasses, json, sys, time
t0 = time.perf_counter()
import keras
from fashion_cnn import batches, train as tr
from fashion_cnn.config import load_recipe
from fashion_cnn.data import load_data

recipe, epochs, autotune, out = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
if autotune:
    batches.without_autotune = tr.without_autotune = lambda ds: ds
subset = int(sys.argv[5])
marks = {"traces": 0}
plain_step = keras.Model.train_step

def counting_step(self, data):  # runs once per trace
    marks["traces"] += 1
    return plain_step(self, data)

keras.Model.train_step = counting_step

class Hooks(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        marks["fit_start"] = time.perf_counter() - t0
    def on_epoch_end(self, epoch, logs=None):
        marks.setdefault("first_epoch_end", time.perf_counter() - t0)
    def on_train_end(self, logs=None):
        marks["last_epoch_end"] = time.perf_counter() - t0

data = load_data(download=False)
config = dataclasses.replace(load_recipe(recipe), epochs=epochs, train_subset=subset or None)
tr.train(config, data, out, verbose=0, overwrite=True, callbacks=[Hooks()])
marks["train_returned"] = time.perf_counter() - t0
print(json.dumps(marks))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="seed")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--autotune", action="store_true")
    parser.add_argument("--train-subset", type=int, default=0, help="0: all images")
    args = parser.parse_args()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    prefer_onednn(env)  # the child calls `train` as `fashion-cnn train` would run it
    print(
        f"{args.recipe}, {args.epochs} epochs, tf.data autotune {'on' if args.autotune else 'off'}"
        + (f", {args.train_subset} training images" if args.train_subset else "")
    )
    print(
        "| repeat | wall s | start-up s | first epoch s | other epochs s "
        "| after the last epoch s | traces |"
    )
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            t = time.perf_counter()
            done = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    CHILD,
                    args.recipe,
                    str(args.epochs),
                    "1" if args.autotune else "0",
                    os.path.join(tmp, "run"),
                    str(args.train_subset),
                ],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            wall = time.perf_counter() - t
            m = json.loads(done.stdout.strip().splitlines()[-1])
            print(
                f"| {r} | {wall:.1f} | {m['fit_start']:.1f} | "
                f"{m['first_epoch_end'] - m['fit_start']:.1f} | "
                f"{m['last_epoch_end'] - m['first_epoch_end']:.1f} | "
                f"{m['train_returned'] - m['last_epoch_end']:.1f} | {m['traces']} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
