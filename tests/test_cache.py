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


# ---------------------------------------------------------------------------------------
# Verified entries, self-healing index, read-only and full disks, leftovers (issue 9, 1-5)
# ---------------------------------------------------------------------------------------

import errno
import json
import signal
import sqlite3
import subprocess
import sys
import zlib

import mvgviz.cache as C
from mvgviz.cache import CacheFull, CacheReadOnly, DamagedEntry


def _offset(path):
    with open(path, "rb") as f:
        np.lib.format.read_magic(f)
        np.lib.format.read_array_header_1_0(f)
        return f.tell()


def _flip(path, start=8, n=16):
    """XOR ``n`` bytes of the data (after the header) with 0xFF."""
    off = _offset(path) + start
    with open(path, "r+b") as f:
        f.seek(off)
        b = bytearray(f.read(n))
        f.seek(off)
        f.write(bytes(x ^ 0xFF for x in b))


def _truncate(path, keep=None):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2 if keep is None else keep)


def _store_with(tmp_path, arrays, parts=None, meta=None, **kw):
    notes = []
    s = Store(tmp_path, note=notes.append, **kw)
    key = make_key({"t": str(sorted(arrays))})
    s.put(key, parts or {"kind": "x"}, meta or {}, arrays)
    return s, key, notes


def test_record_holds_shape_dtype_size_and_the_crc_of_the_bytes_written(tmp_path):
    arrays = {"a": np.arange(60, dtype=np.float32).reshape(3, 4, 5), "m": np.eye(3, dtype=bool),
              "h": np.linspace(0, 1, 7).astype(np.float16)}
    s, key, _ = _store_with(tmp_path, arrays)
    rec = json.loads((tmp_path / "entries" / key / "meta.json").read_text())
    for name, arr in arrays.items():
        p = tmp_path / "entries" / key / f"{name}.npy"
        raw = p.read_bytes()
        a = rec["arrays"][name]
        assert a["shape"] == list(arr.shape) and a["dtype"] == arr.dtype.str and a["bytes"] == len(raw)
        assert a["offset"] == _offset(p) and a["crc32"] == zlib.crc32(raw[a["offset"]:])  # streamed = file
        np.testing.assert_array_equal(np.load(p), arr)
    # the index row is the same record
    assert s.index.get(key)["arrays"] == rec["arrays"]


def test_streamed_crc_equals_crc_of_chunks(tmp_path):
    s = Store(tmp_path)
    key = make_key({"chunks": 1})
    full = np.random.default_rng(0).standard_normal((10, 3, 2)).astype(np.float32)
    with s.writer(key, {"kind": "x"}) as w:
        a = w.appender("y", full.shape, np.float32)
        for i in (0, 3, 7):
            a.write(full[i:{0: 3, 3: 7, 7: 10}[i]])
    assert w.entry.info["y"]["crc32"] == zlib.crc32(full.tobytes())


@pytest.mark.parametrize("damage,why", [
    (lambda p: _truncate(p), "bytes"),                     # truncated array
    (lambda p: _truncate(p, 0), "bytes"),                  # empty file
    (lambda p: os.remove(p), "missing"),
    (lambda p: _flip(p), "checksum"),                      # 16 flipped bytes, same size
])
def test_damaged_array_is_a_miss_removed_with_one_note(tmp_path, damage, why):
    arr = np.arange(64, dtype=np.float64)
    s, key, notes = _store_with(tmp_path, {"y": arr})
    C._VERIFIED.clear()  # a new process
    damage(tmp_path / "entries" / key / "y.npy")
    assert s.get(key) is None
    assert len(notes) == 1 and key[:12] in notes[0] and why in notes[0] and "removed" in notes[0]
    assert "\n" not in notes[0]
    assert not (tmp_path / "entries" / key).exists()  # removed, so it is refitted
    assert s.ls() == []
    s.put(key, {"kind": "x"}, {}, {"y": arr})
    np.testing.assert_array_equal(s.get(key).array("y"), arr)


