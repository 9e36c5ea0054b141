import logging
import os

import pytest

from fashion_cnn import run_folder
from fashion_cnn.errors import RunError
from fashion_cnn.run_folder import PID_FILE, locked

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
