"""Training step time of the convnet with Keras' BatchNormalization vs TF's fused kernel.

    python benchmarks/batchnorm.py [--widths 1 2] [--steps 40] [--repeats 2]
                                   [--precision mixed_bfloat16]

Keras 3 normalizes with separate element-wise float32 ops (a cast up, mean, variance,
scale and shift, a cast down, and their gradients); `FusedBatchNormalization`
(`fused_bn = true` in a recipe) trains with TensorFlow's `FusedBatchNormV3` instead. For each
width and variant, a child process builds the `convnet` in `--precision` (default mixed bf16,
as first measured; "auto" is what training picks on this machine), compiles
it as training does (SGD with Nesterov momentum, no XLA), trains a few warm-up steps on
random images, then times `--steps` steps at batch 256; the median step is reported. The
variants alternate, `--repeats` times each, so a drift in the machine's speed hits both.
"""

from __future__ import annotations

import argparse
import functools
import statistics

from fashion_cnn.hardware import resolve_precision
from step_timing import alternating, listed, run_steps


def step_ms(variant: str, width: int, steps: int, precision: str) -> float:
    steps_s, _ = run_steps(
        model="convnet",
        width=width,
        fused_bn=variant == "fused",
        precision=precision,
        batch_size=256,
        jit_compile=False,
        steps=steps,
    )
    return 1000 * statistics.median(steps_s["times"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--precision", default="mixed_bfloat16", choices=["mixed_bfloat16", "float32", "auto"]
    )
    args = parser.parse_args()
    precision = resolve_precision(args.precision)
    print(f"precision: {precision}\n")
    print(
        "| width | Keras BatchNormalization ms a step | fused ms a step | speed-up |\n"
        "|---|---|---|---|"
    )
    for width in args.widths:
        ms = alternating(
            functools.partial(step_ms, width=width, steps=args.steps, precision=precision),
            ("keras", "fused"),
            args.repeats,
        )
        keras_ms, fused_ms = (statistics.mean(ms[v]) for v in ("keras", "fused"))
        print(
            f"| {width} | {keras_ms:.1f} ({listed(ms['keras'])}) "
            f"| {fused_ms:.1f} ({listed(ms['fused'])}) | {keras_ms / fused_ms:.2f}x |"
        )


if __name__ == "__main__":
    main()
