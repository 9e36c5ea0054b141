"""Accuracy per CPU-minute: train each recipe over several seeds and tabulate.

    python benchmarks/recipes.py [--recipes seed fast] [--seeds 0 1 2] [--write BENCHMARKS.md]
    python benchmarks/recipes.py --recipes benchmarks/candidates/best-c4.toml --seeds 0

A recipe is a shipped recipe's name (`fast`, or `fast@1` for an earlier version) or a
recipe file (`.toml` or `.json`, trained with `fashion-cnn train --config FILE`; its results
are stored under the file's name without the suffix), so a candidate can be measured, and
re-measured, before it replaces a recipe.

For every (recipe, seed) it runs the real commands, one after the other in their own
processes: `fashion-cnn train --recipe R --seed S`, then `fashion-cnn evaluate` three times
(`--tta none`, `flip`, `flip-shift`). It reports, as mean ± sample std over the seeds (n given):

- training wall seconds (the whole `train` process) and fit seconds (sum of epoch times);
- training images/s and achieved GFLOP/s (3x the forward FLOPs of convolutions and dense
  layers per training image, times 1 + `sam_fraction` for a SAM recipe), as a share of a
  float32 matrix product measured with NumPy on the same machine in the same run, and of
  the nominal peaks the project was given (333 GFLOP/s AVX-512 fp32, 5.3 TFLOP/s AMX bf16);
- test accuracy of the final model, without TTA, with flip TTA and with flip-shift TTA (18
  views; "—" for results stored before that mode existed);
- time to accuracy: fit seconds until the validation accuracy first reached 90/93/94%.

Each run's final validation accuracy, the figure a candidate is adopted on, is stored in
`--results` as `val_final` (not tabulated).

Each recipe's per-seed results are kept in `--results` (default
`benchmarks/results/recipes.json`), so recipes can be measured in separate sessions (`best`
takes an hour a seed) and the table still shows all of them: a recipe measured again
replaces its earlier entry (written after every seed), unless `--append` is given, which
adds the new seeds to it (a seed already stored is measured again and replaced, except in
results stored before 2026-12-04, which do not record their seeds; the commands
and each seed's matmul figure are kept, the table compares with their mean):

    python benchmarks/recipes.py --recipes fast --seeds 0 1 --results FILE
    python benchmarks/recipes.py --recipes fast --seeds 2 --results FILE --append

Run folders go to a temporary folder,
or are kept in `--workdir`. With `--write FILE` the Markdown table of every stored recipe
replaces the part of FILE between the lines `<!-- recipes:begin -->` and
`<!-- recipes:end -->`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NOMINAL_FP32, NOMINAL_AMX = 333.0, 5300.0
THRESHOLDS = (0.90, 0.93, 0.94)
TTA_KEYS = {"none": "acc", "flip": "acc_tta", "flip-shift": "acc_tta_shift"}


def matmul_gflops() -> float:
    import numpy as np

    a = np.random.default_rng(0).random((2000, 2000), dtype=np.float32)
    a @ a
    best = 0.0
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(5):
            a @ a
        best = max(best, 5 * 2 * 2000**3 / (time.perf_counter() - t) / 1e9)
    return best


def is_file(recipe: str) -> bool:
    """Whether `recipe` names a recipe file rather than a shipped recipe."""
    return recipe.endswith((".toml", ".json"))


def recipe_name(recipe: str) -> str:
    """The name results are stored under: the recipe, or the file's name without suffix."""
    return Path(recipe).stem if is_file(recipe) else recipe


def load(recipe: str):
    """The `TrainConfig` of a shipped recipe or of a recipe file (`is_file`)."""
    from fashion_cnn.config import load_config, load_recipe

    return load_config(recipe) if is_file(recipe) else load_recipe(recipe)


