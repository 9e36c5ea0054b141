"""Hyperparameter search with KerasTuner: trials trained by `train()` over a search space
(see `fashion_cnn.tune_space` for the file format), scored on the validation split only.

Distributed search uses KerasTuner's own mode: one chief process holds the oracle and
workers ask it for trials (environment KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP,
KERASTUNER_ORACLE_PORT, set by the CLI from `--chief` / `--worker`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from fashion_cnn.config import TrainConfig, check_seed
from fashion_cnn.data import Dataset
from fashion_cnn.errors import ConfigError, RunError
from fashion_cnn.io_utils import make_folder, read_json, write_json, write_text
from fashion_cnn.run_folder import locked
from fashion_cnn.tune_folder import (
    BEST_RECIPE,
    PROJECT,
    REPORT_FILE,
    RESULTS_FILE,
    SPACE_DIGEST,
    TRIALS_DIR,
    TUNER_ID_FILE,
    check_search_folder,
    check_worker_space,
    ran_by,
    record_elapsed,
    record_search,
)
from fashion_cnn.tune_space import SearchSpace, base_config, declare

log = logging.getLogger(__name__)

TUNERS = ("hyperband", "bayesian", "random")
OBJECTIVE = "val_accuracy"
SAVE_EVERY_S = 5.0  # how often the budget spent is recorded


@dataclass
class TuneOptions:
    """How to search (everything but the space)."""

    tuner: str = "random"
    max_trials: int = 20
    budget_minutes: float = 60.0
    seed: int = 0
    overwrite: bool = False

    def validate(self) -> TuneOptions:
        if self.tuner not in TUNERS:
            raise ConfigError(
                f"Invalid value for `--tuner`: expected one of {list(TUNERS)}, "
                f"received {self.tuner!r}"
            )
        if not isinstance(self.max_trials, int) or self.max_trials < 1:
            raise ConfigError(
                f"Invalid value for `--max-trials`: expected an integer >= 1, "
                f"received {self.max_trials!r}"
            )
        if not self.budget_minutes > 0:
            raise ConfigError(
                f"Invalid value for `--budget-minutes`: expected a number > 0, "
                f"received {self.budget_minutes!r}"
            )
        check_seed(self.seed, "--seed")
        return self


def fits_budget(trials: dict, seconds_left: float) -> bool:
    """Whether another trial is expected to finish in `seconds_left`: the mean training time
    of the completed trials (Hyperband's vary in epochs: per epoch, times the most epochs
    seen) must fit. Before any trial has finished, any time left will do."""
    if seconds_left <= 0:
        return False
    done = [
        (t.metrics.get_last_value("train_seconds"), t.metrics.get_last_value("epochs"))
        for t in trials.values()
        if t.status == "COMPLETED" and t.metrics.exists("train_seconds")
    ]
    if not done:
        return True
    per_epoch = sum(seconds / epochs for seconds, epochs in done) / len(done)
    return per_epoch * max(epochs for _, epochs in done) <= seconds_left


def _budgeted(oracle_cls, base_first: bool):
    """`oracle_cls` that also stops handing out trials after `max_trials` trials or when
    the rest of the time budget cannot fit another trial (see `fits_budget`; KerasTuner's
    Hyperband has no trial cap, none has a clock)
    and, with `base_first`, makes trial 0 the base recipe itself (the hyperparameters'
    defaults), so every search measures the recipe it starts from on the same terms."""

    class Budgeted(oracle_cls):
        def populate_space(self, trial_id):
            import keras_tuner as kt

            left = self.fc_deadline - time.monotonic()
            if len(self.trials) >= self.fc_max_trials or not fits_budget(self.trials, left):
                return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}
            if base_first and not self.trials:
                values = {hp.name: hp.default for hp in self.hyperparameters.space}
                return {"status": kt.engine.trial.TrialStatus.RUNNING, "values": values}
            return super().populate_space(trial_id)

    Budgeted.__name__ = f"Budgeted{oracle_cls.__name__}"
    return Budgeted


def make_oracle(space: SearchSpace, options: TuneOptions, deadline: float):
    """The KerasTuner oracle for `options.tuner`, seeded, scored on validation accuracy."""
    import keras_tuner as kt

    hp = kt.HyperParameters()
    declare(hp, space)
    # What the workers check their own space file against (`check_worker_space`): the
    # chief hands out only the tuned values, each worker adds its file's fixed settings.
    hp.Fixed(SPACE_DIGEST, space.digest())
    objective = kt.Objective(OBJECTIVE, direction="max")
    common = {"objective": objective, "seed": options.seed, "hyperparameters": hp}
    common["allow_new_entries"] = False
    if options.tuner == "hyperband":
        epochs = base_config(space, {}).epochs
        # Hyperband's brackets decide every trial's epochs: no base trial there.
        oracle = _budgeted(kt.oracles.HyperbandOracle, False)(max_epochs=epochs, factor=3, **common)
    elif options.tuner == "bayesian":
        oracle = _budgeted(kt.oracles.BayesianOptimizationOracle, True)(
            max_trials=options.max_trials, **common
        )
    else:
        oracle = _budgeted(kt.oracles.RandomSearchOracle, True)(
            max_trials=options.max_trials, **common
        )
    oracle.fc_max_trials = options.max_trials
    oracle.fc_deadline = deadline
    return oracle


def trial_config(space: SearchSpace, hp) -> TrainConfig:
    """The training config of one trial (Hyperband's `tuner/epochs` sets the epochs)."""
    values = {name: hp.get(name) for name in space.hyperparameters}
    if "tuner/epochs" in hp.values:
        values["epochs"] = int(hp.values["tuner/epochs"])
    return base_config(space, values)


def make_tuner(space: SearchSpace, options: TuneOptions, out: Path, deadline: float):
    """A KerasTuner tuner whose trials are `train()` runs in `out/trials/ID`."""
    import keras_tuner as kt

    from fashion_cnn.run_folder import saved_config
    from fashion_cnn.train import for_this_machine, train

    class TrainTuner(kt.engine.base_tuner.BaseTuner):
        def run_trial(self, trial, data: Dataset):
            config = for_this_machine(trial_config(space, trial.hyperparameters))
            run = out / TRIALS_DIR / trial.trial_id
            run.mkdir(parents=True, exist_ok=True)
            write_text(run / TUNER_ID_FILE, self.tuner_id)  # who ran it
            # A trial cut off by an interruption is handed out again on resume: continue it
            # from its last epoch rather than start over, when its config is the same.
            resumable = saved_config(run) == config.to_dict()
            train(config, data, run, verbose=0, overwrite=not resumable)
            history = read_json(run / "history.json")
            if not history.get("val_accuracy"):
                raise RunError("a search needs a validation split: set val_fraction > 0")
            return {
                OBJECTIVE: float(history["val_accuracy"][-1]),  # the final model's
                "train_seconds": float(sum(history["epoch_seconds"])),
                "epochs": float(config.epochs),
            }

        def on_trial_end(self, trial):
            super().on_trial_end(trial)
            _progress(self.oracle, options, deadline, self.tuner_id)

    return TrainTuner(
        oracle=make_oracle(space, options, deadline),
        directory=str(out),
        project_name=PROJECT,
        overwrite=options.overwrite,
    )


def _progress(oracle, options: TuneOptions, deadline: float, who: str) -> None:
    best = oracle.get_best_trials(1)
    best_text = (
        f"best val {best[0].score:.4f} (trial {best[0].trial_id})"
        if best and best[0].score is not None
        else "no result yet"
    )
    done = len(getattr(oracle, "trials", {})) or "?"
    left = max(0.0, deadline - time.monotonic()) / 60
    log.info(
        "[%s] trials %s/%d, %s, %.1f min of budget left",
        who,
        done,
        options.max_trials,
        best_text,
        left,
    )


def search(
    space: SearchSpace,
    data: Dataset | None,
    out_dir: str | os.PathLike,
    options: TuneOptions,
) -> dict:
    """Runs (or resumes) a search; in distributed mode, this process's part of it.

    Args:
        space: the search space.
        data: the dataset (None on a distributed chief, which trains nothing).
        out_dir: the search folder: KerasTuner's state, one run folder per trial, and at
            the end `best_recipe.toml`, `results.json` and `tune_report.html`.
        options: tuner, trial cap, time budget, seed, overwrite.

    Returns:
        The summary (see `summarize`); on a distributed worker only {"role": "worker"}.

    Raises:
        RunError: another process searches `out_dir` now, or it holds another search.
    """
    from keras_tuner.src.distribute import utils as dist_utils

    options.validate()
    out = Path(out_dir)
    is_worker = dist_utils.has_chief_oracle() and not dist_utils.is_chief_oracle()
    if is_worker:  # a worker must never wipe the (possibly shared) search folder
        options = dataclasses.replace(options, overwrite=False)
    make_folder(out, "Search folder", "--out")  # before it is checked
    if is_worker:  # the chief holds the folder: several workers may share it
        return _search(space, data, out, options, is_worker)
    with locked(out, "Search folder", "searched"):  # by one local search or chief at a time
        return _search(space, data, out, options, is_worker)


def _search(space, data, out: Path, options: TuneOptions, is_worker: bool) -> dict:
    from keras_tuner.src.distribute import utils as dist_utils

    used = 0.0
    if not is_worker:
        used = check_search_folder(out, space, options.tuner, options.seed, options.overwrite)
        record_search(out, space, options.tuner, options.seed)
    start = time.monotonic()
    deadline = start + options.budget_minutes * 60 - used
    tuner = make_tuner(space, options, out, deadline)

    def save_elapsed():
        record_elapsed(out, used + time.monotonic() - start)

    if is_worker:
        check_worker_space(space, tuner.oracle.get_space())
        tuner.search(data)
        return {"role": "worker", "tuner_id": tuner.tuner_id}

    # Record the budget spent every few seconds, so that even a killed search resumes with
    # the right amount of budget left; the chief, which trains nothing, reports progress.
    import threading

    stop = threading.Event()
    chief = dist_utils.is_chief_oracle()

    def monitor():
        seen = -1
        while not stop.wait(SAVE_EVERY_S):
            save_elapsed()
            if chief:
                done = sum(t.status == "COMPLETED" for t in tuner.oracle.trials.values())
                if done != seen:
                    seen = done
                    _progress(tuner.oracle, options, deadline, "chief")

    thread = threading.Thread(target=monitor, daemon=True)
    thread.start()
    try:
        tuner.search(data)
    finally:
        stop.set()
        save_elapsed()
    return summarize(tuner.oracle, space, out)


def _base_trial(space: SearchSpace, done: list[dict]) -> dict | None:
    """The completed trial that ran the base recipe's own values (trial 0 of a random or
    Bayesian search), if any."""
    import keras_tuner as kt

    hp = kt.HyperParameters()
    declare(hp, space)
    defaults = {h.name: h.default for h in hp.space}
    return next((t for t in done if t["values"] == defaults), None)


def summarize(oracle, space: SearchSpace, out: Path) -> dict:
    """Writes `results.json`, `best_recipe.toml` and `tune_report.html` from the oracle's
    trials; returns the summary."""
    from fashion_cnn.config import to_toml
    from fashion_cnn.tune_report import render_tune_html

    trials = []
    for trial_id, trial in sorted(oracle.trials.items()):
        metrics = {
            name: trial.metrics.get_last_value(name)
            for name in (OBJECTIVE, "train_seconds", "epochs")
            if trial.metrics.exists(name)
        }
        trials.append(
            {
                "trial": trial_id,
                "status": str(trial.status),
                "values": {k: trial.hyperparameters.values.get(k) for k in space.hyperparameters},
                "epochs": metrics.get("epochs"),
                "val_accuracy": metrics.get(OBJECTIVE),
                "train_seconds": metrics.get("train_seconds"),
                "ran_by": ran_by(out / TRIALS_DIR / trial_id),
            }
        )
    done = [t for t in trials if t["val_accuracy"] is not None]
    summary = {"trials": trials, "completed": len(done), "best": None, "base": None}
    base = _base_trial(space, done)
    if base is not None:
        summary["base"] = {"trial": base["trial"], "val_accuracy": base["val_accuracy"]}
    if done:
        best = max(done, key=lambda t: t["val_accuracy"])
        values = dict(best["values"])
        if best["epochs"] is not None:
            values["epochs"] = int(best["epochs"])
        config = base_config(space, values)
        write_text(
            out / BEST_RECIPE,
            f"# best of {len(done)} trials in {out} (validation accuracy "
            f"{best['val_accuracy']:.4f}, trial {best['trial']})\n" + to_toml(config),
        )
        summary["best"] = {
            **best,
            "config": config.to_dict(),
            "recipe_file": str(out / BEST_RECIPE),
        }
    write_json(out / RESULTS_FILE, summary)
    write_text(out / REPORT_FILE, render_tune_html(summary, space))
    return summary
