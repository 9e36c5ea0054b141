"""Keras callbacks of training: the per-epoch checkpoint (resume point, history, best
model) and the progress log."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import keras

from fashion_cnn.io_utils import atomic_path, write_json
from fashion_cnn.models import portable
from fashion_cnn.run_folder import BEST_FILE, CKPT_DIR, STATE_FILE

log = logging.getLogger(__name__)


class Checkpointer(keras.callbacks.Callback):
    """After each epoch: append to the history, save the resume point and the best model."""

    def __init__(self, out: Path, state: dict):
        super().__init__()
        self.out = out
        self.state = state
        self._t0 = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        st = self.state
        hist = st["history"]
        for k, v in (logs or {}).items():
            hist.setdefault(k, []).append(float(v))
        hist.setdefault("epoch_seconds", []).append(time.perf_counter() - self._t0)
        val_acc = (logs or {}).get("val_accuracy")
        if val_acc is not None and val_acc > st["best_val_accuracy"]:
            with atomic_path(self.out / BEST_FILE) as tmp:
                portable(self.model).save(tmp)
            st["best_val_accuracy"] = float(val_acc)
            st["best_epoch"] = epoch + 1
        ckpt = self.out / CKPT_DIR / f"epoch-{epoch + 1:04d}.keras"
        with atomic_path(ckpt) as tmp:
            self.model.save(tmp)
        previous = st.get("checkpoint")
        st["epoch"] = epoch + 1
        st["checkpoint"] = str(ckpt.relative_to(self.out))
        write_json(self.out / STATE_FILE, st)  # the commit point of this epoch
        if previous and previous != st["checkpoint"]:
            (self.out / previous).unlink(missing_ok=True)


def minutes(seconds: float) -> str:
    """A duration for a log line: "45 s", "3.5 min", "28 min", "1 h 40 min"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 600:
        return f"{seconds / 60:.1f} min"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    hours, rest = divmod(round(seconds / 60), 60)
    return f"{hours} h {rest} min"


class Progress(keras.callbacks.Callback):
    """Logs, as each epoch after the first begins, how long the last one took and about how
    long the rest will (the last epoch's time for each remaining one), so that a run that
    takes half an hour on a slower CPU says so early. It logs at the start of the next epoch
    rather than at the end of the last, so that the line falls between Keras' progress bars
    instead of inside one."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs
        self._start = None
        self._last = None

    def on_epoch_begin(self, epoch, logs=None):
        if self._last is not None:
            left = self.epochs - epoch
            log.info(
                "epoch %d/%d took %s; about %s to go for the other %d",
                epoch,
                self.epochs,
                minutes(self._last),
                minutes(left * self._last),
                left,
            )
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if self._start is not None:
            self._last = time.perf_counter() - self._start
