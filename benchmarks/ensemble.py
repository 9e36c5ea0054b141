"""How much averaging several trained runs would gain: accuracy of ensembles of run folders.

    python benchmarks/ensemble.py RUN RUN [RUN ...] [--tta flip-shift]

Each run's final model computes its class probabilities once (with the given TTA) on the
validation split the runs share (their `val_fraction` / `split_seed`, which must agree) and
on the 10k test images; every pair of runs, and all of them together, are then scored by
the accuracy of their averaged probabilities. Prints a Markdown table (each run alone, each
pair, all runs) and how many test images every run gets wrong. The question it answers is
whether a recipe could spend its time budget on several smaller models instead of one (if
the runs' errors are shared, averaging gains little).

    python benchmarks/ensemble.py --sweep RESULTS.jsonl --probs DIR --group VARIANT:K ...

does the same for `gpu_sweep.py` runs from their saved probabilities (its `--probs DIR`),
without Keras: each `--group VARIANT:K` splits that variant's seeds, in order, into
disjoint ensembles of K members and prints their accuracy (mean ± std over the ensembles,
plain and with flip-shift TTA) next to their total compute, MFLOP an image x epochs.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import os
import statistics
from pathlib import Path

import numpy as np

from recipes import ms
from sweeps import read_records


def sweep_groups(results: Path, probs: Path, groups: list[str]) -> str:
    """The Markdown table of disjoint same-variant ensembles of `gpu_sweep.py` runs."""
    records = {(r["variant"], r["seed"]): r for r in read_records(results)}
    lines = [
        "| variant | members | ensembles (seeds) | MFLOP x epochs | val % plain | val % flip-shift "
        "| test % plain | test % flip-shift |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for text in groups:
        variant, _, k = text.partition(":")
        if not k.isdigit() or int(k) < 1:
            raise SystemExit(f"Invalid --group {text!r}: expected VARIANT:K with K >= 1")
        k = int(k)
        seeds = sorted(s for v, s in records if v == variant and (probs / f"{v}-s{s}.npz").exists())
        chunks = [seeds[i : i + k] for i in range(0, len(seeds) - k + 1, k)]
        if not chunks:
            raise SystemExit(
                f"--group {text!r}: {len(seeds)} runs of {variant!r} with probabilities"
            )
        scores = collections.defaultdict(list)
        for chunk in chunks:
            saved = [np.load(probs / f"{variant}-s{s}.npz") for s in chunk]
            for split in ("val", "test"):
                y = saved[0][f"y_{split}"]
                for mode in ("none", "flip-shift"):
                    p = sum(f[f"{split}_{mode}"].astype("float64") for f in saved)
                    scores[split, mode].append(100 * float((p.argmax(1) == y).mean()))
        r = records[variant, seeds[0]]
        cost = k * r["mflop_per_image"] * r["epochs"] * r.get("step_cost", 1.0)
        lines.append(
            f"| {variant} | {k} | {len(chunks)} ({'; '.join(map(str, chunks))}) | {cost:,.0f} | "
            + " | ".join(
                ms(scores[s, m], "{:.2f}") for s in ("val", "test") for m in ("none", "flip-shift")
            )
            + " |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path)
    parser.add_argument("--tta", default="flip-shift", help="none, flip or flip-shift")
    parser.add_argument("--sweep", type=Path, help="a gpu_sweep.py results file")
    parser.add_argument("--probs", type=Path, help="the folder of its --probs")
    parser.add_argument("--group", action="append", default=[], help="VARIANT:K")
    args = parser.parse_args()
    if args.sweep or args.probs or args.group:
        if not (args.sweep and args.probs and args.group) or args.runs:
            parser.error("--sweep, --probs and --group go together, without run folders")
        print(sweep_groups(args.sweep, args.probs, args.group))
        return
    if len(args.runs) < 2:
        parser.error("give at least two run folders")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from fashion_cnn.data import CLASS_NAMES, load_data, split_validation
    from fashion_cnn.evaluate import predict_proba
    from fashion_cnn.runs import load_run_model

    splits = set()
    for run in args.runs:
        if not (run / "config.json").is_file():
            parser.error(f"{run} is not a run folder (no config.json); give folders `train` wrote")
        config = json.loads((run / "config.json").read_text())
        splits.add((config["val_fraction"], config["split_seed"]))
    if len(splits) != 1:
        parser.error(
            f"the runs validate on different splits {sorted(splits)}; give runs that share one"
        )
    (fraction, split_seed) = splits.pop()
    data = load_data(download=False)
    _, _, x_val, y_val = split_validation(data.x_train, data.y_train, fraction, split_seed)

    probs = {}
    for run in args.runs:
        model = load_run_model(run)
        probs[run] = (
            predict_proba(model, x_val, tta=args.tta),
            predict_proba(model, data.x_test, tta=args.tta),
        )

    def averaged(members) -> tuple[np.ndarray, np.ndarray]:
        return (
            sum(probs[r][0] for r in members) / len(members),
            sum(probs[r][1] for r in members) / len(members),
        )

    def score(val, test) -> tuple[float, float]:
        return (
            100 * float((val.argmax(1) == y_val).mean()),
            100 * float((test.argmax(1) == data.y_test).mean()),
        )

    print(f"{len(y_val)} validation images, {len(data.y_test)} test images, TTA {args.tta}\n")
    print("| runs | n | val acc % | test acc % |\n|---|---|---|---|")
    singles = {}
    for run in args.runs:
        singles[run] = score(*probs[run])
        print(f"| {run} | 1 | {singles[run][0]:.2f} | {singles[run][1]:.2f} |")
    pairs = []
    for pair in itertools.combinations(args.runs, 2):
        pairs.append(score(*averaged(pair)))
        print(f"| {' + '.join(map(str, pair))} | 2 | {pairs[-1][0]:.2f} | {pairs[-1][1]:.2f} |")
    all_val, all_test = averaged(args.runs)
    if len(args.runs) > 2:
        val, test = score(all_val, all_test)
        print(f"| all | {len(args.runs)} | {val:.2f} | {test:.2f} |")
    wrong = [probs[r][1].argmax(1) != data.y_test for r in args.runs]
    shared = np.logical_and.reduce(wrong)
    print(
        f"\ntest images every run gets wrong: {int(shared.sum())}, against "
        f"{statistics.mean(int(w.sum()) for w in wrong):.0f} errors per run (mean); "
        "their most frequent true -> predicted classes (averaged probabilities):"
    )
    predicted = all_test.argmax(1)
    pairs_of = collections.Counter(zip(data.y_test[shared], predicted[shared], strict=True))
    for (true, pred), count in pairs_of.most_common(6):
        print(f"  {CLASS_NAMES[true]} -> {CLASS_NAMES[pred]}: {count}")
    mean = statistics.mean
    print(
        f"\nsingle runs: val {mean(v for v, _ in singles.values()):.2f}, "
        f"test {mean(t for _, t in singles.values()):.2f}; pairs: val "
        f"{mean(v for v, _ in pairs):.2f}, test {mean(t for _, t in pairs):.2f} (means)"
    )


if __name__ == "__main__":
    main()
