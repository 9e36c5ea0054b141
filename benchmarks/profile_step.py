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
import os
import re
import statistics

from fashion_cnn.hardware import resolve_precision
from recipes import load as load_recipe  # a shipped recipe or a recipe file
from step_timing import run_recipe_steps


def conv_shape(desc: str) -> dict[str, int]:
    """Sizes from oneDNN's convolution descriptor, e.g. mb256_ic16oc32_ih28oh28kh3..."""
    return {k: int(n) for k, n in re.findall(r"(mb|ic|oc|oh|ow|kh|kw)(\d+)", desc)}


def conv_flops(desc: str) -> float:
    """FLOPs of one convolution (a multiply-add counts 2)."""
    v = conv_shape(desc)
    return 2.0 * v["mb"] * v["ic"] * v["oc"] * v["oh"] * v["ow"] * v["kh"] * v["kw"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--recipe",
        default="fast",
        help="a shipped recipe (NAME or NAME@VERSION) or a recipe file (.toml, .json)",
    )
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # validating a recipe imports Keras
    config = load_recipe(args.recipe)
    precision = resolve_precision(config.precision)  # "auto": what `train` would pick here
    steps, out = run_recipe_steps(
        config, precision=precision, steps=args.steps, env={"ONEDNN_VERBOSE": "profile_exec"}
    )
    body = out.split("PROFILE-START", 1)[1].split("PROFILE-END", 1)[0]
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
        f"{args.recipe}: median step {step_ms:.1f} ms at batch {config.batch_size}, {precision} "
        f"({1000 * config.batch_size / step_ms:.0f} images/s); oneDNN primitives "
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
