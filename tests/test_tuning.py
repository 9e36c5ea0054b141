"""Hyperparameter search: options, a small local search, resume, changed space, and a
distributed search with one chief and two workers on 127.0.0.1."""

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from fashion_cnn.config import load_config
from fashion_cnn.errors import ConfigError, RunError
from fashion_cnn.io_utils import read_json
from fashion_cnn.tune_folder import STATE_FILE
from fashion_cnn.tune_space import load_space
from fashion_cnn.tuning import TuneOptions, search
from test_tune_space import TINY, write_space


def test_bad_options():
    with pytest.raises(ConfigError, match="Invalid value for `--tuner`"):
        TuneOptions(tuner="grid").validate()
    with pytest.raises(ConfigError, match="`--max-trials`"):
        TuneOptions(max_trials=0).validate()
    with pytest.raises(ConfigError, match=r"`--seed`: expected an integer in \[0, 4294967295\]"):
        TuneOptions(seed=2**32).validate()


def test_overwrite_deletes_nothing_in_a_folder_that_is_no_search(tmp_path):
    (tmp_path / "trials").mkdir()
    (tmp_path / "trials" / "notes.txt").write_text("keep")
    (tmp_path / "results.json").write_text("{}")
    space = load_space(write_space(tmp_path / "trials", name="space.toml"))
    with pytest.raises(RunError, match=r"has no space.json.*\(results.json, trials\)"):
        search(space, None, tmp_path, TuneOptions(overwrite=True))
    assert (tmp_path / "trials" / "notes.txt").read_text() == "keep"
    assert (tmp_path / "results.json").read_text() == "{}"


def test_a_search_folder_is_searched_by_one_process_at_a_time(tmp_path):
    from fashion_cnn.run_folder import locked

    space = load_space(write_space(tmp_path))
    with locked(tmp_path / "tune", "Search folder", "searched"):  # as another `tune` would
        with pytest.raises(RunError, match=r"Search folder .*tune is being searched by anoth"):
            search(space, None, tmp_path / "tune", TuneOptions())
    assert not (tmp_path / "tune" / "space.json").exists()  # it touched nothing


def test_local_search_resume_and_changed_space(real_data, tmp_path):
    space = load_space(write_space(tmp_path))
    out = tmp_path / "tune"
    options = TuneOptions(tuner="random", max_trials=2, budget_minutes=10, seed=3)
    summary = search(space, real_data, out, options)
    assert summary["completed"] == 2
    scores = [t["val_accuracy"] for t in summary["trials"]]
    assert all(0 < s <= 1 for s in scores)
    best = summary["best"]
    assert best["val_accuracy"] == max(scores)
    # trial 0 is the base recipe (seed: rmsprop at 1e-4), the next one a random draw
    first = summary["trials"][0]
    assert first["values"] == {"learning_rate": pytest.approx(1e-4), "optimizer": "rmsprop"}
    assert summary["base"] == {"trial": first["trial"], "val_accuracy": first["val_accuracy"]}
    assert summary["trials"][1]["values"] != first["values"]
    # the best config is a recipe `train --config` accepts, with the trial's values
    config = load_config(out / "best_recipe.toml")
    assert config.learning_rate == pytest.approx(best["values"]["learning_rate"])
    assert config.optimizer == best["values"]["optimizer"] and config.epochs == 1
    assert (out / "trials" / best["trial"] / "model.keras").is_file()
    html = (out / "tune_report.html").read_text()
    assert "best validation accuracy so far" in html and best["trial"] in html

    # a re-run with a larger cap continues: the two finished trials are kept
    more = search(space, real_data, out, TuneOptions(tuner="random", max_trials=3, seed=3))
    assert more["completed"] == 3
    assert [t["val_accuracy"] for t in more["trials"][:2]] == scores

    # so is another tuner (KerasTuner's reload failed with a RuntimeError traceback)
    with pytest.raises(RunError, match="started with --tuner random.*pass --tuner random"):
        search(space, real_data, out, TuneOptions(tuner="bayesian", max_trials=3, seed=3))
    with pytest.raises(RunError, match="started with --seed 3.*not with --seed 4.*--seed 3"):
        search(space, real_data, out, TuneOptions(tuner="random", max_trials=3, seed=4))

    # a changed space is detected instead of silently ignored
    changed = load_space(write_space(tmp_path, TINY.replace("3e-3", "1e-2"), "changed.toml"))
    with pytest.raises(RunError, match="search space differs"):
        search(changed, real_data, out, TuneOptions(tuner="random", max_trials=3))
    fresh = search(changed, real_data, out, TuneOptions(max_trials=1, overwrite=True))
    assert fresh["completed"] == 1


def test_budget_stops_the_search(real_data, tmp_path):
    space = load_space(write_space(tmp_path))
    options = TuneOptions(tuner="hyperband", max_trials=50, budget_minutes=0.001)
    summary = search(space, real_data, tmp_path / "t", options)
    assert summary["completed"] <= 1  # the budget ran out before (or during) the first


def _done_trial(train_seconds: float, epochs: int):
    import keras_tuner as kt

    trial = kt.engine.trial.Trial(kt.HyperParameters(), status="COMPLETED")
    for name, value in (("train_seconds", train_seconds), ("epochs", epochs)):
        trial.metrics.register(name)
        trial.metrics.update(name, value)
    return trial


