"""Two-worker training (MultiWorkerMirroredStrategy on 127.0.0.1) against one process, same
recipe and epochs: test accuracy of both and the throughput ratio.

    python benchmarks/multiworker.py [--recipe seed] [--epochs N] [--workdir runs/bench-mw]

Both runs train on the full training split and are evaluated with `fashion-cnn evaluate`
(the recipe's own TTA setting). On one machine the two workers share its cores, so the ratio
measures the overhead of the all-reduce and of splitting each batch, not a speed-up; on two
machines each worker would have its own cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def run_train(argv: list[str], ranks: int) -> float:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TF_CONFIG", None)
    base = [sys.executable, "-m", "fashion_cnn", "train", *argv, "--verbosity", "0"]
    t0 = time.perf_counter()
    if ranks == 1:
        subprocess.run(base, env=env, check=True)
    else:
        hosts = ",".join(f"127.0.0.1:{p}" for p in free_ports(ranks))
        # Each worker gets its share of the cores, as it would have its own machine's,
        # instead of every process starting a thread per core on the same cores.
        share = str(max(1, (os.cpu_count() or 1) // ranks))
        env = dict(env, TF_NUM_INTRAOP_THREADS=share, TF_NUM_INTEROP_THREADS=share)
        procs = [
            subprocess.Popen(
                [*base, "--strategy", "multiworker", "--workers", hosts, "--rank", str(r)],
                env=env,
            )
            for r in range(ranks)
        ]
        codes = [p.wait() for p in procs]
        if any(codes):
            raise SystemExit(f"a worker failed: exit codes {codes}")
    return time.perf_counter() - t0


def evaluate(run: Path) -> dict:
    subprocess.run(
        [sys.executable, "-m", "fashion_cnn", "evaluate", str(run), "--no-download"],
        check=True,
        capture_output=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    metrics = json.loads((run / "metrics.json").read_text())
    history = json.loads((run / "history.json").read_text())
    fit = sum(history["epoch_seconds"])
    return {
        "test_accuracy": metrics["test_accuracy"],
        "fit_seconds": fit,
        "images_per_s": history["train_images"] * len(history["epoch_seconds"]) / fit,
        "replicas": history.get("replicas", 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="seed")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--workdir", type=Path, default=Path("runs/bench-mw"))
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    common = ["--recipe", args.recipe, "--no-download"]
    if args.epochs:
        common += ["--epochs", str(args.epochs)]
    results = {}
    for ranks in (1, 2):
        out = args.workdir / f"{ranks}w"
        wall = run_train([*common, "--out", str(out)], ranks)
        results[ranks] = {**evaluate(out), "wall_seconds": wall}
        print(ranks, json.dumps(results[ranks]), file=sys.stderr)
    one, two = results[1], results[2]
    print("| processes | test accuracy % | fit s | train images/s | wall s |")
    print("|---|---|---|---|---|")
    for ranks, r in results.items():
        print(
            f"| {ranks} | {100 * r['test_accuracy']:.2f} | {r['fit_seconds']:.0f} | "
            f"{r['images_per_s']:.0f} | {r['wall_seconds']:.0f} |"
        )
    print(
        f"\naccuracy difference {100 * (two['test_accuracy'] - one['test_accuracy']):+.2f} "
        f"points, throughput ratio (2 workers / 1 process) "
        f"{two['images_per_s'] / one['images_per_s']:.2f}"
    )


if __name__ == "__main__":
    main()