def test_checksum_runs_on_first_read_then_only_when_the_file_changes(tmp_path, monkeypatch):
    arr = np.arange(1000, dtype=np.float64)
    s, key, notes = _store_with(tmp_path, {"y": arr})
    calls = []
    real = C.crc32_file
    monkeypatch.setattr(C, "crc32_file", lambda *a: calls.append(a) or real(*a))
    assert s.get(key) is not None and calls == []  # written by this process: already verified
    C._VERIFIED.clear()  # a new process
    assert s.get(key) is not None and len(calls) == 1  # first read: full check
    assert s.get(key) is not None and len(calls) == 1  # unchanged file: size and header only
    p = tmp_path / "entries" / key / "y.npy"
    st = p.stat()
    _flip(p)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime (ctime still moves)
    assert s.get(key) is None and len(calls) == 2 and "checksum" in notes[-1]


def test_verify_full_checks_every_read(tmp_path, monkeypatch):
    arr = np.arange(100, dtype=np.float64)
    s, key, _ = _store_with(tmp_path, {"y": arr}, verify="full")
    calls = []
    real = C.crc32_file
    monkeypatch.setattr(C, "crc32_file", lambda *a: calls.append(a) or real(*a))
    for i in range(3):
        assert s.get(key) is not None
    assert len(calls) == 3
    monkeypatch.setenv("MVGVIZ_VERIFY", "full")
    assert Store(tmp_path).verify == "full"
    monkeypatch.setenv("MVGVIZ_VERIFY", "sometimes")
    with pytest.raises(ValueError, match="verify.*first, full.*MVGVIZ_VERIFY"):
        Store(tmp_path)


def test_damaged_record_and_old_entries_without_checksums_are_misses(tmp_path):
    s, key, notes = _store_with(tmp_path, {"y": np.zeros(3)})
    (tmp_path / "entries" / key / "meta.json").write_text("{not json")
    assert s.get(key) is None and "meta.json" in notes[-1]
    key2 = make_key({"old": 1})
    (tmp_path / "entries" / key2).mkdir()
    np.save(tmp_path / "entries" / key2 / "y.npy", np.zeros(3))
    (tmp_path / "entries" / key2 / "meta.json").write_text(json.dumps({"parts": {}, "meta": {}}))
    assert s.get(key2) is None and "without checksums" in notes[-1]


def test_a_file_damaged_after_the_entry_was_read_raises_one_clear_error(tmp_path):
    s, key, _ = _store_with(tmp_path, {"y": np.arange(1000, dtype=np.float32)})
    e = s.get(key)
    _truncate(tmp_path / "entries" / key / "y.npy")
    for read in (lambda: e.array("y"), lambda: e.array("y", mmap=False), lambda: e.reader("y").rows(0, 1000)):
        with pytest.raises(DamagedEntry, match=r"y\.npy.*(damaged|truncated)"):
            read()


LAYER_META = {"channels": 4, "feature_size": [2, 3],
              "metrics": {"image_auroc": 0.9, "pixel_auroc": 0.8, "pixel_aupr": None, "aupro": 0.5, "note": ""}}


def _layer_arrays(**override):
    arrays = {"state_eigvals": np.array([0.0, 0.1, 1.0, 2.0]), "component_auroc": np.array([0.5, 0.6, 0.7, 0.9]),
              "component_auroc_error": np.zeros(4), "components_test": np.zeros((5, 4, 2, 3), np.float32),
              "maps_test": np.zeros((5, 2, 3), np.float32), "image_scores_test": np.ones(5)}
    arrays.update(override)
    return arrays


