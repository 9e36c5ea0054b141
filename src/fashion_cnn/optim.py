"""The optimizer of a recipe: learning-rate schedule, weight decay and weight averaging.

Kept apart from `train` (which needs TensorFlow's data pipeline) so that any Keras backend
can build it: `benchmarks/gpu_sweep.py` trains with JAX on machines without TensorFlow.
"""

from __future__ import annotations

import keras

from fashion_cnn.config import TrainConfig


def make_optimizer(config: TrainConfig, total_steps: int) -> keras.optimizers.Optimizer:
    """The configured optimizer with its learning-rate schedule, weight decay and EMA.

    Args:
        config: the recipe; reads `optimizer`, `learning_rate`, `schedule`,
            `warmup_fraction`, `weight_decay` and `ema`.
        total_steps: optimizer steps of the whole run (the one-cycle schedule spans them).

    Returns:
        An unbuilt Keras optimizer: SGD with Nesterov momentum 0.9 unless `optimizer` names
        RMSprop, Adam or AdamW. "onecycle" warms up linearly from `learning_rate / 25` over
        `warmup_fraction` of the steps, then decays with a cosine to 0.
    """
    lr = config.learning_rate
    if config.schedule == "onecycle":
        warmup = int(total_steps * config.warmup_fraction)
        lr = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=config.learning_rate / 25,
            decay_steps=max(total_steps - warmup, 1),
            warmup_target=config.learning_rate,
            warmup_steps=warmup,
        )
    common = {
        "weight_decay": config.weight_decay or None,
        "use_ema": config.ema > 0,
        "ema_momentum": config.ema or 0.99,
    }
    if config.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(lr, **common)
    if config.optimizer == "adam":
        return keras.optimizers.Adam(lr, **common)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, **{**common, "weight_decay": config.weight_decay})
    return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True, **common)
