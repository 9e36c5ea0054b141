import keras
import numpy as np
import pytest

from fashion_cnn.config import TrainConfig
from fashion_cnn.optim import make_optimizer

SGD = TrainConfig(optimizer="sgd", learning_rate=0.1, weight_decay=5e-3)


def lr_at(optimizer, step: int) -> float:
    """The learning rate the optimizer applies at `step`."""
    optimizer.iterations.assign(step)
    return float(np.asarray(optimizer.learning_rate))


def test_onecycle_warms_up_from_a_25th_to_the_peak_then_decays_to_zero():
    config = SGD.replace(schedule="onecycle", warmup_fraction=0.2)
    optimizer = make_optimizer(config, total_steps=1000)
    assert lr_at(optimizer, 0) == pytest.approx(0.1 / 25)
    assert lr_at(optimizer, 100) == pytest.approx((0.1 / 25 + 0.1) / 2, rel=1e-5)
    assert lr_at(optimizer, 200) == pytest.approx(0.1)
    assert lr_at(optimizer, 600) == pytest.approx(0.05, rel=1e-5)  # cosine half-way
    assert lr_at(optimizer, 1000) == pytest.approx(0.0, abs=1e-7)


def test_constant_schedule_keeps_the_learning_rate():
    optimizer = make_optimizer(SGD.replace(schedule="constant"), total_steps=1000)
    assert float(np.asarray(optimizer.learning_rate)) == pytest.approx(0.1)


def test_sgd_is_nesterov_with_momentum_weight_decay_and_optional_ema():
    plain = make_optimizer(SGD, total_steps=10)
    assert isinstance(plain, keras.optimizers.SGD)
    assert plain.nesterov and plain.momentum == pytest.approx(0.9)
    assert plain.weight_decay == pytest.approx(5e-3)
    assert not plain.use_ema
    averaged = make_optimizer(SGD.replace(ema=0.999), total_steps=10)
    assert averaged.use_ema and averaged.ema_momentum == pytest.approx(0.999)


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("rmsprop", keras.optimizers.RMSprop),
        ("adam", keras.optimizers.Adam),
        ("adamw", keras.optimizers.AdamW),
    ],
)
def test_named_optimizers(name, cls):
    optimizer = make_optimizer(SGD.replace(optimizer=name, weight_decay=0.0), total_steps=10)
    assert type(optimizer) is cls
    assert optimizer.weight_decay in (None, 0.0)
