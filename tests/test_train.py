import functools
import json
import os
import shutil
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from fashion_cnn import train as train_module
from fashion_cnn.augment import augment_batch
from fashion_cnn.config import TrainConfig
from fashion_cnn.errors import DamagedFileError, RunError
from fashion_cnn.evaluate import predict_proba
from fashion_cnn.io_utils import read_json, write_json
from fashion_cnn.run_folder import LOCK_FILE, locked
from fashion_cnn.runs import evaluate_run, final_metrics, load_run_model
from fashion_cnn.train import epoch_batches, train

CFG = TrainConfig(
    recipe="test",
    epochs=3,
    batch_size=64,
    learning_rate=1e-3,
    scale=1 / 255,
    optimizer="adam",
    val_fraction=0.2,
)


def weights(model):
    return [np.asarray(w) for w in model.weights]


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert len(wa) == len(wb)
    for x, y in zip(wa, wb, strict=True):
        np.testing.assert_array_equal(x, y)


class Interrupt(keras.callbacks.Callback):
    """Raises KeyboardInterrupt at a given epoch and batch, like Ctrl-C would."""

    def __init__(self, epoch, batch=None):
        super().__init__()
        self.epoch, self.batch, self.current = epoch, batch, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.batch is not None and self.current == self.epoch and batch == self.batch:
            raise KeyboardInterrupt

    def on_epoch_end(self, epoch, logs=None):
        if self.batch is None and epoch == self.epoch:
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, synthetic_data):
    out = train(CFG, synthetic_data, tmp_path_factory.mktemp("ref"), verbose=0)
    return out


def test_run_folder_contents(reference_run):
    names = {p.name for p in reference_run.iterdir()}
    assert {"config.json", "model.keras", "best.keras", "history.json", "state.json"} <= names
    # No temporary files left behind; the lock file stays (filelock keeps it, so that
    # processes racing for the lock share one file), unlocked.
    assert not any(n.startswith(".") for n in names - {LOCK_FILE})
    with locked(reference_run):  # free
        pass
    assert read_json(reference_run / "config.json") == CFG.to_dict()
    history = read_json(reference_run / "history.json")
    assert len(history["loss"]) == len(history["val_accuracy"]) == 3
    assert history["train_images"] == 480 and history["val_images"] == 120


def test_learns_synthetic_classes(reference_run, synthetic_data):
    model = load_run_model(reference_run)
    acc = (predict_proba(model, synthetic_data.x_test).argmax(1) == synthetic_data.y_test).mean()
    assert acc > 0.6


def test_save_load_round_trip_identical_predictions(reference_run, synthetic_data):
    model = load_run_model(reference_run)
    reloaded = keras.models.load_model(reference_run / "model.keras")
    np.testing.assert_array_equal(
        predict_proba(model, synthetic_data.x_test), predict_proba(reloaded, synthetic_data.x_test)
    )


def test_seeded_runs_are_bit_identical(reference_run, synthetic_data, tmp_path):
    again = train(CFG, synthetic_data, tmp_path / "again", verbose=0)
    assert_same_weights(load_run_model(reference_run), load_run_model(again))
    m1 = evaluate_run(reference_run, synthetic_data)
    m2 = evaluate_run(again, synthetic_data)
    assert m1 == m2
    assert (reference_run / "metrics.json").read_bytes() == (again / "metrics.json").read_bytes()
    other = train(CFG.replace(seed=1), synthetic_data, tmp_path / "other", verbose=0)
    assert not np.array_equal(weights(load_run_model(other))[0], weights(load_run_model(again))[0])


