"""Training step time of each recipe's model in float32 and in mixed bf16, on this machine.

    python benchmarks/precision.py [--recipes seed fast best] [--steps 10] [--repeats 2]

What `precision = "auto"` (`fashion_cnn.hardware`) decides between. For each recipe and
precision, a child process builds the recipe's model, compiles it as training does (SGD
with Nesterov momentum, the recipe's batch size and `jit_compile`), trains a few warm-up
steps on random images, then times `--steps` steps; the median step is reported. The
precisions alternate, `--repeats` times each, so a drift in the machine's speed hits both.
The first lines name the CPU, its bf16 flags and what "auto" picks here.
"""

from __future__ import annotations

import argparse
import functools
import statistics

from fashion_cnn.hardware import CPU_BF16_FLAGS, auto_precision, cpu_flags, cpuinfo_field
from recipes import load as load_recipe  # a shipped recipe or a recipe file
from step_timing import alternating, listed, run_recipe_steps

PRECISIONS = ("float32", "mixed_bfloat16")


def step_ms(config, precision: str, steps: int) -> float:
    times, _ = run_recipe_steps(config, precision=precision, steps=steps)
    return 1000 * statistics.median(times["times"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--recipes",
        nargs="+",
        default=["seed", "fast", "best"],
        help="shipped recipes (NAME or NAME@VERSION) or recipe files (.toml, .json)",
    )
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    flags = cpu_flags()
    native = sorted(flags & CPU_BF16_FLAGS) or ["none"]
    name = cpuinfo_field("model name") or "unknown CPU"
    print(f"CPU: {name}, {len(flags)} flags; native bf16 flags: {', '.join(native)}")
    print(f'precision "auto" on this CPU: {auto_precision(flags, [])}\n')
    print(
        "| recipe | batch | float32 ms a step | mixed_bfloat16 ms a step | bf16 speed-up |\n"
        "|---|---|---|---|---|"
    )
    for recipe in args.recipes:
        config = load_recipe(recipe)
        ms = alternating(
            functools.partial(step_ms, config, steps=args.steps), PRECISIONS, args.repeats
        )
        f32, bf16 = (statistics.mean(ms[p]) for p in PRECISIONS)
        print(
            f"| {recipe} | {config.batch_size} | {f32:.0f} ({listed(ms['float32'])}) "
            f"| {bf16:.0f} ({listed(ms['mixed_bfloat16'])}) | {f32 / bf16:.2f}x |"
        )


if __name__ == "__main__":
    main()
