"""Training callbacks: the progress log (the checkpointer is tested through `train`)."""

import pytest

from fashion_cnn.callbacks import Progress, minutes


@pytest.mark.parametrize(
    "seconds, want",
    [
        (4.4, "4 s"),
        (89, "89 s"),
        (90, "1.5 min"),
        (599, "10.0 min"),
        (1770, "30 min"),
        (5400, "1 h 30 min"),
        (10_080, "2 h 48 min"),
    ],
)
def test_minutes_formats_a_duration_for_the_log(seconds, want):
    assert minutes(seconds) == want


def test_progress_logs_the_last_epoch_and_the_time_left_from_the_second_epoch_on(
    monkeypatch, caplog
):
    clock = iter([0.0, 80.0, 80.0, 170.0, 170.0])
    monkeypatch.setattr("fashion_cnn.callbacks.time.perf_counter", lambda: next(clock))
    caplog.set_level("INFO", logger="fashion_cnn.callbacks")
    progress = Progress(epochs=4)
    progress.on_epoch_begin(1)  # a resumed run: epoch 0 ended in an earlier process
    assert caplog.messages == []
    progress.on_epoch_end(1)
    progress.on_epoch_begin(2)
    progress.on_epoch_end(2)
    progress.on_epoch_begin(3)
    assert caplog.messages == [
        "epoch 2/4 took 80 s; about 2.7 min to go for the other 2",
        "epoch 3/4 took 1.5 min; about 1.5 min to go for the other 1",
    ]