def test_a_trial_starts_only_when_the_budget_fits_it():
    from fashion_cnn.tuning import fits_budget

    assert fits_budget({}, 1.0) and not fits_budget({}, 0.0)  # nothing to go by yet
    trials = {"0": _done_trial(500, 10), "1": _done_trial(300, 10)}  # 400 s for 10 epochs
    assert fits_budget(trials, 401) and not fits_budget(trials, 399)
    trials["2"] = _done_trial(20, 1)  # Hyperband: plan for the longest trial seen
    assert not fits_budget(trials, 300) and fits_budget(trials, 10 * (50 + 30 + 20) / 3 + 1)


def test_killed_search_resumes_its_trial_and_budget(real_data, monkeypatch, tmp_path):
    import keras

    import fashion_cnn.train
    from fashion_cnn import tuning

    space = load_space(write_space(tmp_path, TINY.replace("epochs = 1", "epochs = 2")))
    out = tmp_path / "tune"
    options = TuneOptions(tuner="random", max_trials=1, budget_minutes=10, seed=1)
    monkeypatch.setattr(tuning, "SAVE_EVERY_S", 0.05)
    real_train = fashion_cnn.train.train
    seen = {}

    class Kill(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            time.sleep(0.3)  # the process dies here, mid-trial, without any clean-up:
            seen["state"] = read_json(out / STATE_FILE)  # the budget is on disk
            raise KeyboardInterrupt

    def killed_train(config, data, run, **kwargs):
        return real_train(config, data, run, callbacks=[Kill()], **kwargs)

    monkeypatch.setattr(fashion_cnn.train, "train", killed_train)
    with pytest.raises(KeyboardInterrupt):
        search(space, real_data, out, options)
    assert seen["state"]["elapsed_s"] > 0
    (trial,) = (out / "trials").iterdir()
    cut_off = read_json(trial / "state.json")  # the run's resume point
    first_epoch = cut_off["history"]["epoch_seconds"]
    assert len(first_epoch) == 1 and not cut_off.get("finished")

    monkeypatch.setattr(fashion_cnn.train, "train", real_train)
    summary = search(space, real_data, out, options)
    assert summary["completed"] == 1
    # the cut-off trial went on from its checkpoint: its first epoch is the one it had
    history = read_json(trial / "history.json")
    assert history["epoch_seconds"][:1] == first_epoch and len(history["epoch_seconds"]) == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.realdata
def test_distributed_search_one_chief_two_workers(real_data, tmp_path):
    space = write_space(tmp_path)
    out = tmp_path / "tune"
    address = f"127.0.0.1:{_free_port()}"
    common = [
        sys.executable, "-m", "fashion_cnn", "tune", "--space", str(space), "--tuner",
        "random", "--max-trials", "4", "--out", str(out), "--no-download",
    ]  # fmt: skip
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    chief = subprocess.Popen([*common, "--chief", address], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)  # fmt: skip
    workers = [
        subprocess.Popen([*common, "--worker", address, "--tuner-id", f"w{i}"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(2)
    ]  # fmt: skip
    try:
        outputs = [w.communicate(timeout=300)[0] for w in workers]
        chief_out = chief.communicate(timeout=120)[0]
    finally:
        for p in (chief, *workers):
            p.kill()
    assert [w.returncode for w in workers] == [0, 0], outputs
    assert chief.returncode == 0, chief_out
    results = read_json(out / "results.json")  # written by the chief from its oracle
    assert results["completed"] == 4
    # each worker ran trials (each trial folder says who ran it); the chief holds them all
    ran_by = [(out / "trials" / t["trial"] / "tuner_id.txt").read_text() for t in results["trials"]]
    assert sorted(set(ran_by)) == ["w0", "w1"], (ran_by, outputs)
    assert [t["ran_by"] for t in results["trials"]] == ran_by
    assert "best" in chief_out


def test_a_worker_without_its_chief_says_what_it_waits_for(tmp_path):
    address = f"127.0.0.1:{_free_port()}"  # nobody serves the oracle there
    argv = [
        sys.executable, "-m", "fashion_cnn", "tune", "--space", str(write_space(tmp_path)),
        "--out", str(tmp_path / "tune"), "--worker", address, "--no-download",
    ]  # fmt: skip
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    worker = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    stop = threading.Timer(60, worker.kill)  # a silent worker would block readline
    stop.start()
    try:
        seen = []
        while worker.poll() is None and not any("does not answer" in s for s in seen):
            seen.append(worker.stderr.readline())
    finally:
        stop.cancel()
        worker.kill()
        worker.communicate()
    assert any(
        f"the search's chief at {address} does not answer yet; waiting for it" in s
        and f"Start it with `fashion-cnn tune --chief {address}`" in s
        for s in seen
    ), seen


@pytest.mark.realdata
def test_a_worker_with_another_space_file_than_its_chief_is_refused(real_data, tmp_path):
    address = f"127.0.0.1:{_free_port()}"
    chiefs_space = write_space(tmp_path)
    other = write_space(tmp_path, TINY.replace("epochs = 1", "epochs = 2"), name="other.toml")
    common = [
        sys.executable, "-m", "fashion_cnn", "tune", "--tuner", "random", "--max-trials",
        "2", "--out", str(tmp_path / "tune"), "--no-download",
    ]  # fmt: skip
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    chief = subprocess.Popen(
        [*common, "--space", str(chiefs_space), "--chief", address],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        worker = subprocess.run(
            [*common, "--space", str(other), "--worker", address, "--tuner-id", "w0"],
            env=env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
    finally:
        chief.kill()
        chief.wait()
    assert worker.returncode == 2, worker.stderr
    assert "error: This worker's search space is not the chief's (space digest" in worker.stderr
    assert "pass every worker the chief's --space file" in worker.stderr
    assert not (tmp_path / "tune" / "trials").exists()  # it trained nothing