def test_training_traces_its_step_once_and_trains_as_a_lazy_build_would(
    synthetic_data, tmp_path, monkeypatch
):
    traces = []
    plain_step = keras.Model.train_step

    def counting_step(self, data):  # runs once per trace of the training step
        traces.append(data)
        return plain_step(self, data)

    monkeypatch.setattr(keras.Model, "train_step", counting_step)
    config = CFG.replace(epochs=2, ema=0.9)  # EMA: its averages start at the built weights
    built = train(config, synthetic_data, tmp_path / "built", verbose=0)
    assert len(traces) == 1
    # Keras' own way, creating the optimizer's and metrics' variables inside the first trace:
    monkeypatch.setattr(train_module, "build_training_state", lambda model: None)
    lazy = train(config, synthetic_data, tmp_path / "lazy", verbose=0)
    assert_same_weights(load_run_model(built), load_run_model(lazy))


def test_evaluate_with_flip_shift_tta_reports_its_18_view_accuracy(
    reference_run, synthetic_data, tmp_path, caplog
):
    run = shutil.copytree(reference_run, tmp_path / "run")
    caplog.set_level("INFO", logger="fashion_cnn.runs")
    metrics = evaluate_run(run, synthetic_data, tta="flip-shift")
    n = len(synthetic_data.y_test)  # a long silent wait on CPU without this line
    assert f"evaluating model.keras on {n} test images, 18 views each (flip-shift TTA)" in (
        caplog.messages
    )
    probs = predict_proba(load_run_model(run), synthetic_data.x_test, tta="flip-shift")
    assert metrics["tta"] == read_json(run / "metrics.json")["tta"] == "flip-shift"
    assert metrics["test_accuracy"] == (probs.argmax(1) == synthetic_data.y_test).mean()
    plain = predict_proba(load_run_model(run), synthetic_data.x_test)
    assert np.abs(probs - plain).max() > 1e-3  # the views differ: the check above can fail


def test_evaluating_the_best_checkpoint_keeps_the_final_models_figures(
    reference_run, synthetic_data, tmp_path, caplog
):
    run = shutil.copytree(reference_run, tmp_path / "run")
    final = evaluate_run(run, synthetic_data)
    before = (run / "metrics.json").read_bytes(), (run / "report.html").read_bytes()
    caplog.set_level("INFO", logger="fashion_cnn.runs")
    best = evaluate_run(run, synthetic_data, checkpoint="best")
    assert f"evaluating best.keras on {len(synthetic_data.y_test)} test images" in caplog.messages
    assert read_json(run / "metrics-best.json") == best and best["checkpoint"] == "best"
    assert (
        "<title>fashion-cnn: run (best checkpoint)</title>"
        in (run / "report-best.html").read_text()
    )
    assert ((run / "metrics.json").read_bytes(), (run / "report.html").read_bytes()) == before
    assert final_metrics(run) == final
    write_json(run / "metrics.json", best)  # as `evaluate --checkpoint best` wrote it before
    assert final_metrics(run) == {}  # not quoted as the final model's


@pytest.mark.parametrize("epoch, batch", [(1, None), (1, 3), (0, 2)])
def test_resume_after_interrupt_equals_uninterrupted(
    reference_run, synthetic_data, tmp_path, epoch, batch
):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(CFG, synthetic_data, out, verbose=0, callbacks=[Interrupt(epoch, batch)])
    assert not (out / "model.keras").exists()
    state = read_json(out / "state.json") if (out / "state.json").exists() else {"epoch": 0}
    assert state["epoch"] == (epoch + 1 if batch is None else epoch)
    train(CFG, synthetic_data, out, verbose=0)
    assert_same_weights(load_run_model(reference_run), load_run_model(out))
    assert read_json(out / "history.json") | {"epoch_seconds": None} == read_json(
        reference_run / "history.json"
    ) | {"epoch_seconds": None}


def test_a_damaged_checkpoint_is_named_and_overwrite_starts_again(synthetic_data, tmp_path):
    out = tmp_path / "run"
    config = CFG.replace(epochs=2)
    with pytest.raises(KeyboardInterrupt):
        train(config, synthetic_data, out, verbose=0, callbacks=[Interrupt(0, None)])
    checkpoint = out / read_json(out / "state.json")["checkpoint"]
    checkpoint.write_bytes(checkpoint.read_bytes()[:2000])  # cut off on disk
    with pytest.raises(DamagedFileError, match=r"is damaged: it is not a .keras .*--overwrite"):
        train(config, synthetic_data, out, verbose=0)
    train(config, synthetic_data, out, verbose=0, overwrite=True)
    assert read_json(out / "state.json")["finished"]


