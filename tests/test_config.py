import json

import pytest

from fashion_cnn.config import (
    TrainConfig,
    load_config,
    load_recipe,
    recipe_names,
    recipe_versions,
    save_config,
    to_toml,
)
from fashion_cnn.errors import ConfigError


def test_every_shipped_recipe_loads_and_validates():
    assert "seed" in recipe_names()
    for name in recipe_names():
        config = load_recipe(name)
        assert config.recipe == name
        assert config.validate() is config


def test_seed_recipe_is_the_blog_notebook():
    c = load_recipe("seed")
    assert (c.model, c.optimizer, c.learning_rate, c.epochs, c.batch_size, c.scale) == (
        "seed",
        "rmsprop",
        1e-4,
        10,
        512,
        1.0,
    )


def test_unknown_recipe_lists_known():
    with pytest.raises(ConfigError, match=r"--recipe.*'seed'.*received 'nope'"):
        load_recipe("nope")


def test_every_shipped_recipe_version_loads_under_its_own_number():
    for name in recipe_names():
        versions = recipe_versions(name)
        current = load_recipe(name)
        assert max(versions) == current.recipe_version
        assert load_recipe(f"{name}@{current.recipe_version}") == current
        for version in versions:
            config = load_recipe(f"{name}@{version}")
            assert (config.recipe, config.recipe_version) == (name, version)


def test_fast_version_1_is_the_convnet_recipe_it_replaced():
    old, new = load_recipe("fast@1"), load_recipe("fast@2")
    assert (old.model, new.model) == ("convnet", "convnet4")
    assert old.replace(model="convnet4", recipe_version=new.recipe_version) == new


@pytest.mark.parametrize("name, old", [("fast", 2), ("best", 1), ("seed", 1)])
def test_auto_precision_versions_change_only_the_precision(name, old):
    before, now = load_recipe(f"{name}@{old}"), load_recipe(name)
    assert (before.precision, now.precision) == ("mixed_bfloat16", "auto")
    assert before.replace(precision="auto", recipe_version=now.recipe_version) == now


@pytest.mark.parametrize("name", ["fast@9", "fast@x", "fast@"])
def test_unknown_recipe_version_lists_the_versions(name):
    with pytest.raises(
        ConfigError, match=rf"'fast' has the versions \['fast@1', .*received '{name}'"
    ):
        load_recipe(name)


def test_unknown_recipe_name_with_a_version_is_refused():
    with pytest.raises(ConfigError, match=r"NAME@VERSION.*received 'nope@1'"):
        load_recipe("nope@1")
    with pytest.raises(ConfigError, match=r"No shipped recipe 'fast@1'"):
        recipe_versions("fast@1")


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("epochs", 0, "an integer >= 1"),
        ("epochs", 2.5, "an integer >= 1"),
        ("batch_size", True, "an integer >= 1"),
        ("learning_rate", -1.0, "a float in (0, 10)"),
        ("val_fraction", 1.0, "a float in [0, 1)"),
        ("model", "resnet9000", "one of"),
        ("optimizer", "adagrad", "one of"),
        ("precision", "float16", "one of"),
        ("scale", 0, "a positive number"),
        ("tta", "vertical", "one of ['none', 'flip', 'flip-shift']"),
        ("fused_bn", "yes", "true or false"),
        ("recipe_version", 0, "an integer >= 1"),
        ("alternate_flip", 1, "true or false"),
        ("alternate_flip", True, "false when `flip` is false"),
        ("se", -1, "0 (off) or a reduction ratio"),
        ("se", 2.0, "0 (off) or a reduction ratio"),
        ("cutmix", 1.5, "a probability in [0, 1]"),
        ("cutmix", "yes", "a probability in [0, 1]"),
        ("sam", -0.05, "0 (off) or a radius in (0, 2]"),
        ("sam", "0.05", "0 (off) or a radius in (0, 2]"),
        ("sam_fraction", 0.0, "a share of the batch in (0, 1]"),
        ("sam_fraction", 1.5, "a share of the batch in (0, 1]"),
        ("low_res", 18, "a multiple of 4 in [8, 28]"),
        ("low_res", 4, "a multiple of 4 in [8, 28]"),
        ("low_res", 32, "a multiple of 4 in [8, 28]"),
        ("low_res_until", 1.0, "a share of the epochs in (0, 1)"),
        ("low_res_until", 0, "a share of the epochs in (0, 1)"),
        ("seed", -1, "an integer in [0, 4294967295]"),
        ("seed", 2**32, "an integer in [0, 4294967295]"),
        ("seed", 1.0, "an integer in [0, 4294967295]"),
    ],
)
def test_invalid_values_are_named(field, value, expected):
    with pytest.raises(ConfigError) as e:
        TrainConfig().replace(**{field: value})
    assert f"Invalid value for `{field}`" in str(e.value)
    assert expected in str(e.value)
    assert repr(value) in str(e.value)


