"""Recipe variants at a reduced scale on the CPU, one run per core, decided on validation.

A `best` run takes an hour on a 2-core CPU with native bf16 and nearly three on one
without, so an idea for it can't be tried at full scale there in a session. This script
trains a cheaper proxy of a recipe (`--scale`, e.g. width 1 and 12 epochs) and variants
of it, each run with the real command (`fashion-cnn train --config FILE`) in its own
process pinned to its own core, `--parallel` at a time. Each finished run is scored on
the validation split (which decides) and on the test set, without and with flip-shift TTA,
and appended to `--results` as one JSON line in `gpu_sweep.py`'s format, so `python
benchmarks/gpu_sweep.py --summary FILE` prints the same table. A variant that wins on the
proxy is a candidate for a full-scale run (`benchmarks/recipes.py`), not a result.

Usage:

    python benchmarks/cpu_sweep.py --recipe best --scale width=1,epochs=12,val_fraction=0.1 \
        --variant base --variant se:se=8 --seeds 0 1 --workdir runs/proxy \
        --results benchmarks/results/cpu-sweep-best-proxy.jsonl

Run folders are `WORKDIR/VARIANT-sSEED` (config `WORKDIR/VARIANT-sSEED.toml`, training log
`WORKDIR/VARIANT-sSEED.log`); a finished one is not trained again (the command finds it
complete), so a sweep cut short resumes, and a run is only rescored.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import queue
import shutil
import subprocess
import sys
import time
from pathlib import Path

from fashion_cnn.config import load_recipe, to_toml
from fashion_cnn.errors import ConfigError
from sweeps import collect, parse_variant, summary, sweep_order

SCORE_MODES = ("none", "flip-shift")


def score(run: Path, data_dir: str | None) -> dict:
    """Validation and test accuracy (%) of a finished run folder's final model."""
    import numpy as np

    from fashion_cnn.config import load_config
    from fashion_cnn.data import load_data, split_validation
    from fashion_cnn.evaluate import predict_proba
    from fashion_cnn.io_utils import read_json
    from fashion_cnn.models import forward_flops
    from fashion_cnn.runs import load_run_model
    from fashion_cnn.sam import step_cost

    config = load_config(run / "config.json")
    data = load_data(data_dir, download=False)
    n = config.train_subset or len(data.y_train)
    _, _, x_val, y_val = split_validation(
        data.x_train[:n], data.y_train[:n], config.val_fraction, config.split_seed
    )
    model = load_run_model(run)
    record = {
        "mflop_per_image": forward_flops(model) / 1e6,
        "step_cost": step_cost(config.sam, config.sam_fraction),
        "precision": config.precision,
        "train_s": sum(read_json(run / "history.json")["epoch_seconds"]),
    }
    for split, (x, y) in {"val": (x_val, y_val), "test": (data.x_test, data.y_test)}.items():
        for mode in SCORE_MODES:
            probs = predict_proba(model, x, tta=mode)
            record[f"{split}_{mode}"] = (
                100.0 * float(np.mean(probs.argmax(1) == y)) if len(y) else None
            )
    return record


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "cpu"


def run_job(job: dict, cores: queue.Queue, data_dir: str | None) -> dict:
    """Trains (unless finished) and scores one run on a core taken from `cores`."""
    core = cores.get()
    try:
        # `taskset`, not preexec_fn: that is unsafe in a threaded parent (subprocess docs).
        pin = ["taskset", "-c", str(core)] if core is not None else []
        t = time.perf_counter()
        command = [*pin, sys.executable, "-m", "fashion_cnn", "train"]
        command += ["--config", job["config_file"]]
        command += ["--out", job["run"], "--verbosity", "2"]
        if data_dir:
            command += ["--data-dir", data_dir]
        with open(job["log"], "a") as log:
            subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT)
        wall_s = time.perf_counter() - t
        scored = subprocess.run(
            [
                *pin,
                sys.executable,
                __file__,
                "--score",
                job["run"],
                *(["--data-dir", data_dir] * bool(data_dir)),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    finally:
        cores.put(core)
    return {
        "variant": job["variant"],
        "overrides": job["overrides"],
        "seed": job["seed"],
        "epochs": job["epochs"],
        "scale": job["scale"],
        **json.loads(scored.stdout.strip().splitlines()[-1]),
        "wall_s": wall_s,
        "device": cpu_name(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="best", help="shipped recipe the variants start from")
    parser.add_argument(
        "--scale",
        default="",
        help="KEY=VALUE,... applied to every variant first (the proxy), e.g. width=1,epochs=12",
    )
    parser.add_argument("--variant", action="append", default=[], help="NAME[:KEY=VALUE,...]")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--parallel", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--workdir", type=Path, default=Path("runs/cpu-sweep"))
    parser.add_argument("--results", type=Path, help="JSON-lines file the runs append to")
    parser.add_argument("--data-dir", help="folder with the four Fashion-MNIST .gz files")
    parser.add_argument("--score", type=Path, help=argparse.SUPPRESS)  # child: score one run
    args = parser.parse_args(argv)

    if args.score:
        print(json.dumps(score(args.score, args.data_dir)))
        return 0
    if not args.results:
        parser.error("--results is needed to run a sweep")
    if args.parallel < 1:
        parser.error(f"--parallel must be >= 1, received {args.parallel}")
    if args.parallel > 1 and not shutil.which("taskset"):
        parser.error(
            "--parallel above 1 pins each run to a core with `taskset` (util-linux), "
            "which is not installed: install it, or pass --parallel 1"
        )
    _, scale, _ = parse_variant(f"scale:{args.scale}")
    try:
        base = load_recipe(args.recipe).replace(**scale)
    except ConfigError as e:
        parser.error(f"--scale: {e}")
    base.recipe_version = None  # a proxy is not the shipped recipe
    args.workdir.mkdir(parents=True, exist_ok=True)
    jobs = []
    for seed, name, overrides in sweep_order(args.seeds, args.variant or ["base"]):
        try:
            config = base.replace(**overrides, seed=seed, recipe=f"proxy-{name}")
        except ConfigError as e:
            parser.error(f"variant {name!r}: {e}")
        stem = args.workdir / f"{name}-s{seed}"
        config_file = stem.with_suffix(".toml")
        config_file.write_text(to_toml(config))
        jobs.append(
            {
                "variant": name,
                "overrides": overrides,
                "seed": seed,
                "epochs": config.epochs,
                "scale": scale,
                "config_file": str(config_file),
                "run": str(stem),
                "log": str(stem.with_suffix(".log")),
            }
        )
    cores: queue.Queue = queue.Queue()
    available = sorted(os.sched_getaffinity(0))
    for i in range(args.parallel):
        cores.put(available[i % len(available)] if args.parallel > 1 else None)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    with cf.ThreadPoolExecutor(args.parallel) as pool:
        futures = {pool.submit(run_job, job, cores, args.data_dir): job for job in jobs}
        records = collect(
            futures, args.results, lambda j: f"{j['variant']} seed {j['seed']} (log: {j['log']})"
        )
    print(summary(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
