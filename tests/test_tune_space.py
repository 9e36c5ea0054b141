"""Search-space files: parsing, errors that name the fix, and hyperparameter defaults."""

import re

import pytest

from fashion_cnn.errors import ConfigError
from fashion_cnn.tune_space import declare, load_space

TINY = """
recipe = "seed"
[fixed]
epochs = 1
train_subset = 1500
batch_size = 128
[hyperparameters]
learning_rate = { min = 1e-4, max = 3e-3, log = true }
optimizer = { choice = ["rmsprop", "adam"] }
"""


def write_space(tmp_path, text=TINY, name="space.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_default_space_loads():
    from fashion_cnn.commands import _space_path

    space = load_space(_space_path("default"))
    assert space.recipe == "fast" and "learning_rate" in space.hyperparameters


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "[hyperparameters]\nlearnig_rate = { min = 0.1, max = 0.2 }",
            "Unknown key 'learnig_rate'",
        ),
        (
            "[hyperparameters]\nrecipe_version = { choice = [1, 2] }",
            "Untunable key 'recipe_version'",
        ),
        ("[hyperparameters]\nwidth = 2", "expected a table"),
        ("[hyperparameters]\nwidth = { min = 3, max = 1 }", "expected min < max"),
        ("[hyperparameters]\nlearning_rate = { min = 0, max = 1, log = true }", "min > 0"),
        ("[hyperparameters]\nwidth = { choice = [] }", "non-empty list"),
        ("[fixed]\nepochs = 0\n[hyperparameters]\nwidth = { choice = [1] }", "`epochs`"),
        ("recipe = 'seed'", "no [hyperparameters]"),
        ("[hyperparameter]\nx = 1", "Unknown key(s) ['hyperparameter']"),
        ("fixed = 3\n[hyperparameters]\nwidth = { choice = [1] }", "`fixed` in"),
        ("hyperparameters = [1]", "`hyperparameters` in"),
        ("recipe = 3\n[hyperparameters]\nwidth = { choice = [1] }", "`recipe` in"),
        ("[fixed\n", "Search space"),
    ],
)
def test_bad_space_files_are_named(tmp_path, text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_space(write_space(tmp_path, text))


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("space.json", b"[]", "must hold a table of keys, got list"),
        ("space.toml", b"\xff\xfe", "it is not UTF-8 text"),
        ("space.yaml", b"recipe: fast", "expected a .toml or .json file, received .yaml"),
    ],
)
def test_space_files_that_are_no_table(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_space(tmp_path / name)


def test_defaults_are_the_base_recipe_when_in_range(tmp_path):
    import keras_tuner as kt

    text = TINY.replace("min = 1e-4", "min = 2e-4")  # seed's 1e-4 is now out of range
    hp = kt.HyperParameters()
    declare(hp, load_space(write_space(tmp_path, text)))
    defaults = {h.name: h.default for h in hp.space}
    assert defaults == {"learning_rate": pytest.approx(2e-4), "optimizer": "rmsprop"}