AUG = CFG.replace(
    recipe="aug",
    model="convnet",
    width=1,
    translate=2,
    flip=True,
    erase=0.3,
    cutmix=0.5,
    se=8,
    sam=0.05,
    sam_fraction=0.5,
    label_smoothing=0.1,
    schedule="onecycle",
    optimizer="sgd",
    learning_rate=0.05,
    weight_decay=5e-4,
    ema=0.9,
    precision="auto",  # bf16 where native (as the recipes), else float32
    fused_bn=True,
)


def test_resume_with_augmentation_schedule_and_ema_equals_uninterrupted(synthetic_data, tmp_path):
    straight = train(AUG, synthetic_data, tmp_path / "straight", verbose=0)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        train(AUG, synthetic_data, out, verbose=0, callbacks=[Interrupt(1, 2)])
    train(AUG, synthetic_data, out, verbose=0)
    assert_same_weights(load_run_model(straight), load_run_model(out))
    probs = predict_proba(load_run_model(out), synthetic_data.x_test)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-4)


def test_ema_run_stopped_after_its_last_epoch_resumes_to_the_averaged_weights(
    synthetic_data, tmp_path
):
    config = AUG.replace(epochs=2, sam=0.0)  # SAM's resume: the test above
    straight = train(config, synthetic_data, tmp_path / "straight", verbose=0)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):  # after the checkpoint of the last epoch
        train(config, synthetic_data, out, verbose=0, callbacks=[Interrupt(1)])
    assert read_json(out / "state.json")["epoch"] == 2
    assert not (out / "model.keras").exists()
    train(config, synthetic_data, out, verbose=0)
    assert_same_weights(load_run_model(straight), load_run_model(out))


def test_inference_files_need_no_fashion_cnn_layers(synthetic_data, tmp_path):
    out = train(AUG.replace(epochs=1), synthetic_data, tmp_path / "run", verbose=0)
    for name in ("model.keras", "best.keras"):
        with zipfile.ZipFile(out / name) as archive:
            saved = archive.read("config.json").decode()
        assert "fashion_cnn" not in saved and "FusedBatchNormalization" not in saved
        assert "SharpnessAware" not in saved
        assert '"BatchNormalization"' in saved