def model_info(recipe: str) -> tuple[int, int, float]:
    """(weights, forward FLOPs of a 28x28 image, a training image's mean cost in plain
    full-size steps: >1 with SAM, <1 with progressive resizing's smaller early epochs)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    from fashion_cnn.batches import epoch_sizes
    from fashion_cnn.models import build_model, forward_flops
    from fashion_cnn.sam import step_cost

    c = load(recipe)
    model = build_model(c.model, **c.model_options())
    full = forward_flops(model)
    sizes = epoch_sizes(c.epochs, c.low_res, c.low_res_until)
    at = {
        side: forward_flops(
            keras.models.clone_model(model, input_tensors=keras.Input((side, side, 1)))
        )
        for side in set(sizes)
    }
    resized = sum(at[side] for side in sizes) / (len(sizes) * full)
    return model.count_params(), full, step_cost(c.sam, c.sam_fraction) * resized


def run_one(recipe: str, seed: int, workdir: Path) -> dict:
    run = workdir / f"{recipe_name(recipe)}-{seed}"
    cli = [sys.executable, "-m", "fashion_cnn"]
    t = time.perf_counter()
    subprocess.run(
        [
            *cli,
            "train",
            "--config" if is_file(recipe) else "--recipe",
            recipe,
            "--seed",
            str(seed),
            "--out",
            str(run),
            "--verbosity",
            "0",
            "--no-download",
        ],
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - t
    result = {"train_wall_s": wall}
    for tta, key in TTA_KEYS.items():
        subprocess.run(
            [*cli, "evaluate", str(run), "--no-download", "--tta", tta],
            check=True,
            capture_output=True,
        )
        metrics = json.loads((run / "metrics.json").read_text())
        result[key] = metrics["test_accuracy"]
    h = json.loads((run / "history.json").read_text())
    result["fit_s"] = sum(h["epoch_seconds"])
    result["val_final"] = h["val_accuracy"][-1]  # what a candidate is adopted on
    result["images"] = h["train_images"] * len(h["epoch_seconds"])
    elapsed, reached = 0.0, {}
    for secs, acc in zip(h["epoch_seconds"], h["val_accuracy"], strict=True):
        elapsed += secs
        for th in THRESHOLDS:
            if acc >= th and th not in reached:
                reached[th] = elapsed
    result["reached"] = reached
    print(f"  {recipe} seed {seed}: {json.dumps(result, default=str)}", file=sys.stderr, flush=True)
    return result


def check_same_model(name: str, old: dict, params: int, forward_flops: int) -> None:
    """Raise a ValueError naming `name` unless its stored entry `old` measured a model with
    `params` weights and `forward_flops` FLOPs (the results `--append` would add to)."""
    if (old["params"], old["forward_flops"]) != (params, forward_flops):
        raise ValueError(
            f"Cannot append to the stored results of {name}: they were measured on a "
            f"different model ({old['params']:,} weights, {old['forward_flops']:,} FLOPs; "
            f"now {params:,}, {forward_flops:,}). Store them in another --results file, or "
            "measure without --append."
        )


def merge_entry(name: str, old: dict | None, new: dict, append: bool) -> dict:
    """A recipe's stored entry after a measurement: `new` itself, or with `append` the
    results of `old` whose seeds `new` did not measure again followed by `new`'s. Results
    stored before `--append` existed carry no seed, so they are always kept.

    Args:
        name: the recipe's name in the results file (for messages).
        old: the entry stored before (`None` when there is none).
        new: the entry of this measurement: `params`, `forward_flops`, `step_cost`,
            `command`, and `results`, each with its `seed` and `matmul_gflops`.
        append: keep `old`'s other seeds instead of replacing the entry.

    Returns:
        The entry to store; its `matmul_gflops` is the mean over its results (a result
        stored before `--append` existed counts with its entry's `matmul_gflops_per_seed`
        where a merge by hand recorded them, else the entry's figure), its `command` every
        command that produced it.

    Raises:
        ValueError: `old` measured a different model (weights or FLOPs differ).
    """
    if not append or old is None:
        return new
    check_same_model(name, old, new["params"], new["forward_flops"])
    seeds = {r["seed"] for r in new["results"]}
    per_seed = old.get("matmul_gflops_per_seed", [])
    if len(per_seed) != len(old["results"]):
        per_seed = [old["matmul_gflops"]] * len(old["results"])
    kept = [
        {"matmul_gflops": g, **r}
        for r, g in zip(old["results"], per_seed, strict=True)
        if r.get("seed") not in seeds
    ]
    results = kept + new["results"]
    return {
        **new,
        "matmul_gflops": statistics.mean(r["matmul_gflops"] for r in results),
        "command": f"{old['command']}`, then `{new['command']}",
        "results": results,
    }


def ms(values: list[float], fmt: str = "{:.1f}") -> str:
    if len(values) > 1:
        return f"{fmt.format(statistics.mean(values))} ± {fmt.format(statistics.stdev(values))}"
    return fmt.format(values[0])


def table(
    rows: dict[str, list[dict]],
    infos: dict[str, tuple[int, int, float]],
    refs: dict[str, float],
) -> str:
    """The Markdown table; each recipe's GFLOP/s (3x the forward FLOPs an image, times the
    step cost of SAM) is compared with the matmul measured in the same run as its
    trainings (`refs`)."""
    lines = [
        "| recipe | params | n | train wall s | fit s | train img/s | GFLOP/s | "
        "% of NumPy fp32 matmul | % of 333 / 5300 nominal | test acc % | test acc % (flip TTA) | "
        "test acc % (flip-shift TTA) | s to 90% / 93% / 94% val |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for recipe, results in rows.items():
        params, fwd, cost = infos[recipe]
        ips = [r["images"] / r["fit_s"] for r in results]
        gflops = [i * 3 * fwd * cost / 1e9 for i in ips]
        g = statistics.mean(gflops)
        reach = []
        for th in THRESHOLDS:
            got = [r["reached"][th] for r in results if th in r["reached"]]
            reach.append(f"{statistics.mean(got):.0f} ({len(got)}/{len(results)})" if got else "—")
        shifted = [100 * r["acc_tta_shift"] for r in results if "acc_tta_shift" in r]
        shift = ms(shifted, "{:.2f}") if len(shifted) == len(results) else "—"
        lines.append(
            f"| {recipe} | {params:,} | {len(results)} | "
            f"{ms([r['train_wall_s'] for r in results])} | {ms([r['fit_s'] for r in results])} | "
            f"{ms(ips, '{:.0f}')} | {ms(gflops)} | {100 * g / refs[recipe]:.0f}% | "
            f"{100 * g / NOMINAL_FP32:.0f}% / {100 * g / NOMINAL_AMX:.1f}% | "
            f"{ms([100 * r['acc'] for r in results], '{:.2f}')} | "
            f"{ms([100 * r['acc_tta'] for r in results], '{:.2f}')} | {shift} | "
            f"{' / '.join(reach)} |"
        )
    return "\n".join(lines)


def write_section(path: Path, text: str) -> None:
    begin, end = "<!-- recipes:begin -->", "<!-- recipes:end -->"
    doc = path.read_text()
    if begin not in doc or end not in doc:
        raise SystemExit(f"{path} has no {begin} ... {end} section to replace")
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{text}\n{end}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--recipes", nargs="*", default=["seed", "fast"], help="none: only redraw the table"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--write", type=Path, help="Markdown file with a recipes section")
    parser.add_argument("--workdir", type=Path, help="keep the run folders here")
    parser.add_argument(
        "--results",
        type=Path,
        default=Path(__file__).parent / "results" / "recipes.json",
        help="JSON file of per-recipe results, updated after each recipe",
    )
    parser.add_argument(
        "--append",
        action="store_true",
        help="add the seeds measured to the recipe's stored results instead of replacing them",
    )
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from fashion_cnn.io_utils import write_text

    stored = json.loads(args.results.read_text()) if args.results.exists() else {}
    ref = matmul_gflops() if args.recipes else 0.0  # only stored with new measurements
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        for recipe in args.recipes:
            if is_file(recipe) and not Path(recipe).is_file():
                raise SystemExit(f"Recipe file {recipe} does not exist")
            params, fwd, cost = model_info(recipe)
            name = recipe_name(recipe)
            before, results = stored.get(name), []
            if args.append and before is not None:
                try:  # before an hour of training, not after
                    check_same_model(name, before, params, fwd)
                except ValueError as e:
                    raise SystemExit(str(e)) from None
            for seed in args.seeds:
                r = run_one(recipe, seed, workdir)
                reached = {str(k): v for k, v in r["reached"].items()}
                results.append({**r, "reached": reached, "seed": seed, "matmul_gflops": ref})
                new = {
                    "params": params,
                    "forward_flops": fwd,
                    "step_cost": cost,
                    "matmul_gflops": ref,
                    "command": f"python benchmarks/recipes.py --recipes {recipe} "
                    f"--seeds {' '.join(map(str, args.seeds[: len(results)]))}"
                    + (" --append" if args.append else ""),
                    "results": results,
                }
                stored[name] = merge_entry(name, before, new, args.append)
                write_text(args.results, json.dumps(stored, indent=1) + "\n")  # atomic
    rows = {
        name: [
            {**r, "reached": {float(k): v for k, v in r["reached"].items()}}
            for r in entry["results"]
        ]
        for name, entry in stored.items()
    }
    infos = {
        name: (e["params"], e["forward_flops"], e.get("step_cost", 1.0))
        for name, e in stored.items()
    }
    refs = {name: e["matmul_gflops"] for name, e in stored.items()}
    text = table(rows, infos, refs)
    text += "\n\nNumPy float32 2000x2000 matmul GFLOP/s measured with each recipe's runs. Commands:"
    for name, entry in stored.items():
        text += f"\n- {name}: `{entry['command']}` (matmul then: {entry['matmul_gflops']:.0f})"
    print(text)
    if args.write:
        write_section(args.write, text)


if __name__ == "__main__":
    main()
