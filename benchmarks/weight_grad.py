"""A convolution's weight gradient: oneDNN's kernel against the same sum as matrix products.

    python benchmarks/weight_grad.py [--width 1] [--batch 256] [--repeats 7]

The backward-weights pass is the slowest part of a training step on CPUs (BENCHMARKS.md,
profiles). For each 3x3 convolution of `convnet4` at `--width` (its input sizes), this
times in float32, with oneDNN on as `fashion-cnn train` runs:
- `Conv2DBackpropFilter`, TensorFlow's op (oneDNN's kernel);
- im2col: the 3x3 patches of the input (`tf.image.extract_patches`) times the output
  gradient, one matrix product;
- 9 products: for each of the 9 kernel offsets, the shifted input times the output
  gradient.
Each is checked against the first (largest relative difference) and timed as the median of
`--repeats` calls of a `tf.function`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from fashion_cnn.hardware import prefer_onednn


def layers(width: int) -> list[tuple[int, int, int]]:
    """(input channels, output channels, side) of `convnet4`'s 3x3 convolutions."""
    c = [16 * width, 32 * width, 64 * width, 128 * width]
    return [
        (1, c[0], 28),
        (c[0], c[1], 28),
        (c[1], c[1], 14),
        (c[1], c[2], 14),
        (c[2], c[2], 7),
        (c[2], c[3], 7),
        (c[3], c[3], 4),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    prefer_onednn(os.environ)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    def timed(fn) -> float:
        fn()
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn().numpy()
            times.append(time.perf_counter() - start)
        return 1000 * statistics.median(times)

    print(f"batch {args.batch}, float32, median of {args.repeats}\n")
    print(
        "| convolution | oneDNN ms (GFLOP/s) | im2col + 1 product ms (GFLOP/s) "
        "| 9 products ms (GFLOP/s) | largest relative difference |\n|---|---|---|---|---|"
    )
    totals = [0.0, 0.0, 0.0]
    for cin, cout, side in layers(args.width):
        x = tf.random.normal([args.batch, side, side, cin], seed=1)
        dy = tf.random.normal([args.batch, side, side, cout], seed=2)

        @tf.function(jit_compile=False)
        def onednn(x=x, dy=dy, cin=cin, cout=cout):
            return tf.raw_ops.Conv2DBackpropFilter(
                input=x,
                filter_sizes=[3, 3, cin, cout],
                out_backprop=dy,
                strides=[1, 1, 1, 1],
                padding="SAME",
            )

        @tf.function(jit_compile=False)
        def im2col(x=x, dy=dy, cin=cin, cout=cout):
            p = tf.image.extract_patches(x, [1, 3, 3, 1], [1, 1, 1, 1], [1, 1, 1, 1], "SAME")
            g = tf.matmul(tf.reshape(p, [-1, 9 * cin]), tf.reshape(dy, [-1, cout]), True)
            return tf.reshape(g, [3, 3, cin, cout])

        @tf.function(jit_compile=False)
        def nine(x=x, dy=dy, cin=cin, cout=cout, side=side):
            xp = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
            d = tf.reshape(dy, [-1, cout])
            parts = [
                tf.matmul(tf.reshape(xp[:, i : i + side, j : j + side, :], [-1, cin]), d, True)
                for i in range(3)
                for j in range(3)
            ]
            return tf.reshape(tf.stack(parts), [3, 3, cin, cout])

        ref = onednn()
        scale = float(tf.reduce_max(tf.abs(ref)))
        diff = max(float(tf.reduce_max(tf.abs(f() - ref))) / scale for f in (im2col, nine))
        gflop = 2 * args.batch * side * side * 9 * cin * cout / 1e9
        ms = [timed(f) for f in (onednn, im2col, nine)]
        totals = [t + m for t, m in zip(totals, ms, strict=True)]
        cells = " | ".join(f"{m:.1f} ({1000 * gflop / m:.0f})" for m in ms)
        print(f"| {cin}→{cout} at {side}x{side} | {cells} | {diff:.1e} |", flush=True)
    print(f"| all seven | {' | '.join(f'{t:.1f}' for t in totals)} | |")


if __name__ == "__main__":
    main()