def test_different_config_in_same_folder_is_refused(synthetic_data, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(CFG, synthetic_data, out, verbose=0, callbacks=[Interrupt(0)])
    with pytest.raises(RunError, match=r"different config.*'epochs': \(3, 4\).*--overwrite"):
        train(CFG.replace(epochs=4), synthetic_data, out, verbose=0)
    train(CFG.replace(epochs=1), synthetic_data, out, verbose=0, overwrite=True)
    assert read_json(out / "config.json")["epochs"] == 1


def test_run_from_before_recipe_versions_resumes_under_a_versioned_recipe(
    reference_run, synthetic_data, tmp_path
):
    out = tmp_path / "old"
    shutil.copytree(reference_run, out)
    saved = read_json(out / "config.json")
    del saved["recipe_version"]
    (out / "config.json").write_text(json.dumps(saved))
    before = (out / "model.keras").stat().st_mtime_ns
    train(CFG.replace(recipe_version=1), synthetic_data, out, verbose=0)  # finished: no-op
    assert (out / "model.keras").stat().st_mtime_ns == before
    saved["recipe_version"] = 1
    (out / "config.json").write_text(json.dumps(saved))
    with pytest.raises(RunError, match=r"'recipe_version': \(1, 2\)") as refused:
        train(CFG.replace(recipe_version=2), synthetic_data, out, verbose=0)
    assert "--recipe" not in str(refused.value)  # "test" is not a shipped recipe
    saved["recipe"] = "seed"
    (out / "config.json").write_text(json.dumps(saved))
    with pytest.raises(RunError, match=r"'recipe_version': \(1, 2\).*`--recipe seed@1`"):
        train(CFG.replace(recipe="seed", recipe_version=2), synthetic_data, out, verbose=0)


def test_finished_run_is_not_retrained(reference_run, synthetic_data):
    before = (reference_run / "model.keras").stat().st_mtime_ns
    train(CFG, synthetic_data, reference_run, verbose=0)
    assert (reference_run / "model.keras").stat().st_mtime_ns == before


def test_epoch_order_depends_only_on_seed_and_epoch():
    x = np.arange(50, dtype=np.uint8).reshape(50, 1, 1, 1)
    y = np.zeros(50, np.uint8)
    full, steps = epoch_batches(x, y, 8, seed=0, first_epoch=0, epochs=3)
    assert steps == 7
    late, _ = epoch_batches(x, y, 8, seed=0, first_epoch=2, epochs=3)
    full_order = np.concatenate([b[0].numpy().ravel() for b in full])
    late_order = np.concatenate([b[0].numpy().ravel() for b in late])
    assert len(full_order) == 150
    np.testing.assert_array_equal(full_order[100:], late_order)
    assert sorted(full_order[:50]) == list(range(50))
    assert not np.array_equal(full_order[:50], full_order[50:100])


def test_training_batches_run_without_autotune():
    # tf.data's autotune thread made deleting the iterator at the end of `fit` wait for up
    # to a minute (measured: 5-40 s added to a training run); the pipeline needs no tuning.
    x = np.zeros((20, 28, 28, 1), np.uint8)
    ds, _ = epoch_batches(x, np.zeros(20, np.uint8), 8, seed=0, first_epoch=0, epochs=1)
    assert ds.options().autotune.enabled is False


def test_reestimate_batchnorm_sets_the_average_of_the_batch_statistics():
    from fashion_cnn.models import build_model
    from fashion_cnn.train import reestimate_batchnorm

    model = build_model("convnet", scale=1 / 255, width=1)
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 256, (16, 28, 28, 1)).astype("float32") for _ in range(3)]
    ds = tf.data.Dataset.from_tensor_slices((np.stack(batches), np.zeros((3, 16, 10))))
    used = reestimate_batchnorm(model, ds, limit=5)
    assert used == 3
    stem = keras.Model(model.input, model.get_layer("stem_conv").output)
    batch_means = [np.asarray(stem(b)).mean(axis=(0, 1, 2)) for b in batches]
    bn = model.get_layer("stem_bn")
    np.testing.assert_allclose(np.asarray(bn.moving_mean), np.mean(batch_means, 0), rtol=1e-4)
    assert bn.momentum == 0.9  # restored
    assert reestimate_batchnorm(model, ds, limit=2) == 2


def test_ema_runs_reestimate_batchnorm_for_the_averaged_weights(
    synthetic_data, tmp_path, monkeypatch
):
    import fashion_cnn.train as train_module

    calls = []
    real = train_module.reestimate_batchnorm
    monkeypatch.setattr(train_module, "reestimate_batchnorm", lambda m, b: calls.append(real(m, b)))
    train(AUG.replace(epochs=1, sam=0.0), synthetic_data, tmp_path / "ema", verbose=0)
    assert calls and calls[0] > 0
    calls.clear()
    train(AUG.replace(epochs=1, ema=0.0, sam=0.0), synthetic_data, tmp_path / "plain", verbose=0)
    assert calls == []


