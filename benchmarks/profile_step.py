"""Where a training step's time goes: oneDNN's own timing of every primitive it runs.

    python benchmarks/profile_step.py [--recipe fast] [--steps 30]

Trains the recipe's model (its width, precision and batch size) for `--steps` steps on
random images in a child process with `ONEDNN_VERBOSE=profile_exec`, then sums oneDNN's
execution times by kind (convolution forward / backward-data / backward-weights, reorders,
pooling, other) and lists the convolutions by shape with their GFLOP/s. Also prints the
median step time measured around each step (callbacks), the images/s it implies, and how
long the whole `fit` call took against the sum of its steps (on this machine a `fit` call
sometimes stalls for ~5 or ~10 s outside its steps, which short timings must exclude).

oneDNN times each primitive on its own; TensorFlow runs independent ops (a layer's
backward-data and backward-weights) at the same time on the same two cores, so single
figures can overlap, while their sum stays comparable to the step time.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import subprocess
import sys

CHILD = r"""
import json, os, sys, time
import numpy as np, tensorflow as tf, keras
from fashion_cnn.config import load_recipe
from fashion_cnn.models import build_model
c = load_recipe(sys.argv[1]); steps = int(sys.argv[2])
keras.config.set_dtype_policy(c.precision)
m = build_model(c.model, scale=c.scale, width=c.width, fused_bn=c.fused_bn)
m.compile(keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True), "categorical_crossentropy",
          metrics=["accuracy"], jit_compile=c.jit_compile)
rng = np.random.default_rng(0)
x = rng.integers(0, 255, (4096, 28, 28, 1)).astype("float32")
y = keras.utils.to_categorical(rng.integers(0, 10, 4096), 10)
ds = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(c.batch_size).prefetch(2)
m.fit(ds, steps_per_epoch=5, epochs=1, verbose=0)  # build and trace first
times = []
class T(keras.callbacks.Callback):
    def on_train_batch_begin(self, b, logs=None): self.t = time.perf_counter()
    def on_train_batch_end(self, b, logs=None): times.append(time.perf_counter() - self.t)
print("PROFILE-START", flush=True)
t0 = time.perf_counter()
m.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[T()])
fit_s = time.perf_counter() - t0
print("PROFILE-END", flush=True)
print("STEPS " + json.dumps({"times": times, "batch": c.batch_size, "fit_s": fit_s}), flush=True)
"""


def conv_shape(desc: str) -> dict[str, int]:
    """Sizes from oneDNN's convolution descriptor, e.g. mb256_ic16oc32_ih28oh28kh3..."""
    return {k: int(n) for k, n in re.findall(r"(mb|ic|oc|oh|ow|kh|kw)(\d+)", desc)}


def conv_flops(desc: str) -> float:
    """FLOPs of one convolution (a multiply-add counts 2)."""
    v = conv_shape(desc)
    return 2.0 * v["mb"] * v["ic"] * v["oc"] * v["oh"] * v["ow"] * v["kh"] * v["kw"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="fast")
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    env = dict(os.environ, ONEDNN_VERBOSE="profile_exec", TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run(
        [sys.executable, "-c", CHILD, args.recipe, str(args.steps)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    body = out.split("PROFILE-START", 1)[1].split("PROFILE-END", 1)[0]
    steps = json.loads(out.split("STEPS ", 1)[1].splitlines()[0])
    by_kind: dict[str, float] = collections.defaultdict(float)
    convs: dict[tuple[str, str], float] = collections.defaultdict(float)
    for line in body.splitlines():
        if not line.startswith("onednn_verbose") or ",exec," not in line:
            continue
        f = line.split(",")
        if f[2] != "primitive":
            continue
        kind, prop, desc, ms = f[5], f[7], f[-2], float(f[-1])
        if kind == "convolution":
            label = {"forward_training": "forward", "forward_inference": "forward"}.get(prop, prop)
            by_kind[f"convolution {label}"] += ms
            convs[(desc, label)] += ms
        else:
            by_kind[kind] += ms
    total = sum(by_kind.values())
    step_ms = 1000 * statistics.median(steps["times"])
    print(
        f"{args.recipe}: median step {step_ms:.1f} ms at batch {steps['batch']} "
        f"({1000 * steps['batch'] / step_ms:.0f} images/s); oneDNN primitives "
        f"{total / args.steps:.1f} ms a step; the fit call took {steps['fit_s']:.1f} s for "
        f"{sum(steps['times']):.1f} s of steps"
    )
    print("\n| kind | ms a step | share of oneDNN time |\n|---|---|---|")
    for kind, ms in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"| {kind} | {ms / args.steps:.1f} | {100 * ms / total:.0f}% |")
    print("\n| convolution | pass | ms a step | GFLOP/s |\n|---|---|---|---|")
    for (desc, label), ms in sorted(convs.items(), key=lambda kv: -kv[1]):
        v, per_step = conv_shape(desc), ms / args.steps
        gflops = conv_flops(desc) / (per_step / 1000) / 1e9
        name = f"{v['ic']}→{v['oc']} at {v['oh']}x{v['ow']}"
        print(f"| {name} | {label} | {per_step:.2f} | {gflops:.0f} |")


if __name__ == "__main__":
    main()
