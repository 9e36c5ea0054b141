"""Training step time of the convnet with Keras' BatchNormalization vs TF's fused kernel.

    python benchmarks/batchnorm.py [--widths 1 2] [--steps 40] [--repeats 2]

Keras 3 normalizes with separate element-wise float32 ops (a cast up, mean, variance,
scale and shift, a cast down, and their gradients); `FusedBatchNormalization`
(`fused_bn = true` in a recipe) trains with TensorFlow's `FusedBatchNormV3` instead. For each
width and variant, a child process builds the `convnet` in mixed bf16 precision, compiles
it as training does (SGD with Nesterov momentum, no XLA), trains a few warm-up steps on
random images, then times `--steps` steps at batch 256; the median step is reported. The
variants alternate, `--repeats` times each, so a drift in the machine's speed hits both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, sys, time
import numpy as np, tensorflow as tf, keras
from fashion_cnn.models import build_model
fused, width, steps = sys.argv[1] == "fused", int(sys.argv[2]), int(sys.argv[3])
keras.config.set_dtype_policy("mixed_bfloat16")
keras.utils.set_random_seed(0)
m = build_model("convnet", scale=1 / 255, width=width, fused_bn=fused)
m.compile(keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True), "categorical_crossentropy",
          metrics=["accuracy"], jit_compile=False)
rng = np.random.default_rng(0)
x = rng.integers(0, 255, (4096, 28, 28, 1)).astype("float32")
y = keras.utils.to_categorical(rng.integers(0, 10, 4096), 10)
ds = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(256).prefetch(2)
m.fit(ds, steps_per_epoch=5, epochs=1, verbose=0)  # build and trace first
times = []
class T(keras.callbacks.Callback):
    def on_train_batch_begin(self, b, logs=None): self.t = time.perf_counter()
    def on_train_batch_end(self, b, logs=None): times.append(time.perf_counter() - self.t)
m.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[T()])
print("RESULT " + json.dumps(1000 * float(np.median(times))), flush=True)
"""


def step_ms(variant: str, width: int, steps: int) -> float:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run(
        [sys.executable, "-c", CHILD, variant, str(width), str(steps)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.split("RESULT ", 1)[1].splitlines()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(
        "| width | Keras BatchNormalization ms a step | fused ms a step | speed-up |\n"
        "|---|---|---|---|"
    )
    for width in args.widths:
        ms: dict[str, list[float]] = {"keras": [], "fused": []}
        for _ in range(args.repeats):
            for variant in ms:
                ms[variant].append(step_ms(variant, width, args.steps))
        keras_ms, fused_ms = (statistics.mean(ms[v]) for v in ("keras", "fused"))
        runs = {v: ", ".join(f"{t:.0f}" for t in ms[v]) for v in ms}
        print(
            f"| {width} | {keras_ms:.1f} ({runs['keras']}) | {fused_ms:.1f} ({runs['fused']}) "
            f"| {keras_ms / fused_ms:.2f}x |"
        )


if __name__ == "__main__":
    main()
