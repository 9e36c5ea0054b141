"""The files of a search folder (`tune --out`), and the checks on them that need no
KerasTuner: what the search was started with, the budget it has used, and who ran each
trial. (`fashion_cnn.run_folder` is the same for a run folder.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

from fashion_cnn.errors import ConfigError, RunError
from fashion_cnn.io_utils import read_json, write_json
from fashion_cnn.tune_space import SearchSpace

SPACE_FILE = "space.json"  # what the search was started with (`record_search`)
STATE_FILE = "tune_state.json"
BEST_RECIPE = "best_recipe.toml"
REPORT_FILE = "tune_report.html"
RESULTS_FILE = "results.json"
TRIALS_DIR = "trials"  # one run folder per trial
TUNER_ID_FILE = "tuner_id.txt"  # in a trial's run folder: the tuner that ran it
SPACE_DIGEST = "fashion_cnn/space_digest"  # a fixed hyperparameter of the chief's oracle
PROJECT = "search"  # KerasTuner's project folder inside --out


def check_search_folder(
    out: Path, space: SearchSpace, tuner: str, seed: int, overwrite: bool
) -> float:
    """Checks `out` against the search about to run in it; with `overwrite`, clears an
    earlier search there.

    Returns:
        The budget seconds already used there (0 for a new or cleared search).

    Raises:
        RunError: `out` holds a search of another space, tuner or seed; or, with
            `overwrite`, files of a search but no `space.json` (then it is not a search's
            folder, and nothing is deleted).
    """
    state_path = out / STATE_FILE
    if overwrite and out.exists():
        ours = (STATE_FILE, BEST_RECIPE, REPORT_FILE, RESULTS_FILE, TRIALS_DIR, PROJECT)
        found = [name for name in ours if (out / name).exists()]
        if found and not (out / SPACE_FILE).exists():
            # not a search folder (each search writes space.json first): never delete there
            raise RunError(
                f"Search folder {out} has no {SPACE_FILE}, so it is not a search's, and "
                f"--overwrite would delete what is yours there ({', '.join(found)}). To fix "
                "it: pass --out a new folder, or one that `fashion-cnn tune` wrote."
            )
        for name in (SPACE_FILE, *ours):
            if (out / name).is_dir():
                shutil.rmtree(out / name)
            else:
                (out / name).unlink(missing_ok=True)
        return 0.0
    if (out / SPACE_FILE).exists():
        saved = read_json(out / SPACE_FILE)
        if saved.get("digest") != space.digest():
            raise RunError(
                f"The search space differs from the one {out} was started with (saved: "
                f"{saved.get('space')}). KerasTuner would silently keep the old space: use "
                f"another --out, or pass --overwrite to start a fresh search."
            )
        for flag, now in (("tuner", tuner), ("seed", seed)):
            if saved.get(flag, now) != now:  # recorded since 2026-11-28
                raise RunError(
                    f"The search in {out} was started with --{flag} {saved[flag]}, and "
                    f"KerasTuner continues it from its saved state, not with --{flag} {now}. "
                    f"To fix it: pass --{flag} {saved[flag]} to continue it, use another "
                    "--out, or pass --overwrite to start a fresh search."
                )
    if state_path.exists():
        return float(read_json(state_path).get("elapsed_s", 0.0))
    return 0.0


def record_search(out: Path, space: SearchSpace, tuner: str, seed: int) -> None:
    """Writes what the search in `out` was started with, for `check_search_folder`."""
    record = {"digest": space.digest(), "space": space.to_dict(), "tuner": tuner, "seed": seed}
    write_json(out / SPACE_FILE, record)


def record_elapsed(out: Path, seconds: float) -> None:
    """Writes the budget seconds the search in `out` has used."""
    write_json(out / STATE_FILE, {"elapsed_s": seconds})


def check_worker_space(space: SearchSpace, chief_hp) -> None:
    """Raises ConfigError if this worker's space file is not the chief's: its trials would
    train other settings than the chief records. (A search started before the chief
    published its digest is not checked.)

    Args:
        space: this worker's search space.
        chief_hp: the chief oracle's `HyperParameters`.
    """
    digest = chief_hp.values.get(SPACE_DIGEST)
    if digest is not None and digest != space.digest():
        raise ConfigError(
            f"This worker's search space is not the chief's (space digest "
            f"{space.digest()[:12]} here, {digest[:12]} at the chief): its trials would "
            "train other settings than the chief records. To fix it: pass every worker the "
            "chief's --space file."
        )


def ran_by(run: Path) -> str | None:
    """The tuner that ran the trial in run folder `run`; None when its folder is on another
    machine."""
    path = run / TUNER_ID_FILE
    return path.read_text() if path.exists() else None