def test_alternate_flip_mirrors_each_image_in_every_other_epoch():
    # Each image carries its index in its pixels (column 0 only), so the batches show which
    # image was mirrored in which epoch.
    n, epochs = 40, 4
    x = np.zeros((n, 28, 28, 1), np.uint8)
    x[:, :, 0, 0] = np.arange(1, n + 1)[:, None]
    augment = functools.partial(augment_batch, flip=True)
    ds, steps = epoch_batches(
        x, np.zeros(n, np.uint8), 16, 3, 0, epochs, augment=augment, alternate_flip=True
    )
    mirrored = np.zeros((epochs, n), bool)
    for i, (images, _) in enumerate(ds):
        images = images.numpy()[..., 0]
        ids = np.maximum(images[:, 0, 0], images[:, 0, -1]).astype(int) - 1
        mirrored[i // steps, ids] = images[:, 0, -1] > 0
    assert 10 < mirrored[0].sum() < 30  # a random half in the first epoch
    np.testing.assert_array_equal(mirrored[1], ~mirrored[0])  # the other half next
    np.testing.assert_array_equal(mirrored[2], mirrored[0])
    np.testing.assert_array_equal(mirrored[3], mirrored[1])
    # A resumed run mirrors as an uninterrupted one.
    late, _ = epoch_batches(
        x, np.zeros(n, np.uint8), 16, 3, 3, epochs, augment=augment, alternate_flip=True
    )
    for images, _ in late:
        images = images.numpy()[..., 0]
        ids = np.maximum(images[:, 0, 0], images[:, 0, -1]).astype(int) - 1
        np.testing.assert_array_equal(images[:, 0, -1] > 0, mirrored[3, ids])


def test_cutmix_batches_mix_labels_and_resume_identically():
    from fashion_cnn.batches import make_mix

    n, epochs = 40, 3
    rng = np.random.default_rng(0)
    x = rng.integers(1, 256, (n, 28, 28, 1)).astype(np.uint8)
    y = (np.arange(n) % 10).astype(np.uint8)
    mix = make_mix(AUG.replace(cutmix=1.0))
    assert make_mix(AUG.replace(cutmix=0.0)) is None
    ds, steps = epoch_batches(x, y, 16, 5, 0, epochs, mix=mix)
    batches = [(i.numpy(), lab.numpy()) for i, lab in ds]
    labels = np.concatenate([lab for _, lab in batches])
    np.testing.assert_allclose(labels.sum(1), 1.0, rtol=1e-6)
    assert (labels.max(1) < 1).mean() > 0.5  # most labels mixed at probability 1
    late, _ = epoch_batches(x, y, 16, 5, 2, epochs, mix=mix)
    for (images, lab), (want_images, want_lab) in zip(late, batches[2 * steps :], strict=True):
        np.testing.assert_array_equal(images.numpy(), want_images)
        np.testing.assert_array_equal(lab.numpy(), want_lab)


@pytest.mark.parametrize(
    "epochs, low_res, until, want",
    [
        (10, 16, 0.7, [16, 16, 16, 20, 20, 24, 24, 28, 28, 28]),
        (4, 8, 0.5, [8, 16, 28, 28]),
        (3, 8, 0.9, [8, 16, 28]),  # the last epoch is at full size even past `until`
        (1, 16, 0.5, [28]),
        (5, 28, 0.5, [28] * 5),  # off
    ],
)
def test_epoch_sizes_grow_in_steps_of_4_to_full_size(epochs, low_res, until, want):
    from fashion_cnn.batches import epoch_sizes

    assert epoch_sizes(epochs, low_res, until) == want


def test_progressive_resizing_downscales_early_epochs_by_area_and_resumes_identically():
    # 2x2 blocks of one value each: halving by area averaging gives the blocks' values.
    n, epochs = 20, 3
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (n, 14, 14)).astype(np.uint8)
    x = blocks.repeat(2, axis=1).repeat(2, axis=2)[..., None]
    y = np.zeros(n, np.uint8)
    sizes = [14, 20, 28]
    ds, steps = epoch_batches(x, y, 8, 4, 0, epochs, sizes=sizes)
    batches = [images.numpy() for images, _ in ds]
    assert [b.shape[1:] for b in batches[::steps]] == [(14, 14, 1), (20, 20, 1), (28, 28, 1)]
    plain, _ = epoch_batches(x, y, 8, 4, 0, epochs)
    plain = [images.numpy() for images, _ in plain]
    for small, full in zip(batches[:steps], plain[:steps], strict=True):
        np.testing.assert_allclose(small[..., 0], full[:, ::2, ::2, 0], rtol=1e-6)
    for resized, full in zip(batches[2 * steps :], plain[2 * steps :], strict=True):
        np.testing.assert_array_equal(resized, full)  # full-size epochs are untouched
    late, _ = epoch_batches(x, y, 8, 4, 1, epochs, sizes=sizes)
    for images, want in zip(late, batches[steps:], strict=True):
        np.testing.assert_array_equal(images[0].numpy(), want)