@pytest.mark.parametrize("override,meta,why", [
    ({"component_auroc": np.array([0.5, -6.1, 0.7, 0.9])}, {}, "component_auroc"),
    ({"component_auroc": np.array([0.5, np.nan, 0.7, 0.9])}, {}, "component_auroc"),
    ({"state_eigvals": np.array([-1e-3, 0.1, 1.0, 2.0])}, {}, "eigval"),
    ({"state_eigvals": np.array([0.0, np.inf, 1.0, 2.0])}, {}, "eigval"),
    ({"component_auroc_error": np.array([0.0, -1.0, 0.0, 0.0])}, {}, "error"),
    ({"image_scores_test": np.array([1.0, np.nan, 1, 1, 1])}, {}, "image_scores"),
    ({"maps_test": np.zeros((4, 2, 3), np.float32)}, {}, "maps_test"),
    ({"components_test": np.zeros((5, 3, 2, 3), np.float32)}, {}, "components_test"),
    ({}, {"metrics": {**LAYER_META["metrics"], "pixel_auroc": 1.5}}, "pixel_auroc"),
    ({}, {"metrics": {**LAYER_META["metrics"], "image_auroc": float("nan")}}, "image_auroc"),
])
def test_values_that_cannot_be_right_are_refused_on_read(tmp_path, override, meta, why):
    ok, key_ok, _ = _store_with(tmp_path / "ok", _layer_arrays(), {"kind": "layer"}, LAYER_META)
    assert ok.get(key_ok) is not None  # the reference entry is accepted
    s, key, notes = _store_with(tmp_path / "bad", _layer_arrays(**override), {"kind": "layer"},
                                {**LAYER_META, **meta})
    assert s.get(key) is None  # checksums match: the values themselves are refused
    assert why in notes[-1] and "removed" in notes[-1]


def _garbage_index(cache):
    db = cache / "index" / "cache.db"
    assert db.is_file()
    db.write_bytes(b"this is not a database" * 500)
    for extra in ("cache.db-wal", "cache.db-shm"):
        (cache / "index" / extra).unlink(missing_ok=True)


def test_damaged_index_is_rebuilt_and_never_needed_to_read(tmp_path):
    s, key, _ = _store_with(tmp_path, {"y": np.arange(5.0)})
    s.put(make_key({"g": 2}), {"kind": "data", "category": "z"}, {}, {"y": np.zeros(2)})
    s.close()
    _garbage_index(tmp_path)
    notes = []
    s2 = Store(tmp_path, note=notes.append)
    np.testing.assert_array_equal(s2.get(key).array("y"), np.arange(5.0))  # reads need no index
    rows = s2.ls()
    assert sorted(r["key"] for r in rows) == sorted([key, make_key({"g": 2})]) and all(r["valid"] for r in rows)
    assert any("index" in n and "rebuilt from 2 entry folders" in n for n in notes)
    assert len(s2.index) == 2  # rebuilt
    s2.close()
    _garbage_index(tmp_path)
    assert Store(tmp_path).clear() == 2 and Store(tmp_path).ls() == []


def test_index_out_of_step_with_folders_is_rebuilt(tmp_path):
    s, key, _ = _store_with(tmp_path, {"y": np.arange(5.0)})
    import shutil
    shutil.rmtree(tmp_path / "entries" / key)  # folder gone, row left
    assert s.ls() == [] and len(s.index) == 0


