import multiprocessing as mp
import os
import time

import numpy as np
import pytest

from mvgviz import __version__
from mvgviz.cache import Store, make_key


def test_put_get_roundtrip_and_memmap(tmp_path):
    s = Store(tmp_path)
    arr = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    key = make_key({"a": 1})
    with s.lock(key):
        s.put(key, {"kind": "layer", "category": "c"}, {"x": 1}, {"y": arr})
    e = s.get(key)
    y = e.array("y")
    assert isinstance(y, np.memmap)
    np.testing.assert_array_equal(y[1, 2], arr[1, 2])
    assert e.meta == {"x": 1}
    with pytest.raises(KeyError, match="no array 'z'"):
        e.array("z")


def test_key_covers_parts_and_version():
    assert make_key({"layer": "a"}) != make_key({"layer": "b"})
    assert make_key({"a": 1, "b": 2}) == make_key({"b": 2, "a": 1})
    import mvgviz.cache as c
    old = c.__version__
    try:
        c.__version__ = "0.0.0-old"
        k_old = c.make_key({"layer": "a"})
    finally:
        c.__version__ = old
    assert k_old != make_key({"layer": "a"})


def test_interrupted_write_leaves_no_valid_entry(tmp_path):
    s = Store(tmp_path)
    key = make_key({"b": 1})

    class Boom:
        """An array-like whose conversion fails midway, like a fit killed while writing."""
        def __array__(self, dtype=None, copy=None):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        s.put(key, {}, {}, {"ok": np.zeros(3), "bad": Boom()})
    assert s.get(key) is None
    assert not any((tmp_path / "tmp").iterdir())  # temporary folder removed
    assert not (tmp_path / "entries" / key).exists()


def test_orphan_folder_without_index_row_is_a_miss_and_replaced(tmp_path):
    s = Store(tmp_path)
    key = make_key({"c": 1})
    (tmp_path / "entries" / key).mkdir(parents=True)
    np.save(tmp_path / "entries" / key / "y.npy", np.ones(2))  # killed after rename, before index
    assert s.get(key) is None
    s.put(key, {}, {}, {"y": np.zeros(2)})
    np.testing.assert_array_equal(s.get(key).array("y"), 0)


def test_missing_array_file_is_a_miss(tmp_path):
    s = Store(tmp_path)
    key = make_key({"d": 1})
    s.put(key, {}, {}, {"y": np.zeros(2)})
    os.remove(tmp_path / "entries" / key / "y.npy")
    assert s.get(key) is None


def _fill(args):
    directory, key, log = args
    s = Store(directory)
    with s.lock(key):
        if s.get(key) is None:
            with open(log, "a") as f:
                f.write("computed\n")
            time.sleep(0.5)
            s.put(key, {"p": 1}, {}, {"y": np.arange(1000, dtype=np.float64)})
    return float(s.get(key).array("y").sum())


def test_two_processes_same_entry_compute_once(tmp_path):
    key = make_key({"e": 1})
    log = tmp_path / "log.txt"
    with mp.get_context("spawn").Pool(2) as pool:
        out = pool.map(_fill, [(str(tmp_path / "cache"), key, str(log))] * 2)
    assert out[0] == out[1] == float(np.arange(1000).sum())
    assert log.read_text().count("computed") == 1


def test_ls_and_clear(tmp_path):
    s = Store(tmp_path)
    s.put(make_key({"f": 1}), {"kind": "data", "category": "x", "version": __version__}, {}, {"y": np.zeros(4)})
    s.put(make_key({"f": 2}), {"kind": "layer", "category": "x", "version": "0.0.1"}, {}, {"y": np.zeros(4)})
    rows = s.ls()
    assert len(rows) == 2 and {r["current_version"] for r in rows} == {True, False}
    assert s.clear() == 2 and s.ls() == []
