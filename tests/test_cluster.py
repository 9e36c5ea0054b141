"""The watchdog that ends a stuck wait for a multi-worker cluster (fashion_cnn.cluster)."""

import os
import signal
import subprocess
import sys
import time

from fashion_cnn.cluster import watchdog


def test_a_block_that_finishes_in_time_is_left_alone():
    start = time.monotonic()
    with watchdog(30, "never printed"):
        value = 1 + 1
    assert value == 2 and time.monotonic() - start < 5  # the watchdog exited at once


# A block stuck as TensorFlow's wait is: deaf to Ctrl-C (SIGINT ignored once it runs)
_STUCK = """
import signal, sys, time
from fashion_cnn.cluster import watchdog
with watchdog(float(sys.argv[1]), "too slow. To fix it: wait less"):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    print("started", flush=True)
    time.sleep(60)
print("not reached", flush=True)
"""


def test_a_block_still_running_at_the_deadline_is_killed_with_the_message():
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", _STUCK, "1.5"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == -9 and time.monotonic() - start < 30
    assert done.stdout == "started\n"
    assert done.stderr == "error: too slow. To fix it: wait less\n"


def test_ctrl_c_ends_the_wait():
    proc = subprocess.Popen(
        [sys.executable, "-c", _STUCK, "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    assert proc.stdout.readline() == "started\n"
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends: SIGINT to the whole group
    _, err = proc.communicate(timeout=30)
    assert err == "error: interrupted while waiting for the cluster\n"
    assert proc.returncode == -9
