"""Which test-time augmentation views help: accuracy on each run's *validation* split.

    python benchmarks/tta_views.py runs/tune-default/trials/0*

For every run folder, the final model's class probabilities are computed once per view
(identity, horizontal mirror, and integer shifts with and without the mirror) on the run's
own validation images (its `val_fraction` / `split_seed`; the test set is not touched), and
each candidate view set is scored by the accuracy of the averaged probabilities. Prints one
row per view set: mean accuracy over the runs and the mean gain over flip-only TTA.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

SHIFTS_1 = [(0, 1), (0, -1), (1, 0), (-1, 0)]


def view_sets() -> dict[str, list[tuple[bool, int, int]]]:
    """Named view sets as (mirrored, dy, dx) triples; the shipped modes come from
    `fashion_cnn.tta.TTA_VIEWS`."""
    from fashion_cnn.tta import TTA_VIEWS

    both = [False, True]
    return {
        "plain": TTA_VIEWS["none"],
        "flip": TTA_VIEWS["flip"],
        "flip+shift1 (10)": TTA_VIEWS["flip"] + [(m, dy, dx) for m in both for dy, dx in SHIFTS_1],
        "flip+shift1+diag (18)": TTA_VIEWS["flip-shift"],
        "flip+shift1, centre x2 (12)": TTA_VIEWS["flip"] * 2
        + [(m, dy, dx) for m in both for dy, dx in SHIFTS_1],
        "flip+shift2 (10)": TTA_VIEWS["flip"]
        + [(m, 2 * dy, 2 * dx) for m in both for dy, dx in SHIFTS_1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from fashion_cnn.data import load_data, split_validation
    from fashion_cnn.evaluate import predict_proba
    from fashion_cnn.runs import load_run_model
    from fashion_cnn.tta import shift_images

    data = load_data(download=False)
    sets = view_sets()
    views = sorted({v for vs in sets.values() for v in vs})
    scores: dict[str, list[float]] = {name: [] for name in sets}
    for run in args.runs:
        config = json.loads((run / "config.json").read_text())
        _, _, x_val, y_val = split_validation(
            data.x_train, data.y_train, config["val_fraction"], config["split_seed"]
        )
        x_val = x_val.reshape(-1, 28, 28, 1).astype("float32")
        model = load_run_model(run)
        probs = {}
        for mirrored, dy, dx in views:
            x = np.ascontiguousarray(x_val[:, :, ::-1]) if mirrored else x_val
            probs[(mirrored, dy, dx)] = predict_proba(model, shift_images(x, dy, dx))
        for name, vs in sets.items():
            p = np.mean([probs[v] for v in vs], axis=0)
            scores[name].append(float((p.argmax(1) == y_val).mean()))
        print(run, len(y_val), {k: round(100 * v[-1], 2) for k, v in scores.items()}, flush=True)
    base = np.array(scores["flip"])
    print(f"\n{len(args.runs)} runs; validation accuracy %, mean over runs")
    print("| views | val acc % | gain over flip (points), mean ± std | runs better / worse |")
    print("|---|---|---|---|")
    for name, s in scores.items():
        s = np.array(s)
        gain = 100 * (s - base)
        print(
            f"| {name} | {100 * s.mean():.2f} | {gain.mean():+.2f} ± {gain.std(ddof=1):.2f} | "
            f"{int((gain > 0).sum())} / {int((gain < 0).sum())} |"
        )


if __name__ == "__main__":
    main()
