"""The benchmark sweep helpers: variant parsing and the summary table (`gpu_sweep.py`),
ensembles of saved sweep probabilities (`ensemble.py --sweep`), and the recipes benchmark's
FLOP count and stored results (`recipes.py`). No training: synthetic records and
probabilities."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

from ensemble import sweep_groups  # noqa: E402
from gpu_sweep import main  # noqa: E402
from sweeps import parse_variant, summary, sweep_order  # noqa: E402


def test_parse_variant_names_overrides_and_seed_limit():
    assert parse_variant("base") == ("base", {}, None)
    assert parse_variant("w3@2:width=3,model=convnet4") == (
        "w3",
        {"width": 3, "model": "convnet4"},
        2,
    )
    assert parse_variant("slim:channels=[8,16,48,128],epochs=20") == (
        "slim",
        {"channels": [8, 16, 48, 128], "epochs": 20},
        None,
    )
    with pytest.raises(SystemExit, match="NAME@N"):
        parse_variant("w3@two:width=3")
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        parse_variant("w3:width")


def test_sweep_order_is_round_robin_by_seed_and_honours_seed_limits():
    order = sweep_order([5, 6, 7], ["a", "b@1:epochs=2", "c@2"])
    assert order == [
        (5, "a", {}),
        (5, "b", {"epochs": 2}),
        (5, "c", {}),
        (6, "a", {}),
        (6, "c", {}),
        (7, "a", {}),
    ]


def _one_hot(labels, n=3):
    return np.eye(n, dtype="float16")[labels]


def _write_run(folder, results, variant, seed, val_pred, test_pred, y_val, y_test):
    """A sweep record plus its probabilities: each prediction one-hot, at 0.6 confidence."""
    np.savez(
        folder / f"{variant}-s{seed}.npz",
        y_val=y_val,
        y_test=y_test,
        **{
            f"{split}_{mode}": 0.6 * _one_hot(pred) + 0.1
            for split, pred in (("val", val_pred), ("test", test_pred))
            for mode in ("none", "flip-shift")
        },
    )
    record = {"variant": variant, "seed": seed, "mflop_per_image": 2.0, "epochs": 5}
    with open(results, "a") as f:
        f.write(json.dumps(record) + "\n")


def test_sweep_groups_scores_disjoint_ensembles(tmp_path):
    y = np.array([0, 1, 2, 0])
    results = tmp_path / "sweep.jsonl"
    # Three members, each with a different image wrong; averaged, two of them tie on their
    # disputed images (argmax takes the lower class), and all three outvote each mistake.
    wrong = [np.array([2, 1, 2, 0]), np.array([0, 0, 2, 0]), np.array([0, 1, 0, 0])]
    for seed, pred in enumerate(wrong):
        _write_run(tmp_path, results, "v", seed, pred, pred, y, y)
    table = sweep_groups(results, tmp_path, ["v:1", "v:3", "v:2"]).splitlines()
    assert table[2].startswith("| v | 1 | 3 ([0]; [1]; [2]) | 10 | 75.00 ± 0.00 |")
    assert table[3] == ("| v | 3 | 1 ([0, 1, 2]) | 30 | 100.00 | 100.00 | 100.00 | 100.00 |")
    # v:2: seeds [0, 1] only (disjoint groups; seed 2 is left over). Image 0 ties 2/0 ->
    # 0, right; image 1 ties 1/0 -> 0, wrong: 3 of 4.
    assert table[4] == "| v | 2 | 1 ([0, 1]) | 20 | 75.00 | 75.00 | 75.00 | 75.00 |"


def test_sweep_groups_refuses_bad_groups(tmp_path):
    results = tmp_path / "sweep.jsonl"
    y = np.array([0, 1])
    _write_run(tmp_path, results, "v", 0, y, y, y, y)
    with pytest.raises(SystemExit, match="1 runs of 'v'"):
        sweep_groups(results, tmp_path, ["v:2"])
    with pytest.raises(SystemExit, match="VARIANT:K"):
        sweep_groups(results, tmp_path, ["v:0"])


def _record(variant, seed, val, test):
    return {
        "variant": variant,
        "overrides": {},
        "seed": seed,
        "epochs": 2,
        "mflop_per_image": 1.0,
        "device": "cuda:0",
        "train_s": 1.0,
        **{f"{split}_{mode}": None for split in ("val", "test") for mode in ("none", "flip")},
        "val_flip-shift": val,
        "test_flip-shift": test,
    }


def test_summary_against_pairs_differences_by_seed():
    records = [
        _record("base", 0, 95.0, 94.0),
        _record("base", 1, 95.2, 94.4),
        _record("v", 1, 95.5, 94.4),  # only seed 1 is shared with base
        _record("v", 2, 90.0, 90.0),
        _record("w", 0, 95.1, 94.3),
        _record("w", 1, 95.4, 94.5),
        _record("u", 0, None, 94.5),  # no validation split: no validation difference
    ]
    rows = summary(records, against="base").splitlines()
    assert rows[0].endswith("| Δ val vs base | Δ test vs base |")
    assert rows[2].endswith("| — | — |")
    # Unpaired, v's mean would be far below base's; paired on seed 1 it is above.
    assert rows[3].endswith("| +0.30 (1) | +0.00 (1) |")
    assert rows[4].endswith("| +0.15 ± 0.07 (2) | +0.20 ± 0.14 (2) |")
    assert rows[5].endswith("| — | +0.50 (1) |")
    assert "Δ" not in summary(records)
    with pytest.raises(SystemExit, match="`--against`"):
        summary(records, against="nope")


def test_against_without_summary_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["--against", "base", "--variant", "v:lr=0.1"])
    assert "--against compares results in a table: it needs --summary" in capsys.readouterr().err


@pytest.mark.parametrize("variant", ["r:low_res=16", "e:ema=0.99"])
def test_sweep_refuses_settings_it_does_not_train(variant, tmp_path, capsys, monkeypatch):
    # main() sets KERAS_BACKEND=jax for the sweep's own imports: import Keras here first,
    # with the suite's backend (this machine has no JAX), and restore the variable after.
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    import keras  # noqa: F401

    with pytest.raises(SystemExit):
        main(
            ["--data-dir", str(tmp_path), "--results", str(tmp_path / "r.jsonl")]
            + ["--variant", variant]
        )
    assert "`ema`, `alternate_flip` and `low_res` are not supported here" in capsys.readouterr().err
    assert not (tmp_path / "r.jsonl").exists()


def test_recipes_benchmark_counts_the_flops_of_smaller_epochs(tmp_path):
    # benchmarks/recipes.py's GFLOP/s: a progressive-resizing recipe's training image costs
    # its epochs' mean FLOPs, not the full-size ones (16x16 is 16 -> 8 -> 4 -> 2 here).
    from fashion_cnn.models import build_model, forward_flops
    from recipes import model_info

    base = (Path(__file__).parents[1] / "src/fashion_cnn/recipes/fast.toml").read_text()
    plain = tmp_path / "plain.toml"
    plain.write_text(base.replace("epochs = 22", "epochs = 4"))
    resized = tmp_path / "resized.toml"
    resized.write_text(base.replace("epochs = 22", "epochs = 4\nlow_res = 16\nlow_res_until = 0.5"))
    _, full, cost = model_info(str(plain))
    assert cost == 1.0 and full == forward_flops(build_model("convnet4", width=1))
    _, same_full, resized_cost = model_info(str(resized))

    # Epochs at 16, 20, 28, 28. FLOPs at a side, by hand: stem, then each stage's two convs
    # (the first before its pooling), "same" pooling rounding up; the dense layer.
    def flops(side):
        s1, s2, s3 = -(-side // 2), -(-side // 4), -(-side // 8)
        return (
            2
            * 9
            * (
                side**2 * 16
                + side**2 * 16 * 32
                + s1**2 * 32 * 32
                + s1**2 * 32 * 64
                + s2**2 * 64 * 64
                + s2**2 * 64 * 128
                + s3**2 * 128 * 128
            )
            + 2 * 128 * 10
        )

    assert flops(28) == full == same_full
    assert resized_cost == pytest.approx((flops(16) + flops(20) + 2 * flops(28)) / (4 * full))


def _entry(seeds, matmul, params=100, command="cmd", accs=None):
    accs = accs or [0.9 + s / 100 for s in seeds]
    return {
        "params": params,
        "forward_flops": 1000,
        "step_cost": 1.0,
        "matmul_gflops": matmul,
        "command": command,
        "results": [
            {"seed": s, "acc": a, "matmul_gflops": matmul} for s, a in zip(seeds, accs, strict=True)
        ],
    }


def test_recipes_benchmark_replaces_an_entry_unless_appending():
    from recipes import merge_entry

    old, new = _entry([0, 1], 100.0, command="A"), _entry([2], 130.0, command="B")
    assert merge_entry("fast", old, new, append=False) is new
    assert merge_entry("fast", None, new, append=True) is new
    merged = merge_entry("fast", old, new, append=True)
    assert [r["seed"] for r in merged["results"]] == [0, 1, 2]
    assert merged["matmul_gflops"] == pytest.approx(110.0)
    assert merged["command"] == "A`, then `B"
    assert old["results"] == _entry([0, 1], 100.0, command="A")["results"]  # not mutated


def test_recipes_benchmark_append_replaces_a_seed_measured_again():
    from recipes import merge_entry

    old = _entry([0, 1], 100.0, accs=[0.5, 0.6])
    merged = merge_entry("fast", old, _entry([1], 100.0, accs=[0.7]), append=True)
    assert [(r["seed"], r["acc"]) for r in merged["results"]] == [(0, 0.5), (1, 0.7)]


def test_recipes_benchmark_append_keeps_matmul_figures_of_hand_merged_entries():
    # Results stored before `--append` carry no seed or matmul figure of their own; a merge
    # by hand recorded the figures in `matmul_gflops_per_seed`.
    from recipes import merge_entry

    old = _entry([0, 1], 0.0)
    for r in old["results"]:
        del r["seed"], r["matmul_gflops"]
    old["matmul_gflops_per_seed"] = [90.0, 120.0]
    merged = merge_entry("fast", old, _entry([2], 150.0), append=True)
    assert [r["matmul_gflops"] for r in merged["results"]] == [90.0, 120.0, 150.0]
    assert merged["matmul_gflops"] == pytest.approx(120.0)
    assert "matmul_gflops_per_seed" not in merged


def test_recipes_benchmark_refuses_to_append_results_of_another_model(tmp_path, capsys):
    import recipes

    with pytest.raises(ValueError, match="Cannot append to the stored results of fast: .*100 "):
        recipes.merge_entry("fast", _entry([0], 1.0), _entry([1], 1.0, params=200), append=True)
    # main() refuses before training anything.
    results = tmp_path / "r.json"
    results.write_text(json.dumps({"fast": _entry([0], 1.0, params=7)}))
    argv = ["recipes.py", "--recipes", "fast", "--seeds", "1", "--results", str(results)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", [*argv, "--append"])
        mp.setattr(recipes, "matmul_gflops", lambda: 1.0)
        mp.setattr(recipes, "run_one", lambda *a: pytest.fail("trained"))
        with pytest.raises(SystemExit, match="Store them in another --results file"):
            recipes.main()
    assert json.loads(results.read_text())["fast"]["params"] == 7
