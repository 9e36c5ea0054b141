"""Times training steps of a model in a fresh child process (shared by batchnorm.py and
profile_step.py).

The child builds the model in the given precision, compiles it as training does (SGD with
Nesterov momentum), trains 5 warm-up steps on random images (building and tracing), then
trains `steps` steps at `batch_size`, timing each one with a callback. Its stdout holds
`PROFILE-START` and `PROFILE-END` around the timed steps (so a caller can cut out what the
libraries logged meanwhile, e.g. oneDNN's verbose lines) and a `STEPS` line with the step
times.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from fashion_cnn.hardware import prefer_onednn

CHILD = r"""
import json, sys, time
import numpy as np, tensorflow as tf, keras
from fashion_cnn.models import build_model
spec = json.loads(sys.argv[1])
keras.config.set_dtype_policy(spec["precision"])
keras.utils.set_random_seed(0)
m = build_model(
    spec["model"], scale=1 / 255, width=spec["width"], fused_bn=spec["fused_bn"], se=spec["se"],
    channels=spec["channels"],
)
m.compile(keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True), "categorical_crossentropy",
          metrics=["accuracy"], jit_compile=spec["jit_compile"])
rng = np.random.default_rng(0)
x = rng.integers(0, 255, (4096, 28, 28, 1)).astype("float32")
y = keras.utils.to_categorical(rng.integers(0, 10, 4096), 10)
ds = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(spec["batch_size"]).prefetch(2)
m.fit(ds, steps_per_epoch=5, epochs=1, verbose=0)  # build and trace first
times = []
class T(keras.callbacks.Callback):
    def on_train_batch_begin(self, b, logs=None): self.t = time.perf_counter()
    def on_train_batch_end(self, b, logs=None): times.append(time.perf_counter() - self.t)
print("PROFILE-START", flush=True)
t0 = time.perf_counter()
m.fit(ds, steps_per_epoch=spec["steps"], epochs=1, verbose=0, callbacks=[T()])
fit_s = time.perf_counter() - t0
print("PROFILE-END", flush=True)
print("STEPS " + json.dumps({"times": times, "fit_s": fit_s}), flush=True)
"""


def run_steps(
    *,
    model: str,
    width: int,
    fused_bn: bool,
    precision: str,
    batch_size: int,
    jit_compile: bool,
    steps: int,
    env: dict[str, str] | None = None,
    se: int = 0,
    channels: list[int] | None = None,
) -> tuple[dict, str]:
    """Trains `steps` timed steps in a child process.

    Args:
        model, width, fused_bn, se, channels: what `fashion_cnn.models.build_model` builds.
        precision: a Keras dtype policy, e.g. "mixed_bfloat16".
        batch_size, jit_compile: as in a recipe.
        steps: how many steps to time (after 5 untimed ones).
        env: extra environment variables for the child (e.g. ONEDNN_VERBOSE); the child
            otherwise gets TensorFlow's oneDNN kernels as `fashion-cnn` does.

    Returns:
        `({"times": [seconds of each step], "fit_s": seconds of the timed fit call},
        stdout of the child)`.

    Raises:
        subprocess.CalledProcessError: the child failed (its stderr is attached).
    """
    spec = {
        "model": model,
        "width": width,
        "se": se,
        "channels": channels,
        "fused_bn": fused_bn,
        "precision": precision,
        "batch_size": batch_size,
        "jit_compile": jit_compile,
        "steps": steps,
    }
    child_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    prefer_onednn(child_env)  # as `fashion-cnn train` runs
    child_env.update(env or {})
    out = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(spec)],
        env=child_env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.split("STEPS ", 1)[1].splitlines()[0]), out


def run_recipe_steps(
    config, *, precision: str, steps: int, env: dict[str, str] | None = None
) -> tuple[dict, str]:
    """`run_steps` with a recipe's model, width or channels, `fused_bn`, `se`, batch size
    and `jit_compile`.

    Args:
        config: a `fashion_cnn.config.TrainConfig`.
        precision: a concrete Keras dtype policy (not "auto").
        steps, env: as in `run_steps`.
    """
    return run_steps(
        model=config.model,
        width=config.width,
        fused_bn=config.fused_bn,
        se=config.se,
        channels=config.channels,
        precision=precision,
        batch_size=config.batch_size,
        jit_compile=config.jit_compile,
        steps=steps,
        env=env,
    )


def alternating(measure, variants, repeats: int) -> dict[str, list[float]]:
    """`measure(variant)` for each variant in turn, `repeats` rounds, so that a drift in the
    machine's speed hits every variant alike.

    Returns:
        variant -> its measurements, in order.
    """
    results: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(repeats):
        for variant in variants:
            results[variant].append(measure(variant))
    return results


def listed(values: list[float]) -> str:
    """The values as whole numbers, comma-separated (a table cell's detail)."""
    return ", ".join(f"{v:.0f}" for v in values)
