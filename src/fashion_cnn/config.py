"""Training recipes: one dataclass, loaded from TOML or JSON, validated with clear errors.

A recipe is a config file shipped in `fashion_cnn/recipes/`; a user's own file (`--config`)
has the same keys. Flags override either. The fully resolved config is saved next to the
model as `config.json`, so a run folder describes itself.

Recipes are versioned: each file carries a `recipe_version`, raised whenever its settings
change, and the versions it replaced stay in `fashion_cnn/recipes/history/NAME@VERSION.toml`.
`--recipe fast` is the current version, `--recipe fast@1` an earlier one (what an older
figure in BENCHMARKS.md was measured with).
"""

from __future__ import annotations

import dataclasses
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

from fashion_cnn.errors import ConfigError
from fashion_cnn.io_utils import read_table, tomllib

OPTIMIZERS = ("rmsprop", "adam", "adamw", "sgd")
SCHEDULES = ("constant", "onecycle")
PRECISIONS = ("float32", "mixed_bfloat16", "auto")
# The keys of `fashion_cnn.models.MODELS`, named here so that checking a config does not
# load TensorFlow (~10 s); tests/test_models.py keeps the two equal.
MODEL_NAMES = ("seed", "convnet", "resconv", "convnet4")
FIXED_WIDTH = ("seed",)  # models whose channel counts are fixed (no `width` or `channels`)
FIXED_SIZE = ("seed",)  # models that take only 28x28 images (a Flatten before a Dense layer)
# The largest seed: `keras.utils.set_random_seed` seeds NumPy's legacy generator, which
# takes 32 bits.
MAX_SEED = 2**32 - 1


def check_seed(value: Any, name: str = "seed") -> int:
    """Returns `value` if it is a valid seed: an integer in [0, MAX_SEED].

    Args:
        value: the seed to check.
        name: what to call it in the error, e.g. `--seed`.

    Raises:
        ConfigError: naming `name`, the range and the value received.
    """
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SEED:
        raise ConfigError(
            f"Invalid value for `{name}`: expected an integer in [0, {MAX_SEED}], "
            f"received {value!r}"
        )
    return value


