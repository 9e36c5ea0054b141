"""Wall time and peak memory of `fashion-cnn predict` on one photo, per engine.

    python benchmarks/cli_startup.py RUN PHOTO [--engines keras onnx] [--repeats 5]

What a user waits for when classifying one photo from the command line: the whole process,
start-up, imports, model load, preprocessing and the answer. Each repeat is a fresh process
(`python -m fashion_cnn predict RUN PHOTO --engine E`), the engines alternating; the table
gives the median wall time and peak resident memory (`wait4`) of each engine, and whether
the process imported TensorFlow. RUN needs the exports of the engines named
(`fashion-cnn export RUN --format onnx`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

PROBE = (
    "import runpy, sys; sys.argv = ['fashion-cnn', *sys.argv[1:]]\n"
    "try:\n    runpy.run_module('fashion_cnn', run_name='__main__')\n"
    "finally:\n    print('TENSORFLOW', 'tensorflow' in sys.modules, file=sys.stderr)\n"
)


def one_run(run: str, photo: str, engine: str) -> tuple[float, float, bool]:
    """(wall s, peak RSS MB, imported TensorFlow) of one `predict` process."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    start = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", PROBE, "predict", run, photo, "--engine", engine],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    err = child.stderr.read()
    child.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"predict --engine {engine} failed:\n{err}")
    return wall, usage.ru_maxrss / 1024, "TENSORFLOW True" in err


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("photo")
    parser.add_argument("--engines", nargs="+", default=["keras", "onnx"])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float, bool]]] = {e: [] for e in args.engines}
    for _ in range(args.repeats):
        for engine in args.engines:
            results[engine].append(one_run(args.run, args.photo, engine))
    print(
        "| engine | wall s, median (each) | peak RSS MB, median | imports TensorFlow |\n"
        "|---|---|---|---|"
    )
    for engine, runs in results.items():
        walls = [w for w, _, _ in runs]
        each = ", ".join(f"{w:.2f}" for w in walls)
        rss = statistics.median(r for _, r, _ in runs)
        tf_loaded = (
            "yes"
            if all(t for _, _, t in runs)
            else "no"
            if not any(t for *_, t in runs)
            else "sometimes"
        )
        print(f"| {engine} | {statistics.median(walls):.2f} ({each}) | {rss:.0f} | {tf_loaded} |")


if __name__ == "__main__":
    main()
