"""The files of a run folder, and the checks on them that need no TensorFlow: its model
file, its saved config against a new one, and its lock while a process trains it.

The commands call `model_path` before they import TensorFlow (~10 s), so that a mistyped
run folder is reported at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import filelock

from fashion_cnn.config import TrainConfig, recipe_names
from fashion_cnn.errors import ConfigError, DamagedFileError, RunError
from fashion_cnn.io_utils import read_json

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
MODEL_FILE = "model.keras"
BEST_FILE = "best.keras"
HISTORY_FILE = "history.json"
STATE_FILE = "state.json"
CALIBRATION_FILE = "calibration.json"
METRICS_FILE = "metrics.json"  # the final model's evaluation
REPORT_FILE = "report.html"
ROBUSTNESS_FILES = ("robustness.json", "robustness.html")  # `fashion-cnn robustness`
EXPORTS_DIR = "exports"  # `fashion-cnn export`'s default place: RUN/exports/ENGINE/
CKPT_DIR = "checkpoints"
LOCK_FILE = ".lock"  # locked by the process that trains the folder (`locked`)
PID_FILE = ".lock.pid"  # that process's id, while it trains
#: The Keras models of a finished run, by the name `--checkpoint` takes.
CHECKPOINTS = {"final": MODEL_FILE, "best": BEST_FILE}


def evaluation_files(checkpoint: str = "final") -> tuple[str, str]:
    """The metrics and report file names of `checkpoint`'s evaluation: `metrics.json` and
    `report.html` for the final model, `metrics-best.json` and `report-best.html` for the
    best checkpoint (so that evaluating it never replaces the final model's figures, which
    the model cards quote)."""
    if checkpoint == "final":
        return METRICS_FILE, REPORT_FILE
    return f"metrics-{checkpoint}.json", f"report-{checkpoint}.html"


def model_path(run_dir: str | Path, checkpoint: str = "final", *, must_exist: bool = True) -> Path:
    """The Keras model file of a run folder's `checkpoint`.

    Args:
        run_dir: a folder written by `train`.
        checkpoint: "final" (model.keras) or "best" (best validation accuracy).
        must_exist: also require the model file (training has finished), not only the folder.

    Returns:
        The path of the model file.

    Raises:
        RunError: `checkpoint` is unknown, the folder does not exist or is a file, or (with
            `must_exist`) the model file is missing.
    """
    run = Path(run_dir)
    if checkpoint not in CHECKPOINTS:
        raise RunError(
            f"Invalid value for `checkpoint`: expected one of {list(CHECKPOINTS)}, "
            f"received {checkpoint!r}"
        )
    path = run / CHECKPOINTS[checkpoint]
    if run.exists() and not run.is_dir():
        raise RunError(
            f"Run folder {run} is a file, not a folder. Pass the folder that "
            "`fashion-cnn train --out` wrote."
        )
    if not run.is_dir():
        raise RunError(
            f"Run folder {run} does not exist. Train one with `fashion-cnn train --out {run}`."
        )
    if must_exist and not path.is_file() and not (run / CONFIG_FILE).is_file():
        raise RunError(
            f"{run} is not a run folder: it has neither {CONFIG_FILE} nor {path.name}. Pass "
            "the folder that `fashion-cnn train --out` wrote."
        )
    if must_exist and not path.is_file() and (run / MODEL_FILE).is_file():
        raise RunError(
            f"Run folder {run} has no {path.name}, only the final {MODEL_FILE}: its training "
            "kept no best checkpoint (it had no validation split, val_fraction = 0). To fix "
            "it: use the final model (leave out --checkpoint)."
        )
    if must_exist and not path.is_file():
        raise RunError(
            f"Run folder {run} has no {path.name}: training has not finished. Re-run the same "
            f"`fashion-cnn train` command to resume it."
        )
    return path


def load_keras_file(path: Path, fix: str):
    """`keras.models.load_model(path)`, a file it cannot load said as damaged.

    Args:
        path: a `.keras` file this program wrote (a run's model or checkpoint).
        fix: how to fix a damaged one, for the message, e.g. "pass --overwrite to start the
            run again."

    Raises:
        DamagedFileError: the file is not a zip file (Keras would say "File not found"),
            or Keras cannot load it.
    """
    import zipfile

    import keras

    if not zipfile.is_zipfile(path):
        raise DamagedFileError(
            f"{path} is damaged: it is not a .keras (zip) file. To fix it: {fix}"
        )
    try:
        return keras.models.load_model(path)
    except Exception as e:  # noqa: BLE001 - any loader failure means the file is unusable
        raise DamagedFileError(
            f"{path} is damaged: Keras cannot load it ({str(e).rstrip('.')}). To fix it: {fix}"
        ) from None


def saved_config(out: Path) -> dict | None:
    """The config a run folder was started with, as `TrainConfig.to_dict()` gives it (read
    through the dataclass, so that keys added since, with their defaults, don't count);
    None when the folder has none."""
    saved = out / CONFIG_FILE
    if not saved.exists():
        return None
    return TrainConfig.from_dict(read_json(saved), source=str(saved)).to_dict()


def check_run_folder(out: Path, config: TrainConfig, overwrite: bool) -> None:
    """Makes `out` ready to train `config`: nothing to do for a new folder; with `overwrite`,
    removes an earlier run's files; otherwise the earlier run must have the same config.

    With `overwrite`, the earlier model's evaluations (metrics*.json, report*.html,
    robustness.*) and exports (`exports/`) go too: they describe a model that is no more.

    Raises:
        RunError: `out` was started with a different config (the message lists the keys),
            or holds a config.json that is not a run's (then nothing is deleted, even with
            `overwrite`).
        DamagedFileError: `out`'s config.json is damaged and `overwrite` is off.
    """
    saved = out / CONFIG_FILE
    if not saved.exists():
        return
    try:
        previous = saved_config(out)
    except DamagedFileError:
        if not overwrite:
            raise
        previous = None  # a damaged run: --overwrite is its fix
    except ConfigError as e:  # some other program's config.json: never delete its files
        raise RunError(
            f"Run folder {out} holds a {CONFIG_FILE} that is not a fashion-cnn run's ({e}). "
            "To fix it: pass --out a new folder, or one that `fashion-cnn train` wrote."
        ) from None
    if overwrite:
        # the model's files, and what was made from the model: its evaluations and exports,
        # which `predict`, `serve` and the model cards would otherwise take for the new one's
        derived = [*evaluation_files("final"), *evaluation_files("best"), *ROBUSTNESS_FILES]
        for name in (
            CONFIG_FILE,
            MODEL_FILE,
            BEST_FILE,
            HISTORY_FILE,
            STATE_FILE,
            CALIBRATION_FILE,
            *derived,
        ):
            (out / name).unlink(missing_ok=True)
        for folder in (CKPT_DIR, EXPORTS_DIR):
            shutil.rmtree(out / folder, ignore_errors=True)
        return
    now = config.to_dict()
    if previous["recipe_version"] is None:  # started before recipes had versions
        now["recipe_version"] = None
    if previous != now:
        diff = {k: (previous.get(k), v) for k, v in now.items() if previous.get(k) != v}
        again = "repeat the original command"
        if (
            "recipe_version" in diff
            and previous["recipe_version"] is not None
            and previous["recipe"] in recipe_names()  # a shipped one, not e.g. "fast-tuned"
        ):
            again += f" (`--recipe {previous['recipe']}@{previous['recipe_version']}`)"
        raise RunError(
            f"Run folder {out} was started with a different config "
            f"(saved vs now: {diff}). To fix it: use another --out folder, {again} to resume "
            f"it, or pass --overwrite to start it again."
        )


@contextlib.contextmanager
def locked(run_dir: Path, what: str = "Run folder", activity: str = "trained") -> Iterator[None]:
    """Holds the run folder for one training process: two at once would overwrite each
    other's checkpoints. (`tune` holds its search folder the same way.)

    The lock is the operating system's (`filelock`, i.e. `flock` or its Windows
    equivalent) on the folder's `.lock` file, so it ends with its process, even one that
    was killed: the next `train` resumes the folder without anything to clean up. The
    holder's process id is written to `.lock.pid` for the error message.

    Where the file system has no locks (filelock 3 without `flock`, e.g. some network
    file systems), it warns and trains without one.

    Args:
        run_dir: the folder.
        what, activity: for the message, e.g. "Search folder" and "searched".

    Raises:
        RunError: another running process holds the folder.
    """
    lock = filelock.FileLock(Path(run_dir) / LOCK_FILE, timeout=0)
    pid_file = Path(run_dir) / PID_FILE
    try:
        lock.acquire()
    except filelock.Timeout:
        holder = ""
        with contextlib.suppress(OSError):
            holder = pid_file.read_text().strip()
        who = f" (id {holder})" if holder.isdigit() else ""
        raise RunError(
            f"{what} {run_dir} is being {activity} by another process{who}. To fix it: wait "
            f"for that process to end, or use another --out folder."
        ) from None
    except NotImplementedError as e:  # filelock 3 on a file system without `flock`
        log.warning(
            "%s %s cannot be locked (%s): make sure no other process uses it.", what, run_dir, e
        )
        lock = None
    if lock is None:
        yield
        return
    try:
        pid_file.write_text(str(os.getpid()))
        yield
    finally:
        pid_file.unlink(missing_ok=True)
        lock.release()
