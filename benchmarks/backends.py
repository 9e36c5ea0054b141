"""Training step time of a recipe's network under each Keras backend installed somewhere.

The project trains with TensorFlow; the guide's figures for the blog's network (4.4x faster
than JAX, 2.4x than PyTorch) were measured on another CPU and another network. This script
checks that choice for the current networks on the machine at hand. Each contender runs in
a child process of its own Python (a virtual environment with that backend), one after the
other, alternating over `--repeats`; each child trains 5 warm-up steps of SGD with Nesterov
momentum on random images, then times `--steps` steps inside one `fit` call.

    python benchmarks/backends.py --model convnet4 --width 1 \
        --python torch=/path/to/torch-venv/bin/python --python jax=/path/to/jax-venv/bin/python

Contenders: TensorFlow fed by tf.data (as `fashion-cnn train` feeds it) and fed NumPy
arrays, and each `--python` backend fed NumPy arrays (JAX with `jit_compile=True`, its
Keras default: eager JAX is far slower; the others without). The child Pythons need Keras
and NumPy; `src/` is put on their path. Prints one Markdown row per contender: median ms a
step (each repeat's in brackets).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from fashion_cnn.hardware import prefer_onednn

CHILD = r"""
import json, sys, time
spec = json.loads(sys.argv[1])
import numpy as np, keras
from fashion_cnn.models import build_model
keras.utils.set_random_seed(0)
model = build_model(spec["model"], scale=1 / 255, width=spec["width"])
model.compile(keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
              "categorical_crossentropy", jit_compile=spec["jit_compile"])
bs, warm, steps = spec["batch_size"], 5, spec["steps"]
rng = np.random.default_rng(0)
x = rng.integers(0, 255, (bs * (warm + steps), 28, 28, 1)).astype("float32")
y = keras.utils.to_categorical(rng.integers(0, 10, len(x)), 10)
if spec["feed"] == "tf.data":
    import tensorflow as tf
    ds = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(bs).prefetch(2)
    model.fit(ds, steps_per_epoch=warm, epochs=1, verbose=0)
    t = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
else:
    n = bs * warm
    model.fit(x[:n], y[:n], batch_size=bs, epochs=1, verbose=0, shuffle=False)
    t = time.perf_counter()
    model.fit(x[n:], y[n:], batch_size=bs, epochs=1, verbose=0, shuffle=False)
print("RESULT " + json.dumps((time.perf_counter() - t) / steps * 1000), flush=True)
"""


def run_child(python: str, backend: str, spec: dict) -> float:
    """Milliseconds a step for one contender, in a fresh process."""
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    if backend == "tensorflow":
        prefer_onednn(env)  # as `fashion-cnn train` does
    out = subprocess.run(
        [python, "-c", CHILD, json.dumps(spec)], env=env, capture_output=True, text=True
    )
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return float(line.split()[1])
    raise RuntimeError(f"{backend} child failed:\n{out.stderr[-2000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="convnet4")
    parser.add_argument("--width", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--python", action="append", default=[], help="BACKEND=PATH of a Python that has it"
    )
    args = parser.parse_args(argv)

    contenders = [
        ("tensorflow", sys.executable, "tf.data"),
        ("tensorflow", sys.executable, "numpy"),
    ]
    for item in args.python:
        backend, sep, path = item.partition("=")
        if not sep or backend not in ("jax", "torch", "tensorflow"):
            parser.error(f"--python expects BACKEND=PATH with BACKEND jax or torch, got {item!r}")
        contenders.append((backend, path, "numpy"))
    times: dict[tuple, list[float]] = {c: [] for c in contenders}
    for _ in range(args.repeats):
        for backend, python, feed in contenders:
            spec = {
                "model": args.model,
                "width": args.width,
                "batch_size": args.batch_size,
                "steps": args.steps,
                "feed": feed,
                "jit_compile": backend == "jax",
            }
            times[(backend, python, feed)].append(run_child(python, backend, spec))
    reference = statistics.median(times[contenders[0]])
    print(f"{args.model}, width {args.width}, batch {args.batch_size}, float32, {args.steps} steps")
    print("| backend | fed by | ms a step, median (each repeat) | vs TensorFlow + tf.data |")
    print("|---|---|---|---|")
    for (backend, _, feed), ms in times.items():
        each = ", ".join(f"{m:.0f}" for m in ms)
        median = statistics.median(ms)
        print(f"| {backend} | {feed} | {median:.0f} ({each}) | {median / reference:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