@pytest.mark.parametrize("cmd", [["cache", "ls"], ["cache", "ls", "--json"], ["cache", "clear"]])
def test_cli_cache_commands_survive_a_damaged_index(tmp_path, capsys, cmd):
    from mvgviz.cli import main
    _store_with(tmp_path, {"y": np.arange(5.0)})[0].close()
    _garbage_index(tmp_path)
    assert main(cmd + ["--cache", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "DatabaseError" not in err
    assert ("removed 1 entries" in out) if "clear" in cmd else ("1 entries" in out or len(json.loads(out)) == 1)


def _read_only(monkeypatch, cache):
    """As root, chmod does not stop writes: say the cache is not writable, and fail every write
    under it (as a read-only mount would)."""
    cache = str(cache)
    real_access, real_open, real_mkdir, real_rename = os.access, open, os.mkdir, os.rename

    def under(p):
        return os.path.abspath(str(p)).startswith(cache)

    def deny(p):
        raise OSError(errno.EROFS, "Read-only file system", str(p))

    monkeypatch.setattr(os, "access", lambda p, m, **k: False if (m & os.W_OK and under(p)) else real_access(p, m, **k))
    monkeypatch.setattr(os, "mkdir", lambda p, *a, **k: deny(p) if under(p) else real_mkdir(p, *a, **k))
    monkeypatch.setattr(os, "rename", lambda a, b, **k: deny(a) if under(a) or under(b) else real_rename(a, b, **k))
    import builtins
    monkeypatch.setattr(builtins, "open", lambda p, mode="r", *a, **k: deny(p) if (
        isinstance(p, (str, os.PathLike)) and under(p) and any(c in mode for c in "wax+")) else real_open(p, mode, *a, **k))
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: deny(a[0]))


def _tree(path):
    return sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*"))


def test_read_only_store_reads_and_refuses_to_write_in_one_line(tmp_path, monkeypatch):
    arr = np.arange(7.0)
    s, key, _ = _store_with(tmp_path, {"y": arr})
    s.close()
    before = _tree(tmp_path)
    _read_only(monkeypatch, tmp_path)
    C._VERIFIED.clear()
    ro = Store(tmp_path)
    assert ro.readonly
    np.testing.assert_array_equal(ro.get(key).array("y"), arr)  # checksum verified, nothing written
    assert [r["key"] for r in ro.ls()] == [key]
    for attempt in (lambda: ro.lock(key), lambda: ro.put(make_key({"n": 1}), {}, {}, {"y": arr}), ro.clear):
        with pytest.raises(CacheReadOnly, match=f"cache '{tmp_path}' is read-only") as e:
            attempt()
        assert "\n" not in str(e.value)
    assert _tree(tmp_path) == before


def test_write_into_a_full_disk_names_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    s = Store(tmp_path)
    import builtins
    real_open = builtins.open

    class Full:
        def __init__(self, f):
            self.f, self.n = f, 0

        def write(self, b):
            self.n += len(b)
            if self.n > 1000:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(b)

        def __getattr__(self, a):
            return getattr(self.f, a)

    monkeypatch.setattr(C, "open", lambda p, mode="r", *a, **k: Full(real_open(p, mode, *a, **k))
                        if "w" in mode else real_open(p, mode, *a, **k), raising=False)
    with pytest.raises(CacheFull, match=r"disk full: cannot write '.*/tmp/.*/big\.npy'.*--cache") as e:
        s.put(make_key({"full": 1}), {}, {}, {"small": np.zeros(3), "big": np.zeros(10_000)})
    assert "\n" not in str(e.value) and "requested" not in str(e.value)
    assert not any((tmp_path / "tmp").iterdir()) and not any((tmp_path / "entries").iterdir())


def test_fsync_on_a_full_disk_names_the_file(tmp_path, monkeypatch):
    s = Store(tmp_path)

    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(C.os, "fsync", fsync)
    with pytest.raises(CacheFull, match=r"cannot write '.*y\.npy'"):
        s.put(make_key({"full": 2}), {}, {}, {"y": np.zeros(3)})
    assert not any((tmp_path / "tmp").iterdir())


def test_index_write_on_a_full_disk_is_one_line_and_the_entry_is_still_readable(tmp_path, monkeypatch):
    s = Store(tmp_path)
    s.index  # opened

    def full(*a, **k):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(s.index, "set", full)
    key = make_key({"full": 3})
    with pytest.raises(CacheFull, match=f"disk full: cannot write the cache index '{tmp_path / 'index'}'"):
        s.put(key, {}, {}, {"y": np.arange(3.0)})
    monkeypatch.undo()
    np.testing.assert_array_equal(Store(tmp_path).get(key).array("y"), np.arange(3.0))
    assert [r["key"] for r in Store(tmp_path).ls()] == [key]  # the index catches up


def _dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_leftovers_of_dead_writers_are_removed_and_live_ones_kept(tmp_path, capsys):
    Store(tmp_path)
    key = make_key({"left": 1})
    dead = tmp_path / "tmp" / f"{key}.{_dead_pid()}.deadbeef"          # the form of 0.3.0
    dead2 = tmp_path / "tmp" / f"{key}.{_dead_pid()}.cafe0000.{C._host()}"
    live = tmp_path / "tmp" / f"{key}.{os.getppid()}.0123abcd.{C._host()}"
    other_host = tmp_path / "tmp" / f"{key}.{_dead_pid()}.0123abcd.elsewhere"
    for d in (dead, dead2, live, other_host):
        d.mkdir()
        (d / "y.npy").write_bytes(b"partial")
    from mvgviz.cli import main
    assert main(["cache", "ls", "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"removed leftover {dead}" in out and f"removed leftover {dead2}" in out
    assert not dead.exists() and not dead2.exists() and live.exists() and other_host.exists()


_KILLED_WRITER = """
import sys, time, numpy as np
from mvgviz.cache import Store
s = Store(sys.argv[1])
with s.writer("k" * 32, {"kind": "x"}) as w:
    a = w.appender("y", (100, 10), np.float32)
    a.write(np.zeros((50, 10), np.float32))
    print("writing", flush=True)
    time.sleep(60)
"""


def test_a_writer_killed_midway_leaves_a_folder_that_a_later_run_removes(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(tmp_path)], stdout=subprocess.PIPE,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(C.__file__))), text=True)
    assert p.stdout.readline().strip() == "writing"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    left = list((tmp_path / "tmp").iterdir())
    assert len(left) == 1 and left[0].name.startswith("k" * 32 + f".{p.pid}.")
    s = Store(tmp_path)
    assert s.removed == [left[0].name] and not left[0].exists() and s.get("k" * 32) is None


