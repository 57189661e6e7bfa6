"""Peak memory of a block (mvgviz.footprint.PeakMemory)."""

import numpy as np
import pytest

from mvgviz import footprint
from mvgviz.footprint import PeakMemory


def _rss_mb():
    return footprint._rss_kb() / 1024


@pytest.mark.parametrize("sampled", [False, True])
def test_sees_an_allocation_freed_before_the_end(sampled, monkeypatch):
    if sampled:  # where /proc/self/clear_refs cannot be written: the sampling thread
        monkeypatch.setattr(footprint, "_CLEAR", "/nonexistent/clear_refs")
    before = _rss_mb()
    with PeakMemory() as peak:
        a = np.ones(200 * 2**20 // 8)  # 200 MiB, touched
        if sampled:
            import time
            time.sleep(0.1)  # a few samples while it is held
        del a
    assert ("sampled" in peak.how) == sampled
    assert peak.rss_mb >= before + 180, (before, peak.rss_mb)
    assert peak.gpu_mb is None


def test_a_small_block_after_a_large_one_reports_its_own_peak():
    a = np.ones(300 * 2**20 // 8)
    del a
    with PeakMemory() as peak:
        b = np.ones(2**20)
        del b
    if "high-water" not in peak.how:
        pytest.skip("no resettable high-water mark here: the sampled peak starts at the current RSS anyway")
    assert peak.rss_mb < _rss_mb() + 100
