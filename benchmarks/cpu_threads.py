"""Training step time of a recipe's model under different CPU thread settings.

    python benchmarks/cpu_threads.py [--recipe fast] [--precision float32] [--steps 15]
                                     [--repeats 2]

Two cores can run a training step in one process with TensorFlow's default threading (both
cores for each op, independent ops at the same time), with fewer threads per op or between
ops (`TF_NUM_INTRAOP_THREADS`, `TF_NUM_INTEROP_THREADS`), or as two single-core
data-parallel workers, each on half the batch. This times each setting in child processes
(`step_timing.run_steps`, random images, oneDNN on as `fashion-cnn train` runs), the
settings alternating `--repeats` times, and prints the median step of each. The single-core
rows are pinned to CPU 0 with one thread for and between ops; at half the batch, their step
time is what each of two such workers would take at best (no all-reduce, no sharing of the
memory bus), i.e. the upper bound of what data parallelism inside one machine could gain.
"""

from __future__ import annotations

import argparse
import os
import statistics

from fashion_cnn.hardware import cpuinfo_field
from recipes import load as load_recipe  # a shipped recipe or a recipe file
from step_timing import alternating, listed, run_steps

ONE_THREAD = {"TF_NUM_INTEROP_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1"}
#: name -> (environment, pinned to one core, fraction of the recipe's batch)
SETTINGS = {
    "default (all cores)": ({}, False, 1.0),
    "TF_NUM_INTEROP_THREADS=1": ({"TF_NUM_INTEROP_THREADS": "1"}, False, 1.0),
    "TF_NUM_INTRAOP_THREADS=1": ({"TF_NUM_INTRAOP_THREADS": "1"}, False, 1.0),
    "one core, full batch": (ONE_THREAD, True, 1.0),
    "one core, half batch": (ONE_THREAD, True, 0.5),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--recipe",
        default="fast",
        help="a shipped recipe (NAME or NAME@VERSION) or a recipe file (.toml, .json)",
    )
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    config = load_recipe(args.recipe)
    cores = sorted(os.sched_getaffinity(0))

    def measure(name: str) -> float:
        env, pinned, fraction = SETTINGS[name]
        if pinned:
            os.sched_setaffinity(0, {cores[0]})  # the child inherits it
        try:
            times, _ = run_steps(
                model=config.model,
                width=config.width,
                fused_bn=config.fused_bn,
                se=config.se,
                channels=config.channels,
                precision=args.precision,
                batch_size=int(config.batch_size * fraction),
                jit_compile=config.jit_compile,
                steps=args.steps,
                env=env,
            )
        finally:
            os.sched_setaffinity(0, set(cores))
        return 1000 * statistics.median(times["times"])

    print(f"CPU: {cpuinfo_field('model name') or 'unknown'}, {len(cores)} cores for this process")
    print(f"{args.recipe}: batch {config.batch_size}, {args.precision}\n")
    print("| setting | batch | ms a step (each repeat) |\n|---|---|---|")
    results = alternating(measure, list(SETTINGS), args.repeats)
    for name, ms in results.items():
        batch = int(config.batch_size * SETTINGS[name][2])
        print(f"| {name} | {batch} | {statistics.mean(ms):.0f} ({listed(ms)}) |")


if __name__ == "__main__":
    main()