# ---------------------------------------------------------------------------------------
# Fault injection on real caches (a tiny category fitted once; each test damages a copy)
# ---------------------------------------------------------------------------------------

import shutil

from conftest import write_category

LAYER = "_blocks[4]"


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    """(data root, a complete cache, the report of a clean run)."""
    from mvgviz.pipeline import fit
    root = tmp_path_factory.mktemp("fi_data")
    write_category(root, "widget", n_train=6, n_good=2, defects=("scratch",), n_defect=2, size=(48, 48))
    cache = tmp_path_factory.mktemp("fi_cache")
    model = fit(root, "widget", layers=LAYER, cache=cache, device="cpu")
    return root, cache, json.loads(json.dumps(model.report()))


def _copy(golden, tmp_path):
    root, cache, rep = golden
    dst = tmp_path / "cache"
    shutil.copytree(cache, dst)
    C._VERIFIED.clear()  # as in a new process
    return root, dst, rep


def _entry_file(cache, kind, name):
    hits = []
    for d in (cache / "entries").iterdir():
        rec = json.loads((d / "meta.json").read_text())
        if rec["parts"]["kind"] == kind and name in rec["arrays"]:
            hits.append(d / f"{name}.npy")
    assert len(hits) == 1, (kind, name, hits)
    return hits[0]


def _report(capsys, root, cache, *extra):
    from mvgviz.cli import main
    code = main(["report", "--data", str(root), "--category", "widget", "--layers", LAYER, "--cache", str(cache),
                 "--device", "cpu", "--json", "--quiet", *extra])
    out, err = capsys.readouterr()
    return code, out, err


