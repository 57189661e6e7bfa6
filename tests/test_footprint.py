"""Peak memory of a block (mvgviz.footprint.PeakMemory), each case in a fresh process (the test
process's other threads, e.g. the app tests' background jobs, would move its RSS)."""

import json
import subprocess
import sys

import pytest

CASE = r"""
import json, sys, time
import numpy as np
from mvgviz import footprint
from mvgviz.footprint import PeakMemory
if sys.argv[1] == "sampled":  # where /proc/self/clear_refs cannot be written: the sampling thread
    footprint._CLEAR = "/nonexistent/clear_refs"
if sys.argv[2] == "after_large":  # a larger allocation before the block, freed
    a = np.ones(300 * 2**20 // 8); del a
before = footprint._rss_kb() / 1024
with PeakMemory() as peak:
    a = np.ones(int(sys.argv[3]) * 2**20 // 8)  # touched
    time.sleep(0.1)  # a few samples while it is held
    del a
print(json.dumps({"before": before, "peak": peak.rss_mb, "how": peak.how, "gpu": peak.gpu_mb}))
"""


def _case(mode: str, history: str, mb: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CASE, mode, history, str(mb)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


@pytest.mark.parametrize("mode", ["kernel", "sampled"])
def test_sees_an_allocation_freed_before_the_end(mode):
    r = _case(mode, "fresh", 200)
    assert ("sampled" in r["how"]) == (mode == "sampled"), r
    assert r["peak"] >= r["before"] + 180, r
    assert r["gpu"] is None


def test_a_small_block_after_a_large_one_reports_its_own_peak():
    r = _case("kernel", "after_large", 1)
    if "high-water" not in r["how"]:
        pytest.skip("no resettable high-water mark here: the sampled peak starts at the current RSS anyway")
    assert r["peak"] < r["before"] + 100, r   # not the 300 MiB freed before the block
