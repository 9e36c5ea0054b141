"""Search-space files for `fashion-cnn tune`: which `TrainConfig` keys a search opens, and
their ranges, declared as KerasTuner hyperparameters.

A search-space file (TOML or JSON) names a base recipe, optional fixed overrides, and one
table per tuned key:

    recipe = "fast"            # the base recipe; trials change only what is listed below
    [fixed]
    epochs = 6
    [hyperparameters]
    width = { choice = [1, 2] }
    learning_rate = { min = 0.02, max = 0.3, log = true }
    translate = { min = 0, max = 3 }             # integers: an Int range
    label_smoothing = { min = 0.0, max = 0.2, step = 0.05 }
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fashion_cnn.config import TrainConfig, load_recipe
from fashion_cnn.errors import ConfigError
from fashion_cnn.io_utils import read_table


@dataclass
class SearchSpace:
    """A parsed search-space file."""

    recipe: str
    fixed: dict[str, Any] = field(default_factory=dict)
    hyperparameters: dict[str, dict] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """A fingerprint of the space, to detect a changed file on resume."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


# Config keys that name or subset a run rather than set how it trains: not tunable.
UNTUNABLE = frozenset({"recipe", "recipe_version", "train_subset"})


def _check_hp(name: str, spec: Any, source: str) -> dict:
    tunable = {f.name for f in dataclasses.fields(TrainConfig)} - UNTUNABLE
    if name not in tunable:
        what = "Untunable" if name in UNTUNABLE else "Unknown"
        raise ConfigError(
            f"{what} key {name!r} in [hyperparameters] of {source}; tunable keys: {sorted(tunable)}"
        )
    if not isinstance(spec, dict):
        raise ConfigError(
            f"Invalid value for hyperparameter `{name}` in {source}: expected a table such as "
            f"{{ choice = [1, 2] }} or {{ min = 0.01, max = 0.3, log = true }}, received {spec!r}"
        )
    if "choice" in spec:
        if not isinstance(spec["choice"], list) or not spec["choice"]:
            raise ConfigError(
                f"Invalid value for `{name}.choice` in {source}: expected a non-empty list, "
                f"received {spec['choice']!r}"
            )
        return spec
    if "min" in spec and "max" in spec:
        lo, hi = spec["min"], spec["max"]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (lo, hi)):
            raise ConfigError(
                f"Invalid value for `{name}.min/max` in {source}: expected numbers, "
                f"received {lo!r} and {hi!r}"
            )
        if not lo < hi:
            raise ConfigError(
                f"Invalid value for `{name}` in {source}: expected min < max, received "
                f"min={lo!r}, max={hi!r}"
            )
        if spec.get("log") and lo <= 0:
            raise ConfigError(
                f"Invalid value for `{name}.min` in {source}: a log range needs min > 0, "
                f"received {lo!r}"
            )
        return spec
    raise ConfigError(
        f"Invalid value for hyperparameter `{name}` in {source}: expected `choice = [...]` or "
        f"`min` and `max`, received keys {sorted(spec)}"
    )


def load_space(path: str | os.PathLike) -> SearchSpace:
    """Reads and checks a search-space file.

    Raises:
        ConfigError: not a .toml or .json file, unreadable file, unknown key, or a
            malformed range.
    """
    path = Path(path)
    values = read_table(path, "search space")
    unknown = sorted(set(values) - {"recipe", "fixed", "hyperparameters"})
    if unknown:
        raise ConfigError(
            f"Unknown key(s) {unknown} in {path}; expected recipe, [fixed], [hyperparameters]"
        )
    for key in ("fixed", "hyperparameters"):
        if not isinstance(values.get(key, {}), dict):
            raise ConfigError(
                f"Invalid value for `{key}` in {path}: expected a table ([{key}] followed by "
                f"`key = value` lines), received {values[key]!r}"
            )
    if not isinstance(values.get("recipe", ""), str):
        raise ConfigError(
            f'Invalid value for `recipe` in {path}: expected a recipe name such as "fast", '
            f"received {values['recipe']!r}"
        )
    space = SearchSpace(
        recipe=values.get("recipe", "fast"),
        fixed=dict(values.get("fixed", {})),
        hyperparameters={
            k: _check_hp(k, v, str(path)) for k, v in values.get("hyperparameters", {}).items()
        },
    )
    if not space.hyperparameters:
        raise ConfigError(f"Search space {path} has no [hyperparameters] to tune")
    base_config(space, {})  # unknown fixed keys or bad values fail now, not in a trial
    return space


def base_config(space: SearchSpace, values: dict) -> TrainConfig:
    """The base recipe with the fixed overrides and one trial's values applied."""
    config = load_recipe(space.recipe)
    merged = {**config.to_dict(), **space.fixed, **values, "recipe": f"{space.recipe}-tuned"}
    return TrainConfig.from_dict(merged, source="the search space")


def _base_default(spec: dict, value: Any) -> dict:
    """`{"default": value}` when the base recipe's `value` lies in the range or choices of
    `spec` (so KerasTuner can start from it), else nothing."""
    if "choice" in spec:
        return {"default": value} if value in spec["choice"] else {}
    if isinstance(value, bool) or not isinstance(value, int | float):
        return {}
    return {"default": value} if spec["min"] <= value <= spec["max"] else {}


def declare(hp, space: SearchSpace) -> dict:
    """Declares the space's hyperparameters on a KerasTuner `HyperParameters`; returns the
    values of this trial. Each hyperparameter's default is the base recipe's value when that
    lies in its range, so the defaults describe the base recipe (trial 0 of a search)."""
    base = base_config(space, {}).to_dict()
    values = {}
    for name, spec in space.hyperparameters.items():
        default = _base_default(spec, base.get(name))
        if "choice" in spec:
            values[name] = hp.Choice(name, spec["choice"], **default)
        elif all(isinstance(spec[k], int) for k in ("min", "max")) and not isinstance(
            spec.get("step", 1), float
        ):
            default = {k: int(v) for k, v in default.items()}
            values[name] = hp.Int(
                name,
                spec["min"],
                spec["max"],
                step=spec.get("step"),
                sampling="log" if spec.get("log") else "linear",
                **default,
            )
        else:
            default = {k: float(v) for k, v in default.items()}
            values[name] = hp.Float(
                name,
                float(spec["min"]),
                float(spec["max"]),
                step=spec.get("step"),
                sampling="log" if spec.get("log") else "linear",
                **default,
            )
    return values
