"""Multi-worker training with tf.distribute: two worker processes on 127.0.0.1."""

import json
import os
import socket
import subprocess
import sys

import pytest

from fashion_cnn.cli import main
from fashion_cnn.io_utils import read_json


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


# A worker process whose CPU has native bf16 (rank 0) or not (rank 1), whatever this
# machine's CPU: `precision = "auto"` must still train both in one precision.
_WORKER = """
import sys
import fashion_cnn.hardware as hardware
bf16 = sys.argv[-1] == "0"
hardware.cpu_flags = lambda: frozenset({"avx512_bf16"} if bf16 else {"avx2"})
hardware.gpu_capabilities = lambda: []
from fashion_cnn.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _run_workers(commands: list[list[str]], timeout: int = 400) -> tuple[list, list[str]]:
    """Runs one worker process per command at once; returns their exit codes and output."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TF_CONFIG", None)
    procs = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
        for command in commands
    ]  # fmt: skip
    try:
        logs = [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    return [p.returncode for p in procs], logs


@pytest.mark.realdata
def test_two_workers_train_one_run_folder(real_data, tmp_path, capsys):
    hosts = ",".join(f"127.0.0.1:{p}" for p in _free_ports(2))
    out = tmp_path / "run"
    argv = [
        sys.executable, "-c", _WORKER, "train", "--recipe", "seed", "--epochs", "2",
        "--train-subset", "6000", "--learning-rate", "0.001", "--precision", "auto",
        "--verbosity", "2", "--strategy", "multiworker", "--workers", hosts, "--out", str(out),
        "--no-download",
    ]  # fmt: skip
    codes, logs = _run_workers([[*argv, "--rank", str(rank)] for rank in range(2)])
    assert codes == [0, 0], logs
    for rank, log in enumerate(logs):
        assert f"multi-worker training: worker {rank} of 2" in log, log
    # one run folder, in the single-machine format, written by the chief (worker 0) only
    history = read_json(out / "history.json")
    assert history["replicas"] == 2 and len(history["val_accuracy"]) == 2
    # worker 1 lacks native bf16, so "auto" is float32 on both (the chief chose bf16 alone)
    assert read_json(out / "config.json")["precision"] == "float32"
    assert 'precision "auto" -> float32 on every worker' in logs[0], logs[0]
    assert {p.name for p in out.iterdir()} >= {
        "config.json", "model.keras", "best.keras", "history.json", "calibration.json"
    }  # fmt: skip
    assert main(["evaluate", str(out), "--no-download"]) == 0
    assert read_json(out / "metrics.json")["test_accuracy"] > 0.5  # chance is 0.1


@pytest.mark.realdata
def test_workers_started_with_different_settings_are_refused(real_data, tmp_path):
    hosts = ",".join(f"127.0.0.1:{p}" for p in _free_ports(2))
    argv = [
        sys.executable, "-m", "fashion_cnn", "train", "--recipe", "seed", "--train-subset",
        "2000", "--strategy", "multiworker", "--workers", hosts, "--out", str(tmp_path / "run"),
        "--no-download",
    ]  # fmt: skip
    codes, logs = _run_workers(
        [[*argv, "--rank", str(rank), "--epochs", str(1 + rank)] for rank in range(2)]
    )
    assert codes == [2, 2], logs
    for log in logs:
        assert "error: The workers of this multi-worker run were started with different" in log
    assert not (tmp_path / "run" / "model.keras").exists()


def test_multiworker_needs_a_cluster(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    argv = ["train", "--strategy", "multiworker", "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    assert "set TF_CONFIG, or pass" in capsys.readouterr().err
    assert main([*argv, "--workers", "127.0.0.1:1,127.0.0.1:2", "--rank", "2"]) == 2
    assert "Invalid value for `--rank`" in capsys.readouterr().err
    assert main([*argv, "--workers", "localhost", "--rank", "0"]) == 2
    assert "expected HOST:PORT" in capsys.readouterr().err
    monkeypatch.setenv("TF_CONFIG", "{not json")
    assert main(argv) == 2
    assert "TF_CONFIG is not a valid cluster description" in capsys.readouterr().err
    assert main(["train", "--rank", "1"]) == 2
    assert "need --strategy multiworker" in capsys.readouterr().err
    assert main(["train", "--wait-minutes", "3"]) == 2
    assert "need --strategy multiworker" in capsys.readouterr().err
    assert main([*argv, "--wait-minutes", "0"]) == 2
    assert "Invalid value for `--wait-minutes`" in capsys.readouterr().err


def test_a_worker_whose_peers_never_connect_stops_with_a_message(tmp_path):
    # TensorFlow alone would wait an hour, deaf to Ctrl-C and SIGTERM
    hosts = ",".join(f"127.0.0.1:{p}" for p in _free_ports(2))
    argv = [
        sys.executable, "-m", "fashion_cnn", "train", "--recipe", "seed", "--strategy",
        "multiworker", "--workers", hosts, "--rank", "0", "--wait-minutes", "0.1",
        "--out", str(tmp_path / "run"),
    ]  # fmt: skip
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TF_CONFIG", None)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == -9, (done.returncode, done.stderr)
    assert f"waiting for all 2 workers to connect: {hosts.replace(',', ', ')}" in done.stderr
    assert "error: not all 2 workers of the cluster" in done.stderr
    assert "connected within 0.1 minutes. To fix it: start the same" in done.stderr


def test_tf_config_is_built_from_workers(monkeypatch):
    from fashion_cnn import cli, commands

    monkeypatch.delenv("TF_CONFIG", raising=False)
    made = []
    import tensorflow as tf

    monkeypatch.setattr(tf.distribute, "MultiWorkerMirroredStrategy", lambda: made.append(1))
    args = cli.build_parser().parse_args(
        ["train", "--strategy", "multiworker", "--workers", "a:1,b:2", "--rank", "1"]
    )
    commands._make_strategy(args)
    assert json.loads(os.environ["TF_CONFIG"]) == {
        "cluster": {"worker": ["a:1", "b:2"]},
        "task": {"type": "worker", "index": 1},
    }
    assert made == [1]


def test_mirrored_strategy_on_local_devices(synthetic_data, tmp_path):
    import tensorflow as tf

    from fashion_cnn.config import TrainConfig
    from fashion_cnn.train import train

    config = TrainConfig(recipe="t", epochs=1, batch_size=64, scale=1 / 255, optimizer="adam")
    strategy = tf.distribute.MirroredStrategy()
    run = train(config, synthetic_data, tmp_path / "run", verbose=0, strategy=strategy)
    history = read_json(run / "history.json")
    assert history["replicas"] == strategy.num_replicas_in_sync
    assert (run / "model.keras").is_file() and len(history["val_accuracy"]) == 1


def test_multi_worker_run_with_sam_is_refused_before_training(
    synthetic_data, tmp_path, monkeypatch
):
    from types import SimpleNamespace

    from fashion_cnn import train as train_mod
    from fashion_cnn.config import TrainConfig
    from fashion_cnn.errors import RunError
    from fashion_cnn.train import train

    monkeypatch.setattr(train_mod, "check_same_config", lambda *_: None)  # no real cluster

    config = TrainConfig(recipe="t", epochs=1, batch_size=64, scale=1 / 255, sam=0.05)
    two_replicas = SimpleNamespace(num_replicas_in_sync=2, cluster_resolver=None)
    with pytest.raises(RunError, match="does not support `sam`.*set sam = 0"):
        train(config, synthetic_data, tmp_path / "run", verbose=0, strategy=two_replicas)
    assert not (tmp_path / "run" / "model.keras").exists()