def test_the_largest_seed_trains_reproducibly():
    import keras

    assert TrainConfig().replace(seed=2**32 - 1).seed == 2**32 - 1
    keras.utils.set_random_seed(2**32 - 1)  # what train() does with it


def test_progressive_resizing_is_refused_for_models_that_take_only_28x28():
    with pytest.raises(ConfigError, match=r"`low_res`: expected 28 \(off\) with the `seed` model"):
        TrainConfig(model="seed", low_res=16).validate()
    assert TrainConfig(model="convnet4", low_res=16).validate().low_res == 16


def test_replace_ignores_none_and_rejects_unknown():
    c = TrainConfig().replace(epochs=None, seed=7)
    assert c.epochs == 10 and c.seed == 7
    with pytest.raises(ConfigError, match="Unknown config key `epoch`"):
        TrainConfig().replace(epoch=3)


def test_json_and_toml_round_trip(tmp_path):
    c = TrainConfig(recipe="mine", epochs=3, learning_rate=0.01, precision="mixed_bfloat16")
    save_config(c, tmp_path / "c.json")
    assert load_config(tmp_path / "c.json") == c
    (tmp_path / "c.toml").write_text(
        'recipe = "mine"\nepochs = 3\nlearning_rate = 0.01\nprecision = "mixed_bfloat16"\n'
    )
    assert load_config(tmp_path / "c.toml") == c


def test_bad_config_files(tmp_path):
    with pytest.raises(ConfigError, match="Cannot read config file"):
        load_config(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("epochs = = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")
    (tmp_path / "bad.json").write_text(json.dumps({"epochs": 3, "colour": "red"}))
    with pytest.raises(ConfigError, match=r"Unknown key\(s\) \['colour'\]"):
        load_config(tmp_path / "bad.json")
    (tmp_path / "neg.json").write_text(json.dumps({"epochs": -3}))
    with pytest.raises(ConfigError, match=r"`epochs`.*neg.json"):
        load_config(tmp_path / "neg.json")
    (tmp_path / "latin1.toml").write_bytes("model = 'café'".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.toml: it is not UTF-8 text"):
        load_config(tmp_path / "latin1.toml")
    (tmp_path / "c.yaml").write_text("epochs = 3")
    with pytest.raises(ConfigError, match=r"expected a .toml or .json file, received .yaml"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "list.JSON").write_text("[3]")
    with pytest.raises(ConfigError, match=r"list.JSON must hold a table of keys, got list"):
        load_config(tmp_path / "list.JSON")
    (tmp_path / "bad.JSON").write_text("{")
    with pytest.raises(ConfigError, match=r"bad.JSON is not valid JSON"):
        load_config(tmp_path / "bad.JSON")


def test_to_toml_round_trips_through_load_config(tmp_path):
    config = load_recipe("fast").replace(train_subset=None, recipe='with "quotes"')
    path = tmp_path / "r.toml"
    path.write_text(to_toml(config))
    assert load_config(path) == config


def test_tta_bools_of_older_run_folders_mean_flip_and_none():
    assert TrainConfig().replace(tta=True).tta == "flip"
    assert TrainConfig().replace(tta=False).tta == "none"


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"channels": [8, 16, 32]}, "4 integers in [1, 1024]"),
        ({"channels": [8, 16, 0, 128]}, "4 integers in [1, 1024]"),
        ({"channels": [8, 16, 32.0, 128]}, "4 integers in [1, 1024]"),
        ({"channels": "8,16,32,128"}, "4 integers in [1, 1024]"),
        ({"channels": [8, 16, 32, 128], "width": 2}, "absent when `width` is set"),
        ({"channels": [8, 16, 32, 128], "model": "seed"}, "absent with the `seed` model"),
    ],
)
def test_invalid_channels_are_named(changes, expected):
    with pytest.raises(ConfigError) as e:
        TrainConfig(model="convnet4").replace(**changes)
    assert "Invalid value for `channels`" in str(e.value)
    assert expected in str(e.value)


def test_channels_round_trip_through_json_and_toml(tmp_path):
    c = TrainConfig(model="convnet4", channels=(8, 16, 32, 128)).validate()
    assert c.channels == [8, 16, 32, 128]
    save_config(c, tmp_path / "c.json")
    assert load_config(tmp_path / "c.json") == c
    (tmp_path / "c.toml").write_text(to_toml(c))
    assert load_config(tmp_path / "c.toml") == c
    assert c.model_options()["channels"] == [8, 16, 32, 128]