def test_training_with_progressive_resizing_trains_small_epochs_and_saves_a_28x28_model(
    synthetic_data, tmp_path, monkeypatch
):
    import fashion_cnn.train as train_module

    asked = []
    real = train_module.epoch_batches

    def spy(*args, **kwargs):
        asked.append(kwargs.get("sizes"))
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "epoch_batches", spy)
    config = CFG.replace(
        model="convnet",
        width=1,
        fused_bn=True,
        optimizer="sgd",
        learning_rate=0.05,
        schedule="onecycle",
        batch_size=32,
        low_res=12,
        low_res_until=0.6,
    )
    out = train(config, synthetic_data, tmp_path / "r", verbose=0)
    assert asked == [[12, 20, 28]]
    model = load_run_model(out)
    assert model.input_shape == (None, 28, 28, 1)
    acc = (predict_proba(model, synthetic_data.x_test).argmax(1) == synthetic_data.y_test).mean()
    assert acc > 0.9  # learned, though two of its three epochs saw 12x12 and 20x20


def test_a_run_folder_trains_in_one_process_at_a_time(synthetic_data, tmp_path):
    import subprocess
    import sys

    from fashion_cnn.run_folder import PID_FILE

    out = tmp_path / "run"
    out.mkdir()
    # Another process holds the folder, as a training process does while it trains.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from fashion_cnn.run_folder import locked\n"
            f"with locked({str(out)!r}):\n    print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        busy = rf"being trained by another process \(id {holder.pid}\)"
        with pytest.raises(RunError, match=busy):
            train(CFG.replace(epochs=1), synthetic_data, out, verbose=0)
        assert not (out / "config.json").exists()  # nothing touched
    finally:
        holder.kill()  # as `kill -9` would: its lock ends with it
        holder.wait()
    train(CFG.replace(epochs=1), synthetic_data, out, verbose=0)
    assert (out / "model.keras").exists() and not (out / PID_FILE).exists()
    # Within one process too (e.g. two threads), the second is refused while the first holds.
    with locked(out), pytest.raises(RunError, match=rf"\(id {os.getpid()}\)"):
        train(CFG.replace(epochs=1), synthetic_data, out, verbose=0, overwrite=True)


def test_a_file_where_the_run_folder_goes_is_refused(synthetic_data, tmp_path):
    from fashion_cnn.errors import OutputError

    (tmp_path / "taken").write_text("keep me")
    with pytest.raises(OutputError, match=r"Run folder .*taken is a file, not a folder"):
        train(CFG.replace(epochs=1), synthetic_data, tmp_path / "taken", verbose=0)
    assert (tmp_path / "taken").read_text() == "keep me"


def test_training_logs_the_time_left_between_epochs(synthetic_data, tmp_path, caplog):
    caplog.set_level("INFO", logger="fashion_cnn.callbacks")
    train(CFG.replace(epochs=2), synthetic_data, tmp_path / "run", verbose=0)
    lines = [m for m in caplog.messages if m.startswith("epoch ")]
    assert len(lines) == 1 and lines[0].startswith("epoch 1/2 took ")
    assert lines[0].endswith(" to go for the other 1")
