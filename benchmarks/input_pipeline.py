"""CPU time of the training input pipeline (gather, augment, mix) per batch, without the model.

Training runs this `tf.data` pipeline (`fashion_cnn.batches`) on the same cores as the
training steps, so what a batch costs here is roughly what an augmentation adds to each
step. Each variant (the recipe with `KEY=VALUE` overrides) runs in turn, in this process,
for `--repeats` passes of `--batches` batches after one warm-up pass; the table has the
milliseconds of wall and process CPU time per batch (median over passes).

    python benchmarks/input_pipeline.py --recipe best --variant base --variant cutmix=0.2

Needs the dataset (`fashion-cnn data` or the Debian package).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

from recipes import load
from sweeps import parse_variant


def time_pipeline(config, x, y, batches: int, repeats: int) -> tuple[float, float]:
    """(wall ms, CPU ms) per batch of `config`'s training batches, median over `repeats`."""
    from fashion_cnn.batches import epoch_batches, make_augment, make_mix

    epochs = math.ceil(batches * (repeats + 1) * config.batch_size / len(x))
    ds, _ = epoch_batches(
        x,
        y,
        config.batch_size,
        config.seed,
        0,
        epochs,
        augment=make_augment(config),
        mix=make_mix(config),
    )
    it = iter(ds)
    walls, cpus = [], []
    for r in range(repeats + 1):
        w0, c0 = time.perf_counter(), time.process_time()
        for _ in range(batches):
            next(it)
        if r:  # the first pass builds and traces the pipeline
            walls.append((time.perf_counter() - w0) * 1000 / batches)
            cpus.append((time.process_time() - c0) * 1000 / batches)
    return statistics.median(walls), statistics.median(cpus)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="best", help="recipe name or config file")
    parser.add_argument("--variant", action="append", default=[], help="NAME[:KEY=VALUE,...]")
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data-dir", help="folder with the four Fashion-MNIST .gz files")
    args = parser.parse_args(argv)

    from fashion_cnn.data import load_data

    base = load(args.recipe)
    data = load_data(args.data_dir, download=False)
    print("| variant | overrides | batch | wall ms a batch | CPU ms a batch |")
    print("|---|---|---|---|---|")
    for text in args.variant or ["base"]:
        name, overrides, _ = parse_variant(text)
        config = base.replace(**overrides).validate()
        wall, cpu = time_pipeline(config, data.x_train, data.y_train, args.batches, args.repeats)
        over = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "—"
        print(f"| {name} | {over} | {config.batch_size} | {wall:.2f} | {cpu:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