FOUND = [  # the issue's cases: (entry kind, array, damage)
    ("layer", "state_eigvals", lambda p: _truncate(p)),
    ("layer", "state_eigvecs", lambda p: _truncate(p, 100)),
    ("layer", "component_auroc", lambda p: _truncate(p, 0)),        # empty file
    ("layer", "component_auroc", lambda p: _flip(p)),               # 16 flipped bytes
    ("layer", "components_test", lambda p: _truncate(p)),
    ("layer", "maps_train", lambda p: _flip(p, 4000)),
    ("data", "images_test", lambda p: _truncate(p)),
    ("data", "masks_test", lambda p: _flip(p, 100)),
]


@pytest.mark.parametrize("kind,name,damage", FOUND, ids=[f"{k}-{n}-{i}" for i, (k, n, _) in enumerate(FOUND)])
def test_damaged_entry_is_refitted_with_one_note_and_never_shown(golden, tmp_path, capsys, kind, name, damage):
    root, cache, rep = _copy(golden, tmp_path)
    path = _entry_file(cache, kind, name)
    damage(path)
    code, out, err = _report(capsys, root, cache)
    assert code == 0 and json.loads(out) == rep  # the clean run's report, exactly
    notes = [l for l in err.splitlines() if "damaged" in l]
    assert len(notes) == 1 and f"{name}.npy" in notes[0] and "recomputed" in notes[0]
    assert "Traceback" not in err
    C._VERIFIED.clear()
    code, out, err = _report(capsys, root, cache)  # healed: a plain hit
    assert code == 0 and json.loads(out) == rep and "damaged" not in err


def test_damaged_features_are_recomputed_when_needed(golden, tmp_path, capsys):
    from mvgviz.pipeline import fit
    root, cache, rep = _copy(golden, tmp_path)
    _flip(_entry_file(cache, "features", "feat_train_1"), 1000)
    assert fit(root, "widget", layers=LAYER, cache=cache).report() == rep  # not needed: not read
    assert capsys.readouterr().err == ""
    other = fit(root, "widget", layers="_blocks[10]", cache=cache, device="cpu")
    assert other.computed_layers == ("_blocks[10]",)
    err = capsys.readouterr().err
    assert err.count("damaged") == 1 and "feat_train_1.npy does not match its checksum" in err
    C._VERIFIED.clear()
    assert all(r["valid"] for r in Store(cache).ls(verify=True))


def test_load_verifies_before_returning_a_model(golden, tmp_path, capsys):
    """The viewer's path (pipeline.load, memory maps): a damaged entry is no model, never a crash."""
    from mvgviz.pipeline import fit, load
    root, cache, rep = _copy(golden, tmp_path)
    assert load(root, "widget", layers=LAYER, cache=cache).report() == rep
    for kind, name in (("data", "images_test"), ("layer", "components_test")):
        _truncate(_entry_file(cache, kind, name))
        C._VERIFIED.clear()
        assert load(root, "widget", layers=LAYER, cache=cache) is None  # "not cached": the app offers a fit
        assert "damaged" in capsys.readouterr().err
        model = fit(root, "widget", layers=LAYER, cache=cache, device="cpu")
        assert model.report() == rep
        n = model.data.n_images("test")
        assert model.data.images("test").shape[0] == n and model.layer(LAYER).y("test").shape[0] == n


def test_viewer_probe_of_a_damaged_cache_says_missing(golden, tmp_path):
    from mvgviz.viewer import jobs as J
    root, cache, _ = _copy(golden, tmp_path)
    _truncate(_entry_file(cache, "data", "images_test"))
    jobs = J.Jobs()
    key = J.ModelKey(str(root), "widget", "efficientnet_lite0", str(cache))
    with pytest.raises(J.NotCached):
        J._load_cached(jobs, key)


