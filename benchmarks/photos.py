"""Single-photo latency: decode + preprocessing + prediction of a 12-megapixel JPEG on one
core, and the robustness table of a run.

    python benchmarks/photos.py RUN [--repeats 50] [--robustness-limit 2000]

The photo is synthetic (a test image rendered as a 4000x3000 product photo with sensor-like
noise, JPEG quality 90, a few MB like a camera's), so the benchmark needs nothing but the
dataset. The process is pinned to one core and
TensorFlow to one thread. Prediction goes through `evaluate.predict_proba`, the compiled
direct model call that `predict` and `serve` use.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--robustness-limit", type=int, default=0, help="0: skip robustness")
    args = parser.parse_args()

    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf
    from PIL import Image

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)

    from fashion_cnn.data import load_data
    from fashion_cnn.evaluate import predict_proba
    from fashion_cnn.images import load_image
    from fashion_cnn.runs import load_run_model

    data = load_data(download=False)
    model = load_run_model(args.run)
    x = data.x_test[0, ..., 0]
    photo = Image.fromarray(255 - x).resize((3000, 3000), Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", (4000, 3000), (255, 255, 255))
    canvas.paste(photo.convert("RGB"), (500, 0))
    # Sensor-like noise, so that the JPEG is as large as a real 12 MP photo's (a few MB).
    noisy = np.asarray(canvas, np.float32) + np.random.default_rng(0).normal(0, 6, (3000, 4000, 3))
    canvas = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=90)
    jpeg = buf.getvalue()

    def once() -> tuple[float, float]:
        t0 = time.perf_counter()
        img = load_image(io.BytesIO(jpeg), name="photo.jpg")
        t1 = time.perf_counter()
        predict_proba(model, img[None, ..., None])
        return t1 - t0, time.perf_counter() - t1

    for _ in range(5):
        once()
    pre, pred = zip(*(once() for _ in range(args.repeats)), strict=True)
    total = [a + b for a, b in zip(pre, pred, strict=True)]

    def q(v, p):
        return 1000 * float(np.percentile(v, p))

    print(f"12 MP JPEG ({len(jpeg) / 1e6:.1f} MB), one core, n={args.repeats}:")
    print("| stage | p50 ms | p90 ms | mean ms |\n|---|---|---|---|")
    for name, v in (("decode + preprocess", pre), ("model call", pred), ("total", total)):
        print(f"| {name} | {q(v, 50):.1f} | {q(v, 90):.1f} | {1000 * statistics.mean(v):.1f} |")

    if args.robustness_limit:
        from fashion_cnn.robustness import evaluate_robustness

        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        n = args.robustness_limit
        r = evaluate_robustness(model, data.x_test[:n], data.y_test[:n])
        print(f"\nRobustness, first {n} test images (clean accuracy {r['clean_accuracy']:.2%}):")
        print("| shift | accuracy | of clean |\n|---|---|---|")
        for name, s in r["shifts"].items():
            print(f"| {name} | {s['accuracy']:.2%} | {s['relative']:.0%} |")
        print(f"| mean | {r['mean_shifted_accuracy']:.2%} | {r['mean_relative']:.0%} |")


if __name__ == "__main__":
    main()
