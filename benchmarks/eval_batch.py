"""Images per second of `evaluate.predict_proba` (the compiled Keras call `evaluate`,
`robustness` and `predict` use) at several batch sizes.

    python benchmarks/eval_batch.py RUN [--sizes 128 256 512 1024] [--repeats 5]

Loads RUN's model.keras once, then classifies 8,192 random images at each batch size, the
sizes alternating `--repeats` times; prints the median images/s of each (and every
repeat). TensorFlow runs with its default kernels, as `evaluate` does.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512, 1024])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from fashion_cnn.evaluate import predict_proba

    model = keras.models.load_model(os.path.join(args.run, "model.keras"))
    x = np.random.default_rng(0).integers(0, 255, (8192, 28, 28, 1)).astype("float32")
    for size in args.sizes:
        predict_proba(model, x[:size], batch_size=size)  # trace and warm up
    rates: dict[int, list[float]] = {size: [] for size in args.sizes}
    for _ in range(args.repeats):
        for size in args.sizes:
            start = time.perf_counter()
            predict_proba(model, x, batch_size=size)
            rates[size].append(len(x) / (time.perf_counter() - start))
    print("| batch | images/s, median | each repeat |\n|---|---|---|")
    for size, r in rates.items():
        print(f"| {size} | {statistics.median(r):,.0f} | {', '.join(f'{v:,.0f}' for v in r)} |")


if __name__ == "__main__":
    main()