def test_report_of_a_read_only_cache(golden, tmp_path, capsys, monkeypatch):
    root, cache, rep = _copy(golden, tmp_path)
    before = _tree(cache)
    _read_only(monkeypatch, cache)
    code, out, err = _report(capsys, root, cache)
    assert code == 0 and json.loads(out) == rep and err == ""
    code, out, err = _report(capsys, root, cache, "--reg", "ridge:0.1")  # a miss
    assert code == 2 and out == ""
    assert err.strip() == (f"mvgviz: error: cache '{cache}' is read-only: cannot store new results "
                           "(use a writable cache folder: --cache DIR or $MVGVIZ_CACHE)")
    monkeypatch.undo()
    assert _tree(cache) == before


def test_report_of_a_cached_model_writes_nothing(golden, tmp_path, capsys, monkeypatch):
    """A nearly full disk: every write under the cache fails with ENOSPC; a hit needs none."""
    root, cache, rep = _copy(golden, tmp_path)
    _read_only(monkeypatch, cache)
    monkeypatch.setattr(os, "access", os.access.__wrapped__ if hasattr(os.access, "__wrapped__") else os.access)
    import builtins
    real_open = builtins.open

    def full_open(p, mode="r", *a, **k):
        if isinstance(p, (str, os.PathLike)) and str(p).startswith(str(cache)) and any(c in mode for c in "wax+"):
            raise OSError(errno.ENOSPC, "No space left on device", str(p))
        return real_open(p, mode, *a, **k)

    monkeypatch.setattr(builtins, "open", full_open)
    code, out, err = _report(capsys, root, cache)
    assert code == 0 and json.loads(out) == rep


