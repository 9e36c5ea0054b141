"""Recipe variants on a GPU with Keras' JAX backend, for machines without TensorFlow.

A `best` run takes an hour on the project's 2-core CPU; on an H200 it took 2-3 minutes
with 8 runs sharing the GPU, so a lent GPU can compare many variants of a recipe, each over
several seeds, in the minutes it is lent for. Each run trains the recipe's own model
(`fashion_cnn.models`) with its own optimizer and schedule (`fashion_cnn.optim`), label
smoothing and batch size; the augmentation (flip, integer shift with zero fill, random
erasing, CutMix) is `fashion_cnn.augment`'s, written again in `jax.numpy` because that
module is TensorFlow's. The final model is scored on the validation split (which decides) and on the
test set, plain and with each TTA mode.

Not the product's training: no tf.data, no checkpoints, other random streams, and the GPU
rounds differently from the CPU. A variant that wins here is a candidate for a CPU run
(`benchmarks/recipes.py`), not a result.

Usage (on the GPU machine, with JAX, Keras, NumPy and scikit-learn, `src/` on PYTHONPATH;
KERAS_BACKEND is set here):

    python benchmarks/gpu_sweep.py --data-dir DIR --recipe best --seeds 0 1 \
        --variant base --variant lr2:learning_rate=0.2 --variant c4:model=convnet4,epochs=38 \
        --val-fraction 0.1 --workers 6 --results results.jsonl

A variant is NAME or NAME:KEY=VALUE,KEY=VALUE with `TrainConfig` keys (values parsed as
JSON, else kept as strings); NAME@K runs it on the first K seeds only. `--probs DIR` keeps
each run's validation and test probabilities (plain and flip-shift TTA, float16) in
DIR/NAME-sSEED.npz, for `ensemble.py --sweep`. Runs go round-robin by seed (every
variant's first seed before any second seed) over `--workers` processes sharing the GPU;
each finished run is appended to `--results` as one JSON line, so a sweep cut short keeps
what it finished. `--summary FILE...` prints the table of results files (no JAX needed);
`--against VARIANT` adds each variant's per-seed difference to VARIANT's.
Not supported (refused): `ema`, `alternate_flip` and `low_res`; `fused_bn` (TensorFlow's kernel) is
turned off, which computes the same BatchNorm.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import math
import multiprocessing
import os
import sys
import time
from pathlib import Path

from fashion_cnn.config import TrainConfig, load_recipe
from fashion_cnn.errors import ConfigError
from sweeps import collect, read_records, summary, sweep_order

TTA_MODES = ("none", "flip", "flip-shift")


def _init_worker(mem_fraction: float) -> None:
    os.environ["KERAS_BACKEND"] = "jax"
    os.environ["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{mem_fraction:.3f}"


def _augment(jnp, jax, images, key, config: TrainConfig):
    """`fashion_cnn.augment.augment_batch` in jax.numpy: flip + shift, then erasing."""
    b, size = images.shape[0], images.shape[1]
    k = jax.random.split(key, 8)
    yy = jnp.arange(size)[None, :, None]
    xx = jnp.arange(size)[None, None, :]
    if config.translate or config.flip:
        s = config.translate
        dx = jax.random.randint(k[0], (b, 1, 1), -s, s + 1)
        dy = jax.random.randint(k[1], (b, 1, 1), -s, s + 1)
        mirror = (
            jax.random.uniform(k[2], (b, 1, 1)) < 0.5 if config.flip else jnp.zeros((b, 1, 1), bool)
        )
        # Output pixel (x, y) reads input (sign * x + offset + dx, y + dy), zero outside.
        src_x = jnp.where(mirror, size - 1 - xx, xx) + dx
        src_y = yy + dy
        valid = (src_x >= 0) & (src_x < size) & (src_y >= 0) & (src_y < size)
        flat = images[..., 0].reshape(b, -1)
        idx = (jnp.clip(src_y, 0, size - 1) * size + jnp.clip(src_x, 0, size - 1)).reshape(b, -1)
        moved = jnp.take_along_axis(flat, idx, axis=1).reshape(b, size, size)
        images = jnp.where(valid, moved, 0.0)[..., None]
    if config.erase > 0:
        h = jax.random.randint(k[3], (b, 1, 1), 4, 15)
        w = jax.random.randint(k[4], (b, 1, 1), 4, 15)
        y0 = jax.random.randint(k[5], (b, 1, 1), 0, size) - h // 2
        x0 = jax.random.randint(k[6], (b, 1, 1), 0, size) - w // 2
        apply = jax.random.uniform(k[7], (b, 1, 1)) < config.erase
        inside = (yy >= y0) & (yy < y0 + h) & (xx >= x0) & (xx < x0 + w) & apply
        images = jnp.where(inside[..., None], 0.0, images)
    return images


def _cutmix(jnp, jax, images, labels, key, probability: float):
    """`fashion_cnn.augment.cutmix` in jax.numpy: a rectangle of the previous image of the
    batch pasted in, labels mixed by the pasted area."""
    b, size = images.shape[0], images.shape[1]
    k = jax.random.split(key, 4)
    side = size * jnp.sqrt(jax.random.uniform(k[0], (b, 1, 1)))
    half = jnp.round(side / 2).astype("int32")
    cy = jax.random.randint(k[1], (b, 1, 1), 0, size)
    cx = jax.random.randint(k[2], (b, 1, 1), 0, size)
    apply = jax.random.uniform(k[3], (b, 1, 1)) < probability
    yy = jnp.arange(size)[None, :, None]
    xx = jnp.arange(size)[None, None, :]
    inside = (yy >= cy - half) & (yy < cy + half) & (xx >= cx - half) & (xx < cx + half) & apply
    share = jnp.mean(inside.astype(labels.dtype), axis=(1, 2))[:, None]
    mixed = jnp.where(inside[..., None], jnp.roll(images, 1, axis=0), images)
    return mixed, (1.0 - share) * labels + share * jnp.roll(labels, 1, axis=0)


def run_one(job: dict) -> dict:
    """Trains one (variant, seed) and scores it; returns a JSON-able record."""
    import jax
    import jax.numpy as jnp
    import keras
    import numpy as np

    from fashion_cnn.data import NUM_CLASSES, load_data, split_validation
    from fashion_cnn.evaluate import predict_proba
    from fashion_cnn.models import build_model, forward_flops
    from fashion_cnn.optim import make_optimizer
    from fashion_cnn.sam import step_cost

    config = TrainConfig.from_dict(job["config"]).validate()
    t_start = time.perf_counter()
    data = load_data(job["data_dir"], download=False)
    n = config.train_subset or len(data.y_train)
    x_tr, y_tr, x_val, y_val = split_validation(
        data.x_train[:n], data.y_train[:n], config.val_fraction, config.split_seed
    )
    keras.config.set_dtype_policy(job["precision"])
    keras.utils.set_random_seed(config.seed)
    model = build_model(config.model, **config.model_options())  # main() set fused_bn=False
    steps_per_epoch = math.ceil(len(x_tr) / config.batch_size)
    optimizer = make_optimizer(config, config.epochs * steps_per_epoch)
    optimizer.build(model.trainable_variables)
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)

    def loss_fn(trainable, non_trainable, x, y):
        probs, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
        return loss(y, probs), non_trainable

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    @jax.jit
    def train_step(state, x, y, key):
        trainable, non_trainable, opt_vars = state
        x = _augment(jnp, jax, x.astype("float32"), key, config)
        y = jax.nn.one_hot(y, NUM_CLASSES)
        if config.cutmix:  # its own stream: the other augmentations draw as without it
            x, y = _cutmix(jnp, jax, x, y, jax.random.fold_in(key, 0xC07), config.cutmix)
        at = trainable
        if config.sam:  # fashion_cnn.sam: climb on a share of the batch, BN stats discarded
            m = max(1, round(x.shape[0] * config.sam_fraction))
            _, climb = grad_fn(trainable, non_trainable, x[:m], y[:m])
            norm = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in climb))
            step = config.sam / (norm + 1e-12)
            at = [w + g * step for w, g in zip(trainable, climb, strict=True)]
        (value, non_trainable), grads = grad_fn(at, non_trainable, x, y)
        trainable, opt_vars = optimizer.stateless_apply(opt_vars, grads, trainable)
        return (trainable, non_trainable, opt_vars), value

    @jax.jit
    def predict(trainable, non_trainable, x):
        probs, _ = model.stateless_call(trainable, non_trainable, x, training=False)
        return probs

    state = (
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        [v.value for v in optimizer.variables],
    )
    xs, ys = jnp.asarray(x_tr), jnp.asarray(y_tr)
    key = jax.random.PRNGKey(config.seed)
    losses = []
    t_train = time.perf_counter()
    for _ in range(config.epochs):
        key, perm_key = jax.random.split(key)
        order = jax.random.permutation(perm_key, len(x_tr))
        for i in range(steps_per_epoch):
            idx = order[i * config.batch_size : (i + 1) * config.batch_size]
            key, step_key = jax.random.split(key)
            state, value = train_step(state, xs[idx], ys[idx], step_key)
        losses.append(float(value))
    train_s = time.perf_counter() - t_train
    trainable, non_trainable, _ = state

    def forward(x: np.ndarray) -> np.ndarray:
        return np.asarray(predict(trainable, non_trainable, x), dtype="float32")

    scores, kept = {}, {}
    for split, (x, y) in {"val": (x_val, y_val), "test": (data.x_test, data.y_test)}.items():
        kept[f"y_{split}"] = y
        for mode in TTA_MODES:
            probs = predict_proba(forward, x, batch_size=1000, tta=mode)
            scores[f"{split}_{mode}"] = (
                100.0 * float(np.mean(probs.argmax(1) == y)) if len(y) else None
            )
            if mode != "flip":
                kept[f"{split}_{mode}"] = probs.astype("float16")
    if job.get("probs_dir"):  # for ensembles of runs (benchmarks/ensemble.py)
        out = Path(job["probs_dir"]) / f"{job['variant']}-s{config.seed}.npz"
        tmp = out.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **kept)
        os.replace(tmp, out)
    return {
        "variant": job["variant"],
        "overrides": job["overrides"],
        "seed": config.seed,
        "epochs": config.epochs,
        "mflop_per_image": forward_flops(model) / 1e6,
        "step_cost": step_cost(config.sam, config.sam_fraction),
        "precision": job["precision"],
        "final_loss": losses[-1],
        "train_s": train_s,
        "wall_s": time.perf_counter() - t_start,
        "device": str(jax.devices()[0]),
        **scores,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", help="folder with the four Fashion-MNIST .gz files")
    parser.add_argument("--recipe", default="best", help="recipe the variants start from")
    parser.add_argument("--variant", action="append", default=[], help="NAME[:KEY=VALUE,...]")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument(
        "--precision",
        default="float32",
        help="Keras dtype policy (float32: a 3-epoch mixed_bfloat16 probe on JAX diverged on "
        "one seed of three where float32 did not)",
    )
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--results", type=Path, help="JSON-lines file the runs append to")
    parser.add_argument(
        "--summary", type=Path, nargs="+", help="print the table of results files (together)"
    )
    parser.add_argument(
        "--against", help="with --summary: add each variant's paired difference to this one"
    )
    parser.add_argument(
        "--probs", type=Path, help="folder for each run's validation and test probabilities (.npz)"
    )
    args = parser.parse_args(argv)

    if args.against and not args.summary:
        parser.error("--against compares results in a table: it needs --summary FILE...")
    if args.summary:
        print(summary([r for f in args.summary for r in read_records(f)], args.against))
        return 0
    if not args.data_dir or not args.results:
        parser.error("--data-dir and --results are needed to run a sweep")
    os.environ["KERAS_BACKEND"] = "jax"  # before anything imports Keras (recipe checks do)
    base = load_recipe(args.recipe)
    jobs = []
    for seed, name, overrides in sweep_order(args.seeds, args.variant or ["base"]):
        try:
            config = base.replace(
                **overrides, seed=seed, val_fraction=args.val_fraction, fused_bn=False
            ).validate()
        except ConfigError as e:
            parser.error(f"variant {name!r}: {e}")
        if config.ema or config.alternate_flip or config.low_res < 28:
            parser.error(
                f"variant {name!r}: `ema`, `alternate_flip` and `low_res` are not supported here"
            )
        jobs.append(
            {
                "variant": name,
                "overrides": overrides,
                "config": config.to_dict(),
                "data_dir": args.data_dir,
                "precision": args.precision,
                "probs_dir": str(args.probs) if args.probs else None,
            }
        )
    args.results.parent.mkdir(parents=True, exist_ok=True)
    if args.probs:
        args.probs.mkdir(parents=True, exist_ok=True)
    context = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(
        args.workers,
        mp_context=context,
        initializer=_init_worker,
        initargs=(min(0.9 / args.workers, 0.45),),
    ) as pool:
        futures = {pool.submit(run_one, job): job for job in jobs}
        records = collect(
            futures, args.results, lambda job: f"{job['variant']} seed {job['config']['seed']}"
        )
    print(summary(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
