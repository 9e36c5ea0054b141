"""Training within a time budget: the arithmetic, the timing, resuming, and the CLI."""

import logging

import pytest

from fashion_cnn import budget
from fashion_cnn.budget import epochs_within, fit_to_budget, time_epoch
from fashion_cnn.cli import main
from fashion_cnn.config import TrainConfig
from fashion_cnn.data import split_validation
from fashion_cnn.errors import ConfigError
from fashion_cnn.io_utils import read_json, write_json


def _config(**kw):
    base = dict(recipe="t", epochs=5, batch_size=64, scale=1 / 255, optimizer="adam")
    return TrainConfig(**{**base, **kw})


def test_epochs_within_keeps_a_margin_and_the_recipe_as_a_ceiling():
    # 10 minutes, 78 s an epoch, 12 s spent timing: (570 - 12) / 78 = 7.2 -> 7
    assert epochs_within(600, 78, 12, 22) == 7
    assert epochs_within(600, 78, 12, 22, margin=0.0) == 7  # (600 - 12) / 78 = 7.5
    assert epochs_within(600, 50, 0, 22, margin=0.0) == 12
    assert epochs_within(600, 50, 0, 22) == 11  # 570 / 50 = 11.4
    assert epochs_within(6000, 78, 12, 22) == 22  # never more than the recipe's
    assert epochs_within(60, 78, 12, 22) == 1  # at least one


def test_time_epoch_trains_the_recipe_model_and_leaves_the_policy_alone():
    import keras

    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        config = _config(translate=2, flip=True, erase=0.3, cutmix=0.2)
        seconds = time_epoch(config, 6000, 1200)
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    finally:
        keras.config.set_dtype_policy(before)
    assert 0 < seconds < 600
    assert keras.layers.Dense(1).name == "dense"  # the probe's layer names are forgotten


def test_fit_to_budget_scales_epochs_to_the_timing(synthetic_data, monkeypatch, caplog):
    seen = []

    def fake_time_epoch(config, n_train, n_val):
        seen.append((n_train, n_val))
        return 30.0

    monkeypatch.setattr(budget, "time_epoch", fake_time_epoch)
    config = _config(epochs=20, val_fraction=0.1, precision="auto")
    fitted = fit_to_budget(config, synthetic_data, 5)
    assert fitted.epochs == 9 and fitted.precision == "auto"  # 285 s / 30 s
    _, y_tr, _, y_val = split_validation(synthetic_data.x_train, synthetic_data.y_train, 0.1)
    assert seen == [(len(y_tr), len(y_val))] and 50 < len(y_val) < 70
    assert fit_to_budget(config, synthetic_data, 500).epochs == 20
    with caplog.at_level(logging.WARNING, logger="fashion_cnn.budget"):
        assert fit_to_budget(config, synthetic_data, 0.1).epochs == 1
    assert "does not fit in the 0.1 minutes given" in caplog.text
    with pytest.raises(ConfigError, match="`--budget-minutes`: expected a positive number"):
        fit_to_budget(config, synthetic_data, 0)


def test_fit_to_budget_keeps_the_epochs_of_a_started_run(synthetic_data, tmp_path, monkeypatch):
    def no_timing(*args):
        raise AssertionError("a started run is not timed again")

    monkeypatch.setattr(budget, "time_epoch", no_timing)
    write_json(tmp_path / "config.json", _config(epochs=3).to_dict())
    assert fit_to_budget(_config(epochs=20), synthetic_data, 5, tmp_path).epochs == 3


def test_fit_to_budget_with_real_timing(synthetic_data):
    config = _config(epochs=4, precision="auto")  # timed as this machine resolves it
    assert fit_to_budget(config, synthetic_data, 1000).epochs == 4


def test_budget_flag_is_checked_first(capsys):
    assert main(["train", "--budget-minutes", "0"]) == 2
    assert "Invalid value for `--budget-minutes`" in capsys.readouterr().err
    assert main(["train", "--budget-minutes", "5", "--strategy", "mirrored"]) == 2
    assert "with --strategy, set --epochs instead" in capsys.readouterr().err


@pytest.mark.realdata
def test_train_with_a_tiny_budget_trains_one_epoch(real_data, tmp_path):
    out = tmp_path / "run"
    argv = [
        "train", "--recipe", "seed", "--train-subset", "1000", "--epochs", "3",
        "--budget-minutes", "0.01", "--out", str(out), "--no-download", "--verbosity", "0",
    ]  # fmt: skip
    assert main(argv) == 0
    assert read_json(out / "config.json")["epochs"] == 1
    assert len(read_json(out / "history.json")["val_accuracy"]) == 1
    assert main(argv) == 0  # the same command again: the finished run, not a new timing