def test_cache_ls_flags_entries_whose_data_changed(golden, tmp_path, capsys):
    from mvgviz.cli import main
    root, cache, _ = _copy(golden, tmp_path)
    data = tmp_path / "data"
    shutil.copytree(root, data)
    assert main(["cache", "ls", "--cache", str(cache), "--data", str(data), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 3 and all(r["data"] == "current" for r in rows)
    assert all(r["data_root"] == str(root) for r in rows)
    img = data / "widget" / "train" / "good" / "000.png"
    img.write_bytes(img.read_bytes() + b"\0")  # one file changed
    assert main(["cache", "ls", "--cache", str(cache), "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert out.count("(stale: data changed since") == 3
    assert main(["cache", "ls", "--cache", str(cache)]) == 0  # the recorded root: unchanged
    assert "stale" not in capsys.readouterr().out
    changed = root / "widget" / "test" / "good" / "000.png"
    st = changed.stat()
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    try:
        assert main(["cache", "ls", "--cache", str(cache)]) == 0  # the recorded root changed
        assert capsys.readouterr().out.count("(stale: data changed since") == 3
    finally:
        os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert main(["cache", "ls", "--cache", str(cache), "--data", str(tmp_path / "nowhere")]) == 0
    assert capsys.readouterr().out.count("(stale: data not readable at") == 3


def test_content_fingerprint_sees_pixels_changed_with_same_size_and_mtime(golden, tmp_path, capsys):
    from mvgviz.cli import main
    from mvgviz.pipeline import fit
    root, cache, rep = _copy(golden, tmp_path)
    data = tmp_path / "data"
    shutil.copytree(root, data)
    import cv2
    img = data / "widget" / "test" / "scratch" / "000.png"
    stored = [cv2.IMWRITE_PNG_COMPRESSION, 0]  # uncompressed: the size depends on the dimensions only
    pixels = cv2.imread(str(img))
    cv2.imwrite(str(img), pixels, stored)
    a = fit(data, "widget", layers=LAYER, cache=cache, device="cpu", fingerprint="content")
    assert a.computed_layers == (LAYER,) and a.layer(LAYER).dataset_fingerprint.startswith("content:")
    assert fit(data, "widget", layers=LAYER, cache=cache, fingerprint="content").computed_layers == ()
    fit(data, "widget", layers=LAYER, cache=cache, device="cpu")  # the default's entry of these files
    st = img.stat()
    pixels[10:20, 10:20] = 255 - pixels[10:20, 10:20]  # other pixels ...
    cv2.imwrite(str(img), pixels, stored)
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns))  # ... same size, same mtime
    assert img.stat().st_size == st.st_size and img.stat().st_mtime_ns == st.st_mtime_ns
    stat_mode = fit(data, "widget", layers=LAYER, cache=cache, device="cpu")
    assert stat_mode.computed_layers == ()  # the default cannot see it: a stale hit
    content = fit(data, "widget", layers=LAYER, cache=cache, device="cpu", fingerprint="content")
    assert content.computed_layers == (LAYER,)
    assert main(["cache", "ls", "--cache", str(cache), "--data", str(data), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    content_rows = [r for r in rows if str(r["dataset"]).startswith("content:")]
    assert sorted(r["data"] == "current" for r in content_rows) == [False] * 3 + [True] * 3
    stat_rows = [r for r in rows if not str(r["dataset"]).startswith("content:")]
    assert all(r["data"] == "current" for r in stat_rows if r["data_root"] == str(data))  # cannot see it
    with pytest.raises(ValueError, match="fingerprint"):
        fit(data, "widget", layers=LAYER, cache=cache, fingerprint="mtime")


# Real mounts (root with mount rights only): a read-only bind mount and a small full tmpfs

def _mount(*args):
    r = subprocess.run(["mount", *map(str, args)], capture_output=True, text=True)
    return r.returncode == 0


@pytest.fixture
def mountpoint(tmp_path):
    mp_ = tmp_path / "mnt"
    mp_.mkdir()
    yield mp_
    subprocess.run(["umount", "-l", str(mp_)], capture_output=True)


def test_report_from_a_read_only_bind_mount(golden, tmp_path, capsys, mountpoint):
    root, cache, rep = _copy(golden, tmp_path)
    if not (_mount("--bind", cache, mountpoint) and _mount("-o", "remount,bind,ro", mountpoint)):
        pytest.skip("cannot bind-mount here")
    assert not os.access(mountpoint, os.W_OK)
    code, out, err = _report(capsys, root, mountpoint)
    assert code == 0 and json.loads(out) == rep and err == ""
    code, out, err = _report(capsys, root, mountpoint, "--reg", "ridge:0.1")
    assert code == 2 and f"cache '{mountpoint}' is read-only" in err and len(err.strip().splitlines()) == 1
    from mvgviz.cli import main
    assert main(["cache", "ls", "--cache", str(mountpoint)]) == 0
    assert "(read-only): 3 entries" in capsys.readouterr().out


def test_a_full_disk(golden, tmp_path, capsys, mountpoint):
    root, cache, rep = _copy(golden, tmp_path)
    size = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file())
    if not _mount("-t", "tmpfs", "-o", f"size={size + (4 << 20)}", "tmpfs", mountpoint):
        pytest.skip("cannot mount a tmpfs here")
    full = mountpoint / "cache"
    shutil.copytree(cache, full)
    fd = os.open(mountpoint / "filler", os.O_WRONLY | os.O_CREAT)
    try:  # fill the disk, to the last byte
        for block in (1 << 16, 1 << 10, 1):
            try:
                while True:
                    os.write(fd, b"\0" * block)
            except OSError as e:
                assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)
    code, out, err = _report(capsys, root, full)  # a hit needs no space
    assert code == 0 and json.loads(out) == rep
    code, out, err = _report(capsys, root, full, "--reg", "ridge:0.1")  # a miss must write
    assert code == 2 and out == ""
    line = err.strip()
    assert len(line.splitlines()) == 1 and line.startswith(f"mvgviz: error: disk full: cannot write '{full}/")
    assert not any((full / "tmp").iterdir())  # nothing half written left
    os.remove(mountpoint / "filler")
    code, out, err = _report(capsys, root, full, "--reg", "ridge:0.1")
    assert code == 0
