"""Multi-worker clusters: the `--strategy` of `train`, addresses, and joining a cluster
without hanging.

`tf.distribute.MultiWorkerMirroredStrategy()` returns only when every worker of the cluster
has connected. TensorFlow waits up to an hour for that, inside C++ and holding Python's
lock, so neither a Python thread nor Ctrl-C can end the wait, and it takes SIGTERM for its
own preemption notice: a worker started alone, or with a mistyped address, hangs silently.
`watchdog` forks a small process that ends the wait with a clear message.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import select
import signal
import socket
import time
import warnings
from collections.abc import Iterator

from fashion_cnn.errors import FashionCnnError

log = logging.getLogger(__name__)

WAIT_MINUTES = 10.0  # default of `train --wait-minutes`


def host_port(text: str, flag: str) -> tuple[str, str]:
    """`text` split into host and port.

    Raises:
        FashionCnnError: `text` is not HOST:PORT with a port in [1, 65535]; names `flag`.
    """
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise FashionCnnError(
            f"Invalid value for `{flag}`: expected HOST:PORT such as 10.0.0.5:8100, "
            f"received {text!r}"
        )
    return host, port


def answers(host: str, port: int, timeout_s: float = 2.0) -> bool:
    """Whether something accepts TCP connections at `host`:`port` now."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def make_strategy(
    strategy: str,
    workers: str | None = None,
    rank: int | None = None,
    wait_minutes: float = WAIT_MINUTES,
):
    """The `tf.distribute` strategy of `train --strategy`.

    Args:
        strategy: "none", "mirrored" (this machine's devices) or "multiworker".
        workers: "host:port,host:port,..." of a multiworker run (else TF_CONFIG is used,
            as cluster schedulers set it); sets TF_CONFIG.
        rank: this process's position in `workers`.
        wait_minutes: how long a multiworker process waits for all workers to connect.

    Returns:
        The strategy, or None for "none" (the default, one process).

    Raises:
        FashionCnnError: a bad or missing cluster description, or a worker whose cluster
            did not connect in time (then the process ends: see `watchdog`).
    """
    if strategy != "multiworker" and (workers or rank is not None or wait_minutes != WAIT_MINUTES):
        raise FashionCnnError("--workers, --rank and --wait-minutes need --strategy multiworker")
    if not wait_minutes > 0:
        raise FashionCnnError(
            "Invalid value for `--wait-minutes`: expected a positive number, received "
            f"{wait_minutes}"
        )
    if strategy == "none":
        return None
    import tensorflow as tf

    if strategy == "mirrored":
        return tf.distribute.MirroredStrategy()
    if workers:
        hosts = [h.strip() for h in workers.split(",") if h.strip()]
        for h in hosts:
            host_port(h, "--workers")
        if rank is None or not 0 <= rank < len(hosts):
            raise FashionCnnError(
                f"Invalid value for `--rank`: expected an integer in [0, {len(hosts) - 1}] "
                f"(this worker's position in --workers), received {rank}"
            )
        tf_config = {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": rank}}
        os.environ["TF_CONFIG"] = json.dumps(tf_config)
    elif "TF_CONFIG" not in os.environ:
        raise FashionCnnError(
            "--strategy multiworker needs the cluster: set TF_CONFIG, or pass "
            "--workers host1:port,host2:port and --rank N"
        )
    try:
        cluster = json.loads(os.environ["TF_CONFIG"])
        members = [*cluster["cluster"].get("chief", []), *cluster["cluster"].get("worker", [])]
        task = cluster["task"]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise FashionCnnError(f"TF_CONFIG is not a valid cluster description: {e}") from None
    log.info(
        "multi-worker training: %s %s of %d", task.get("type"), task.get("index"), len(members)
    )
    log.info("waiting for all %d workers to connect: %s", len(members), ", ".join(members))
    with watchdog(
        wait_minutes * 60,
        f"not all {len(members)} workers of the cluster ({', '.join(members)}) connected "
        f"within {wait_minutes:g} minutes. To fix it: start the same `fashion-cnn train` "
        "command on each of them, each with its own --rank, check that their addresses and "
        "ports reach each other, or wait longer with --wait-minutes.",
    ):
        return tf.distribute.MultiWorkerMirroredStrategy()


def replica_sum(strategy, value: float) -> float:
    """The sum of `value` over all replicas of `strategy`, every worker's included. Every
    worker must call it at the same point: it is a collective all-reduce (which supports
    only SUM and MEAN across workers)."""
    import tensorflow as tf

    per_replica = strategy.experimental_distribute_values_from_function(
        lambda _: tf.constant(value, tf.float32)
    )
    return float(strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None))


def check_same_config(strategy, config: dict) -> None:
    """Raises FashionCnnError on every worker of a multi-worker `strategy` unless all of
    them train the same `config` (a worker started with another --epochs, recipe or seed
    would otherwise train its replica of the model with other settings, silently). Every
    worker must call this: it is two collective all-reduces.

    Args:
        strategy: a `tf.distribute` strategy.
        config: this worker's resolved config, as `TrainConfig.to_dict()` gives it.
    """
    n = strategy.num_replicas_in_sync
    text = json.dumps(config, sort_keys=True)
    digest = int(hashlib.sha256(text.encode()).hexdigest()[:5], 16)  # < 2**20: exact in float32
    mine_is_the_mean = replica_sum(strategy, float(digest)) == n * digest
    # a second round, so that all workers reach the same verdict
    if replica_sum(strategy, 0.0 if mine_is_the_mean else 1.0) > 0:
        raise FashionCnnError(
            "The workers of this multi-worker run were started with different settings (this "
            f"worker's config digest: {digest:05x}). To fix it: start every worker with the "
            "same command, only --rank differing."
        )


@contextlib.contextmanager
def watchdog(timeout_s: float, message: str) -> Iterator[None]:
    """Runs the block; if it is still running after `timeout_s` seconds, or Ctrl-C is
    pressed meanwhile, a watchdog process prints `message` (or says it was interrupted) to
    stderr and kills this process (SIGKILL: the only signal TensorFlow's wait yields to).

    Where there is no `os.fork` (Windows), the block runs without a watchdog.

    Args:
        timeout_s: seconds the block may take.
        message: what went wrong and how to fix it, printed after "error: ".
    """
    if not hasattr(os, "fork"):
        yield
        return
    parent = os.getpid()
    read_end, write_end = os.pipe()
    # Ctrl-C is held back over the fork, until the watchdog has its handler in place
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a process with threads (TensorFlow's) may deadlock
        # the child; this child takes no lock: it only selects, writes, kills and exits.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the watchdog: plain os calls only, then os._exit
        try:
            os.close(write_end)
            interrupted: list[int] = []
            signal.signal(signal.SIGINT, lambda *_: interrupted.append(1))
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
            deadline = time.monotonic() + timeout_s
            while not interrupted and time.monotonic() < deadline:
                left = min(deadline - time.monotonic(), 1.0)
                if select.select([read_end], [], [], max(left, 0.0))[0]:
                    os._exit(0)  # the block has finished (or this process's parent died)
            text = "interrupted while waiting for the cluster" if interrupted else message
            os.write(2, f"error: {text}\n".encode())
            os.kill(parent, signal.SIGKILL)
        finally:
            os._exit(0)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    os.close(read_end)
    try:
        yield
    finally:
        os.close(write_end)  # end of file: the watchdog exits
        os.waitpid(pid, 0)
