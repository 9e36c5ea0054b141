"""Parity limits of exports: what passes, what fails and how the failure reads."""

import numpy as np
import pytest

from fashion_cnn.parity import PARITY, check_parity


def test_check_parity_thresholds():
    rng = np.random.default_rng(0)
    ref = rng.dirichlet(np.ones(10), 1000).astype("float32")
    labels = ref.argmax(1)
    ok = check_parity(ref, ref + 5e-5, labels, PARITY[None])
    assert ok["failures"] == [] and ok["agreement"] == 1.0
    bad = check_parity(ref, ref + 3e-4, labels, PARITY[None])
    assert len(bad["failures"]) == 1 and "3.0x the limit" in bad["failures"][0]
    flipped = ref.copy()
    flipped[:10] = flipped[:10, ::-1]  # 1% of the answers change
    q = check_parity(ref, flipped, labels, PARITY["int8"])
    assert q["agreement"] == pytest.approx(0.99)
    assert any("below 99.5%" in f for f in q["failures"])
    assert any("points below" in f for f in q["failures"])  # 1 point > 0.3 allowed
