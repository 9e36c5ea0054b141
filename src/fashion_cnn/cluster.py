"""Joining a multi-worker cluster without hanging.

`tf.distribute.MultiWorkerMirroredStrategy()` returns only when every worker of the cluster
has connected. TensorFlow waits up to an hour for that, inside C++ and holding Python's
lock, so neither a Python thread nor Ctrl-C can end the wait, and it takes SIGTERM for its
own preemption notice: a worker started alone, or with a mistyped address, hangs silently.
`watchdog` forks a small process that ends the wait with a clear message.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from collections.abc import Iterator


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