@dataclasses.dataclass
class TrainConfig:
    """Everything that determines a training run.

    Attributes:
        recipe: name of the recipe this config came from (informational).
        recipe_version: version of that shipped recipe (None for your own files; configs
            derived from a recipe, such as tuned ones, keep their base recipe's version).
        model: key of the model registry (`fashion_cnn.models.MODELS`; `MODEL_NAMES`).
        scale: factor the model's `Rescaling` layer applies to raw 0-255 pixels
            (1.0 = the blog notebook's raw pixels, 1/255 = normalized).
        optimizer: one of `OPTIMIZERS`.
        learning_rate: the optimizer's learning rate.
        epochs: number of passes over the training split.
        batch_size: images per gradient step.
        val_fraction: share of the 60k training images held out for validation.
        split_seed: seed of the validation split (fixed across runs so all runs compare).
        seed: seed of weight initialization and data order.
        precision: "float32", "mixed_bfloat16" (bf16 compute, float32 weights), or "auto":
            bf16 where the hardware computes it natively, float32 elsewhere
            (`fashion_cnn.hardware`); `train` records the precision it chose.
        jit_compile: compile the train step with XLA (slower for these models on CPU).
        train_subset: use only the first N training images (quick runs and tests).
        width: channel multiplier for models that have one (ignored by `seed`).
        channels: the channels of the stem and the three stages of the models with stages
            (`convnet`, `resconv`, `convnet4`): four integers such as [8, 16, 32, 128] that
            replace (16, 32, 64, 128) x `width`; absent (None) to keep those. Set either
            this or `width`, not both.
        fused_bn: train BatchNorm layers with TensorFlow's fused kernel instead of Keras'
            element-wise ops (faster on CPU; same inference; ignored by `seed`).
        se: squeeze-and-excitation after each stage of the models that have stages: the
            reduction ratio of its bottleneck (channels // se units), 0 = off.
        schedule: "constant", or "onecycle" (linear warm-up for `warmup_fraction` of the
            steps, then cosine decay to zero).
        warmup_fraction: share of all steps spent warming up (one-cycle only).
        weight_decay: decoupled weight decay (adamw) or L2-style decay (sgd).
        label_smoothing: cross-entropy label smoothing in [0, 1).
        ema: momentum of an exponential moving average of the weights (0 = off); the
            saved final model holds the averaged weights, with its BatchNorm statistics
            recomputed for them over training batches.
        translate: largest random shift in pixels (0 = off).
        flip: random horizontal flips (never vertical).
        alternate_flip: with `flip`, mirror each image in every other epoch instead of at
            random: a random half in even epochs, the other half in odd ones (airbench's
            "alternating flip"), so no image goes unmirrored (or mirrored) for long.
        low_res: progressive resizing (as in FFCV's and fast.ai's ImageNet speed recipes):
            the image side, in pixels, of the first epoch's training batches, which are
            downscaled to it; later epochs grow in steps of 4 pixels to the full 28 by
            `low_res_until` of the epochs. Convolutions cost in proportion to the area, so
            the early epochs are cheaper. A multiple of 4 in [8, 28]; 28 = off. Validation,
            evaluation and prediction always see 28x28.
        low_res_until: share of the epochs after which every epoch trains at 28x28.
        erase: probability of random erasing per image (0 = off).
        cutmix: probability per image of CutMix (Yun et al., 2019): a random rectangle of
            another image of the batch is pasted in, and the one-hot labels are mixed in
            proportion to the pasted area (0 = off).
        sam: sharpness-aware minimization (`fashion_cnn.sam`): the radius rho of each
            step's climb before the gradient is taken (0 = off; SAM's usual 0.05).
        sam_fraction: share of each batch the climbing gradient is computed on (SAM's
            "m-sharpness"; a step costs about 1 + sam_fraction plain steps).
        tta: the test-time augmentation this run is evaluated with by default: "none",
            "flip" (horizontal mirror) or "flip-shift" (mirror and 1-pixel shifts, 18 views);
            `fashion-cnn evaluate --tta MODE/--no-tta` overrides. true/false (run folders
            written before the modes) mean "flip"/"none".
    """

    recipe: str = "custom"
    recipe_version: int | None = None
    model: str = "seed"
    scale: float = 1.0
    optimizer: str = "rmsprop"
    learning_rate: float = 1e-4
    epochs: int = 10
    batch_size: int = 512
    val_fraction: float = 0.1
    split_seed: int = 0
    seed: int = 0
    precision: str = "float32"
    jit_compile: bool = False
    train_subset: int | None = None
    width: int = 1
    channels: list[int] | None = None
    fused_bn: bool = False
    se: int = 0
    schedule: str = "constant"
    warmup_fraction: float = 0.2
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    ema: float = 0.0
    translate: int = 0
    flip: bool = False
    alternate_flip: bool = False
    low_res: int = 28
    low_res_until: float = 0.5
    erase: float = 0.0
    cutmix: float = 0.0
    sam: float = 0.0
    sam_fraction: float = 0.25
    tta: str = "none"

    def validate(self) -> TrainConfig:
        """Checks every field; returns self.

        Raises:
            ConfigError: naming the field, what was expected and what was received.
        """
        from fashion_cnn.tta import TTA_VIEWS, tta_mode

        def bad(field: str, expected: str) -> ConfigError:
            value = getattr(self, field)
            return ConfigError(
                f"Invalid value for `{field}`: expected {expected}, received {value!r}"
            )

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v: Any) -> bool:
            return isinstance(v, int | float) and not isinstance(v, bool)

        if self.recipe_version is not None and (
            not is_int(self.recipe_version) or self.recipe_version < 1
        ):
            raise bad("recipe_version", "an integer >= 1, or absent for your own recipe")
        if self.model not in MODEL_NAMES:
            raise bad("model", f"one of {sorted(MODEL_NAMES)}")
        if not is_num(self.scale) or not self.scale > 0:
            raise bad("scale", "a positive number such as 1 or 0.00392156862745098 (1/255)")
        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", f"one of {list(OPTIMIZERS)}")
        if not is_num(self.learning_rate) or not 0 < self.learning_rate < 10:
            raise bad("learning_rate", "a float in (0, 10)")
        if not is_int(self.epochs) or self.epochs < 1:
            raise bad("epochs", "an integer >= 1")
        if not is_int(self.batch_size) or self.batch_size < 1:
            raise bad("batch_size", "an integer >= 1")
        if not is_num(self.val_fraction) or not 0 <= self.val_fraction < 1:
            raise bad("val_fraction", "a float in [0, 1)")
        if not is_int(self.split_seed) or self.split_seed < 0:
            raise bad("split_seed", "an integer >= 0")
        check_seed(self.seed)
        if self.precision not in PRECISIONS:
            raise bad("precision", f"one of {list(PRECISIONS)}")
        if not isinstance(self.jit_compile, bool):
            raise bad("jit_compile", "true or false")
        if self.train_subset is not None and (
            not is_int(self.train_subset) or self.train_subset < 10
        ):
            raise bad("train_subset", "an integer >= 10, or absent for all images")
        if not is_int(self.width) or not 1 <= self.width <= 16:
            raise bad("width", "an integer in [1, 16]")
        if self.channels is not None:
            if self.model in FIXED_WIDTH:
                raise bad(
                    "channels", f"absent with the `{self.model}` model (its widths are fixed)"
                )
            if (
                not isinstance(self.channels, list | tuple)
                or len(self.channels) != 4
                or not all(is_int(c) and 1 <= c <= 1024 for c in self.channels)
            ):
                raise bad(
                    "channels",
                    "4 integers in [1, 1024] (stem and three stages), such as [8, 16, 32, 128]",
                )
            if self.width != 1:
                raise bad("channels", "absent when `width` is set (set one of them)")
            self.channels = list(self.channels)
        if not isinstance(self.fused_bn, bool):
            raise bad("fused_bn", "true or false")
        if not is_int(self.se) or not 0 <= self.se <= 64:
            raise bad("se", "0 (off) or a reduction ratio in [1, 64], such as 4 or 16")
        if self.schedule not in SCHEDULES:
            raise bad("schedule", f"one of {list(SCHEDULES)}")
        if not is_num(self.warmup_fraction) or not 0 <= self.warmup_fraction < 1:
            raise bad("warmup_fraction", "a float in [0, 1)")
        if not is_num(self.weight_decay) or not 0 <= self.weight_decay < 1:
            raise bad("weight_decay", "a float in [0, 1)")
        if not is_num(self.label_smoothing) or not 0 <= self.label_smoothing < 1:
            raise bad("label_smoothing", "a float in [0, 1)")
        if not is_num(self.ema) or not (self.ema == 0 or 0.5 <= self.ema < 1):
            raise bad("ema", "0 (off) or a float in [0.5, 1)")
        if not is_int(self.translate) or not 0 <= self.translate <= 8:
            raise bad("translate", "an integer number of pixels in [0, 8]")
        if not isinstance(self.flip, bool):
            raise bad("flip", "true or false")
        if not isinstance(self.alternate_flip, bool):
            raise bad("alternate_flip", "true or false")
        if self.alternate_flip and not self.flip:
            raise bad("alternate_flip", "false when `flip` is false (it alternates flips)")
        if not is_int(self.low_res) or not (8 <= self.low_res <= 28 and self.low_res % 4 == 0):
            raise bad("low_res", "a multiple of 4 in [8, 28], such as 16 (28 = off)")
        if self.low_res < 28 and self.model in FIXED_SIZE:
            raise bad("low_res", f"28 (off) with the `{self.model}` model, which takes only 28x28")
        if not is_num(self.low_res_until) or not 0 < self.low_res_until < 1:
            raise bad("low_res_until", "a share of the epochs in (0, 1)")
        if not is_num(self.erase) or not 0 <= self.erase <= 1:
            raise bad("erase", "a probability in [0, 1]")
        if not is_num(self.cutmix) or not 0 <= self.cutmix <= 1:
            raise bad("cutmix", "a probability in [0, 1]")
        if not is_num(self.sam) or not 0 <= self.sam <= 2:
            raise bad("sam", "0 (off) or a radius in (0, 2], such as 0.05")
        if not is_num(self.sam_fraction) or not 0 < self.sam_fraction <= 1:
            raise bad("sam_fraction", "a share of the batch in (0, 1]")
        if isinstance(self.tta, bool):
            self.tta = tta_mode(self.tta)
        if self.tta not in TTA_VIEWS:
            raise bad("tta", f"one of {list(TTA_VIEWS)}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def model_options(self) -> dict[str, Any]:
        """The keyword arguments of `fashion_cnn.models.build_model` after the model name."""
        return {
            "scale": self.scale,
            "width": self.width,
            "fused_bn": self.fused_bn,
            "se": self.se,
            "channels": self.channels,
        }

    def replace(self, **overrides: Any) -> TrainConfig:
        """A copy with the non-None `overrides` applied and validated."""
        known = {f.name for f in dataclasses.fields(self)}
        for key in overrides:
            if key not in known:
                raise ConfigError(f"Unknown config key `{key}`; known keys: {sorted(known)}")
        changes = {k: v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(self, **changes).validate()

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"Unknown key(s) {unknown} in {source}; known keys: {sorted(known)}")
        try:
            return cls(**values).validate()
        except ConfigError as e:
            raise ConfigError(f"{e} (in {source})") from None


def _recipes_folder():
    return resources.files("fashion_cnn") / "recipes"


def recipe_names() -> list[str]:
    """Names of the recipes shipped with the package (their current versions)."""
    folder = _recipes_folder()
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def _read_recipe(file, name: str) -> TrainConfig:
    values = tomllib.loads(file.read_text("utf-8"))
    values.setdefault("recipe", name)
    return TrainConfig.from_dict(values, source=f"recipe {name!r}")


def recipe_versions(name: str) -> dict[int, Any]:
    """The shipped versions of recipe `name`: version -> its file, oldest first.

    Raises:
        ConfigError: no such recipe, or its file has no `recipe_version`.
    """
    if name not in recipe_names():
        raise ConfigError(f"No shipped recipe {name!r}; the recipes are {recipe_names()}")
    folder = _recipes_folder()
    current = _read_recipe(folder / f"{name}.toml", name).recipe_version
    if current is None:
        raise ConfigError(f"Recipe {name!r} has no `recipe_version`; add one to {name}.toml")
    files = {current: folder / f"{name}.toml"}
    history = folder / "history"
    if history.is_dir():
        for p in history.iterdir():
            if not p.name.endswith(".toml"):
                continue
            stem, sep, version = p.name.removesuffix(".toml").partition("@")
            if stem == name and sep and version.isdigit():
                files[int(version)] = p
    return dict(sorted(files.items()))


def load_recipe(name: str) -> TrainConfig:
    """Loads a shipped recipe: `NAME` (its current version) or `NAME@VERSION`.

    Raises:
        ConfigError: no such recipe or version (the message lists the available ones).
    """
    base, sep, version = name.partition("@")
    names = recipe_names()
    if base not in names:
        raise ConfigError(
            f"Invalid value for `--recipe`: expected one of {names} (optionally NAME@VERSION "
            f"for an earlier version, e.g. fast@1), received {name!r}"
        )
    if not sep:
        return _read_recipe(_recipes_folder() / f"{base}.toml", base)
    versions = recipe_versions(base)
    if not version.isdigit() or int(version) not in versions:
        listed = [f"{base}@{v}" for v in versions]
        raise ConfigError(
            f"Invalid value for `--recipe`: recipe {base!r} has the versions {listed}, "
            f"received {name!r}"
        )
    config = _read_recipe(versions[int(version)], base)
    if config.recipe_version != int(version):
        raise ConfigError(
            f"Recipe file {versions[int(version)].name} says recipe_version = "
            f"{config.recipe_version}; expected {version}"
        )
    return config


def load_config(path: str | os.PathLike) -> TrainConfig:
    """Loads a config file (`.toml` or `.json`, e.g. a run's `config.json`).

    Raises:
        ConfigError: another suffix, unreadable file, bad syntax, unknown key or invalid
            value.
    """
    path = Path(path)
    values = read_table(path, "config file")
    return TrainConfig.from_dict(values, source=str(path))


def save_config(config: TrainConfig, path: str | os.PathLike) -> None:
    from fashion_cnn.io_utils import write_json

    write_json(path, config.to_dict())


def to_toml(config: TrainConfig) -> str:
    """The config as a flat TOML recipe that `load_config` reads back (None values left out)."""
    lines = []
    for key, value in config.to_dict().items():
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str):
            text = json.dumps(value)  # a TOML basic string for what we store
        else:
            text = repr(value)
        lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"
