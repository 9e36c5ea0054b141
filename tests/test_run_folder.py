import logging
import os

import pytest

from fashion_cnn import run_folder
from fashion_cnn.config import TrainConfig
from fashion_cnn.errors import DamagedFileError, RunError
from fashion_cnn.run_folder import PID_FILE, check_run_folder, locked

# `train` holding the lock against another process, and a killed holder: test_train.py.


def test_lock_names_its_holder_and_is_released(tmp_path):
    with locked(tmp_path):
        assert (tmp_path / PID_FILE).read_text() == str(os.getpid())
        with pytest.raises(RunError, match=rf"another process \(id {os.getpid()}\).*--out"):
            with locked(tmp_path):
                pass
    assert not (tmp_path / PID_FILE).exists()
    with locked(tmp_path):  # free again
        pass


def test_lock_released_when_the_body_fails(tmp_path):
    with pytest.raises(ValueError), locked(tmp_path):
        raise ValueError("training failed")
    with locked(tmp_path):
        pass


def test_file_system_without_locks_trains_with_a_warning(tmp_path, monkeypatch, caplog):
    class NoFlock:  # filelock 3 where the file system lacks flock
        def __init__(self, *args, **kwargs):
            pass

        def acquire(self):
            raise NotImplementedError("FileSystem does not appear to support flock")

    monkeypatch.setattr(run_folder.filelock, "FileLock", NoFlock)
    ran = []
    with caplog.at_level(logging.WARNING, logger="fashion_cnn"), locked(tmp_path):
        ran.append(True)
    assert ran == [True]
    assert f"Run folder {tmp_path} cannot be locked" in caplog.text


def test_overwrite_deletes_nothing_where_config_json_is_another_programs(tmp_path):
    (tmp_path / "config.json").write_text('{"name": "my-app"}')
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "mine.bin").write_text("keep")
    (tmp_path / "model.keras").write_text("keep")
    for overwrite in (False, True):
        with pytest.raises(RunError, match=r"holds a config.json that is not a fashion-cnn run"):
            check_run_folder(tmp_path, TrainConfig(), overwrite=overwrite)
    assert (tmp_path / "checkpoints" / "mine.bin").read_text() == "keep"
    assert (tmp_path / "model.keras").read_text() == "keep"
    assert (tmp_path / "config.json").read_text() == '{"name": "my-app"}'


def test_a_damaged_run_needs_overwrite_which_clears_it(tmp_path):
    (tmp_path / "config.json").write_text("{")
    (tmp_path / "model.keras").write_text("old")
    with pytest.raises(DamagedFileError, match="config.json is damaged"):
        check_run_folder(tmp_path, TrainConfig(), overwrite=False)
    check_run_folder(tmp_path, TrainConfig(), overwrite=True)
    assert list(tmp_path.iterdir()) == []


def test_overwrite_also_clears_what_was_made_from_the_old_model(tmp_path):
    # predict and serve used to answer with the old model's ONNX export after a retrain,
    # and the model cards quoted the old model's metrics.json
    from fashion_cnn.io_utils import write_json

    write_json(tmp_path / "config.json", TrainConfig(epochs=3).to_dict())
    made = [
        "model.keras",
        "metrics.json",
        "report.html",
        "metrics-best.json",
        "report-best.html",
        "robustness.json",
        "robustness.html",
    ]
    for name in made:
        (tmp_path / name).write_text("old")
    (tmp_path / "exports" / "onnx").mkdir(parents=True)
    (tmp_path / "exports" / "onnx" / "model.onnx").write_text("old")
    (tmp_path / "notes.txt").write_text("the user's")
    check_run_folder(tmp_path, TrainConfig(epochs=4), overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_run_without_a_best_checkpoint_says_why(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(RunError, match="has no best.keras: training has not finished"):
        run_folder.model_path(tmp_path, "best")
    (tmp_path / "model.keras").write_bytes(b"")  # finished, but without a validation split
    with pytest.raises(RunError, match=r"only the final model.keras: .*val_fraction = 0"):
        run_folder.model_path(tmp_path, "best")
    assert run_folder.model_path(tmp_path) == tmp_path / "model.keras"
