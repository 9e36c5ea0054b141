import numpy as np
import pytest

from fashion_cnn.tta import TTA_VIEWS, shift_images, tta_mode


def test_shift_moves_pixels_and_fills_with_zero():
    x = np.arange(1, 26, dtype="float32").reshape(1, 5, 5, 1)
    down_right = shift_images(x, 1, 1)
    np.testing.assert_array_equal(down_right[0, 1:, 1:, 0], x[0, :-1, :-1, 0])
    assert not down_right[0, 0, :, 0].any() and not down_right[0, :, 0, 0].any()
    up_left = shift_images(x, -1, -2)
    np.testing.assert_array_equal(up_left[0, :-1, :-2, 0], x[0, 1:, 2:, 0])
    assert not up_left[0, -1, :, 0].any() and not up_left[0, :, -2:, 0].any()
    assert shift_images(x, 0, 0) is x
    assert not shift_images(x, 5, 0).any()
    assert shift_images(x, 2, -1).shape == x.shape


def test_modes_and_views():
    assert TTA_VIEWS["none"] == [(False, 0, 0)]
    assert sorted(TTA_VIEWS["flip"]) == [(False, 0, 0), (True, 0, 0)]
    views = TTA_VIEWS["flip-shift"]
    assert len(views) == len(set(views)) == 18
    assert all(abs(dy) <= 1 and abs(dx) <= 1 for _, dy, dx in views)


def test_tta_mode_reads_legacy_bools_and_rejects_unknown():
    assert tta_mode(True) == "flip"
    assert tta_mode(False) == "none"
    assert tta_mode(None) == "none"
    assert tta_mode("flip-shift") == "flip-shift"
    with pytest.raises(ValueError, match=r"Invalid value for `tta`.*received 'vertical'"):
        tta_mode("vertical")
