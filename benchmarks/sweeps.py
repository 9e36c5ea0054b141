"""The bookkeeping both sweeps share (`gpu_sweep.py` on a GPU, `cpu_sweep.py` on CPU cores):
variant specs, the order of runs, the JSON-lines results files and the summary table.

A variant is NAME or NAME:KEY=VALUE,KEY=VALUE with `TrainConfig` keys (values parsed as
JSON, else kept as strings); NAME@K runs it on the first K seeds only.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import statistics
from collections.abc import Callable
from pathlib import Path

from recipes import ms


def _split_items(text: str) -> list[str]:
    """`text` split at the commas outside square brackets ("a=1,b=[2,3]" -> 2 items)."""
    items, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return items


def parse_variant(text: str) -> tuple[str, dict, int | None]:
    """("name", overrides, max_seeds) from "NAME[@N]" or "NAME[@N]:KEY=VALUE,KEY=VALUE";
    @N runs the variant on the first N of the sweep's seeds only (None: all). A VALUE is
    JSON where it parses as JSON (a list such as `channels=[8,16,48,128]` included), else
    a string."""
    name, _, rest = text.partition(":")
    name, at, count = name.partition("@")
    if at and not count.isdigit():
        raise SystemExit(f"Invalid variant {text!r}: expected NAME@N with N a whole number")
    max_seeds = int(count) if at else None
    overrides = {}
    for item in filter(None, _split_items(rest)):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"Invalid variant {text!r}: expected KEY=VALUE, got {item!r}")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return name, overrides, max_seeds


def sweep_order(seeds: list[int], variants: list[str]) -> list[tuple[int, str, dict]]:
    """(seed, name, overrides) of every run, round-robin by seed (every variant's first seed
    before any second seed), each variant on its first N seeds only where it says NAME@N."""
    parsed = [parse_variant(text) for text in variants]
    return [
        (seed, name, overrides)
        for position, seed in enumerate(seeds)
        for name, overrides, max_seeds in parsed
        if max_seeds is None or position < max_seeds
    ]


def read_records(path: Path) -> list[dict]:
    """The records of a JSON-lines results file (`--results` of either sweep)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def summary(records: list[dict], against: str | None = None) -> str:
    """A markdown table: one row per variant, mean ± std over its seeds (this script's
    records or `cpu_sweep.py`'s). The compute column counts a SAM step as `step_cost`
    plain ones.

    With `against` (a variant's name), two more columns: each variant's flip-shift TTA
    accuracy minus that variant's on the same seed, mean ± std over the seeds both ran
    (how many in brackets): a paired comparison, free of the seed-to-seed spread they share.
    """
    on_gpu = all(r.get("device", "").startswith(("cuda", "gpu", "rocm")) for r in records)
    clock = "GPU train s" if on_gpu else "train s"
    by_variant: dict[str, list[dict]] = {}
    for r in records:
        by_variant.setdefault(r["variant"], []).append(r)

    def cell(rs, key):
        values = [r[key] for r in rs if r.get(key) is not None]
        return ms(values, "{:.2f}") if values else "—"

    if against is not None and against not in by_variant:
        raise SystemExit(
            f"Invalid value for `--against`: expected one of {sorted(by_variant)}, "
            f"received {against!r}"
        )
    reference = {r["seed"]: r for r in by_variant.get(against, [])}

    def paired(rs, key):
        diffs = [
            r[key] - reference[r["seed"]][key]
            for r in rs
            if r["seed"] in reference and None not in (r[key], reference[r["seed"]][key])
        ]
        if not diffs:
            return "—"
        spread = f" ± {statistics.stdev(diffs):.2f}" if len(diffs) > 1 else ""
        return f"{statistics.mean(diffs):+.2f}{spread} ({len(diffs)})"

    extra = f" Δ val vs {against} | Δ test vs {against} |" if against else ""
    lines = [
        "| variant | overrides | n (seeds) | MFLOP x epochs | val % plain | val % flip-shift "
        f"| test % plain | test % flip-shift | {clock} |{extra}",
        "|---|---|---|---|---|---|---|---|---|" + "---|---|" * bool(against),
    ]
    for name, rs in by_variant.items():
        cost = rs[0]["mflop_per_image"] * rs[0]["epochs"] * rs[0].get("step_cost", 1.0)
        over = ", ".join(f"{k}={v}" for k, v in rs[0]["overrides"].items()) or "—"
        seeds = ", ".join(str(r["seed"]) for r in sorted(rs, key=lambda r: r["seed"]))
        lines.append(
            f"| {name} | {over} | {len(rs)} ({seeds}) | {cost:,.0f} | {cell(rs, 'val_none')} "
            f"| {cell(rs, 'val_flip-shift')} | {cell(rs, 'test_none')} "
            f"| {cell(rs, 'test_flip-shift')} | {cell(rs, 'train_s')} |"
        )
        if against:
            if name == against:
                lines[-1] += " — | — |"
            else:
                lines[-1] += f" {paired(rs, 'val_flip-shift')} | {paired(rs, 'test_flip-shift')} |"
    return "\n".join(lines)


def keep(record: dict, results: Path) -> None:
    """Appends a finished run's record to the JSON-lines file `results` and prints it."""
    with open(results, "a") as f:
        f.write(json.dumps(record) + "\n")
    print(
        f"{record['variant']} seed {record['seed']}: val {record['val_flip-shift']:.2f} "
        f"test {record['test_flip-shift']:.2f} (plain {record['test_none']:.2f}) "
        f"train {record['train_s']:.0f} s",
        flush=True,
    )


def collect(futures: dict, results: Path, label: Callable[[dict], str]) -> list[dict]:
    """The records of `futures` (future -> job), each kept (`keep`) as it finishes; a failed
    run is reported with `label(job)` and skipped, so it can't lose the others."""
    records = []
    for future in cf.as_completed(futures):
        job = futures[future]
        try:
            record = future.result()
        except Exception as exc:
            print(f"FAILED {label(job)}: {exc!r}", flush=True)
            continue
        records.append(record)
        keep(record, results)
    return records
