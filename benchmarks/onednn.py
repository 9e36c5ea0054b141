"""Training step time of each recipe's model with TensorFlow's oneDNN kernels on and off.

    python benchmarks/onednn.py [--recipes seed fast best] [--precision float32] [--steps 10]
                                [--repeats 2]

TensorFlow turns its oneDNN operations on by default only on x86 CPUs with AVX512-VNNI,
AVX512-BF16, AVX-VNNI or AMX; elsewhere (e.g. an AVX2-only CPU) it runs its Eigen kernels
unless `TF_ENABLE_ONEDNN_OPTS=1` is set before TensorFlow is imported. `fashion-cnn train`
and `tune` set it on x86-64 (`fashion_cnn.hardware.prefer_onednn`); this measures why. For
each recipe, child processes (`step_timing.run_recipe_steps`) with
`TF_ENABLE_ONEDNN_OPTS=0` and `=1` alternate, `--repeats` times each; each reports the
median of `--steps` timed steps on random images. The first lines name the CPU and whether
TensorFlow would turn oneDNN on by itself here.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import subprocess
import sys

from fashion_cnn.hardware import ONEDNN_VARIABLE, cpuinfo_field
from recipes import load as load_recipe  # a shipped recipe or a recipe file
from step_timing import alternating, listed, run_recipe_steps

SETTINGS = ("0", "1")
DEFAULT_CHECK = (
    "from tensorflow.python.util import _pywrap_util_port; print(_pywrap_util_port.IsMklEnabled())"
)


def step_ms(config, setting: str, precision: str, steps: int) -> float:
    times, _ = run_recipe_steps(
        config, precision=precision, steps=steps, env={ONEDNN_VARIABLE: setting}
    )
    return 1000 * statistics.median(times["times"])


def tensorflow_default() -> str:
    """Whether TensorFlow turns oneDNN on here by itself ("True"/"False")."""
    env = {k: v for k, v in os.environ.items() if k != ONEDNN_VARIABLE}
    out = subprocess.run(
        [sys.executable, "-c", DEFAULT_CHECK],
        env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--recipes",
        nargs="+",
        default=["seed", "fast", "best"],
        help="shipped recipes (NAME or NAME@VERSION) or recipe files (.toml, .json)",
    )
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    name = cpuinfo_field("model name") or "unknown CPU"
    family = cpuinfo_field("cpu family") or "?"
    model = cpuinfo_field("model") or "?"
    print(f"CPU: {name}, family {family} model {model}")
    print(f"oneDNN on by TensorFlow's default here: {tensorflow_default()}")
    print(f"precision: {args.precision}\n")
    print(
        "| recipe | batch | oneDNN off ms a step | oneDNN on ms a step | speed-up |\n"
        "|---|---|---|---|---|"
    )
    for recipe in args.recipes:
        config = load_recipe(recipe)
        measure = functools.partial(step_ms, config, precision=args.precision, steps=args.steps)
        ms = alternating(measure, SETTINGS, args.repeats)
        off, on = (statistics.mean(ms[s]) for s in SETTINGS)
        print(
            f"| {recipe} | {config.batch_size} | {off:.0f} ({listed(ms['0'])}) "
            f"| {on:.0f} ({listed(ms['1'])}) | {off / on:.2f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
