"""The on-disk store: one folder per entry, ``.npy`` arrays plus a ``meta.json`` record.

Layout of a cache folder (default ``cache/``, or ``--cache DIR``)::

    entries/<key>/     one folder per entry: <name>.npy arrays and meta.json (the entry's record:
                       parts, meta, and every array's shape, dtype, size and CRC-32)
    index/             diskcache.Cache: key -> record, a listing for ``ls`` (rebuilt from the
                       entry folders whenever it is damaged, missing or out of step)
    locks/<key>.lock   inter-process locks (filelock, released by the OS if a process dies)
    tmp/               entries being written (``<key>.<pid>.<id>.<host>``)

Keys are hashes of the entry's *parts* (data set fingerprint, category, backbone, weights
tag, layer, preprocessing, regulariser, package version ...). A mismatch in any part is a
miss, never an error.

Atomicity: arrays are written into ``tmp/`` (their CRC-32 computed while they stream), fsynced,
the record ``meta.json`` is written and fsynced last, and the folder is renamed into
``entries/<key>``. A fit killed midway leaves at most a ``tmp/`` folder (removed by a later run
once its process is dead). Two processes filling the same entry serialise on the entry's lock:
the second one waits and then reads what the first wrote.

Verification (:meth:`Store.get`; README "Cache"): an entry is trusted only after its record
parses and every array has the recorded file size and ``.npy`` header (always: a ``stat`` and a
small read per array), its CRC-32 matches the recorded one (the first time this process sees the
file, and again whenever its inode, size or times change; on every read with ``verify="full"`` or
``MVGVIZ_VERIFY=full``), and its values can be right (:func:`mvgviz.results.check_entry`). A
damaged entry is a miss: it is removed (under its lock) with a one-line note, and refitted.
Reading never writes: a read-only or full disk serves what is cached.

Arrays are read as memory maps (``np.load(mmap_mode="r")``), so a viewer reading one
component of a few images touches only those bytes.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import sys
import time
import uuid
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping

import numpy as np
from filelock import FileLock, Timeout

from . import __version__

DEFAULT_CACHE_DIR = Path(__file__).resolve().parent.parent / "cache"
VERIFY_MODES = ("first", "full")
_CHUNK = 16 << 20  # bytes per read when checksumming
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def default_cache_dir() -> Path:
    """``$MVGVIZ_CACHE`` if set, else the repository's ``cache/`` folder."""
    env = os.environ.get("MVGVIZ_CACHE")
    return Path(env) if env else DEFAULT_CACHE_DIR


def make_key(parts: Mapping) -> str:
    """A stable hash of ``parts`` (JSON-serialisable) plus the package version."""
    payload = json.dumps({**parts, "mvgviz_version": __version__}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


class CacheError(OSError):
    """A cache problem, said in one line that names the path."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "cache error"


class CacheReadOnly(CacheError):
    """Something must be written into a read-only cache."""


class CacheFull(CacheError):
    """The disk holding the cache is full."""


class DamagedEntry(CacheError):
    """A cache file changed after it was verified (e.g. truncated while a viewer held the model)."""


def _disk_full(e: BaseException) -> bool:
    if isinstance(e, sqlite3.DatabaseError):
        return getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(e)
    return isinstance(e, OSError) and e.errno in _DISK_FULL


# (array file) -> its stat signature when its CRC-32 last matched, in this process
_VERIFIED: dict[str, tuple] = {}


def _signature(st: os.stat_result) -> tuple:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def crc32_file(path: str | os.PathLike, offset: int = 0) -> int:
    """CRC-32 (zlib) of a file's bytes from ``offset``, read in 16 MiB chunks."""
    crc = 0
    with open(path, "rb") as f:
        f.seek(offset)
        while True:
            b = f.read(_CHUNK)
            if not b:
                return crc
            crc = zlib.crc32(b, crc)


def _read_header(path: Path) -> tuple[tuple, np.dtype, bool, int]:
    """(shape, dtype, fortran_order, data offset) of a ``.npy`` file."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in read:
            raise ValueError(f"unsupported .npy format version {version}")
        shape, fortran, dtype = read[version](f)
        return tuple(shape), np.dtype(dtype), bool(fortran), f.tell()


def _describe(parts: Mapping) -> str:
    """``layer widget efficientnet_lite0 _blocks[4]``: what an entry is, for notes."""
    keys = {"data": ("category",), "features": ("category", "backbone", "storage"),
            "layer": ("category", "backbone", "layer", "reg")}.get(parts.get("kind"), ("category",))
    return " ".join([str(parts.get("kind", "entry"))] + [str(parts[k]) for k in keys if parts.get(k) is not None])


@dataclass(frozen=True)
class Entry:
    """A committed cache entry: metadata plus lazily memory-mapped arrays.

    ``info[name]``: the array's recorded ``shape``, ``dtype``, ``bytes`` (file size), ``offset``
    (header size) and ``crc32`` (of the bytes after the header).
    """

    key: str
    path: Path
    parts: dict
    meta: dict
    arrays: tuple[str, ...]
    info: dict = field(default_factory=dict, repr=False, compare=False)

    def _file(self, name: str) -> Path:
        if name not in self.arrays:
            raise KeyError(f"cache entry {self.key} has no array {name!r}; it has {', '.join(self.arrays)}")
        return self.path / f"{name}.npy"

    def array(self, name: str, *, mmap: bool = True) -> np.ndarray:
        """Array ``name``, memory-mapped (or read whole with ``mmap=False``). A file damaged
        since the entry was verified raises :class:`DamagedEntry` (one line naming it)."""
        path = self._file(name)
        try:
            arr = np.load(path, mmap_mode="r" if mmap else None)
        except (ValueError, OSError, EOFError) as e:
            raise DamagedEntry(f"cache file {str(path)!r} is damaged or gone ({_reason(e)}); "
                               "run again to recompute it") from e
        want = self.info.get(name)
        if want is not None and (list(arr.shape) != list(want["shape"]) or arr.dtype.str != want["dtype"]):
            raise DamagedEntry(f"cache file {str(path)!r} is damaged: shape {arr.shape} {arr.dtype.str}, "
                               f"recorded {tuple(want['shape'])} {want['dtype']}; run again to recompute it")
        return arr

    def reader(self, name: str) -> "NpyReader":
        """Array ``name`` read in chunks with plain file reads (streaming; no memory map)."""
        path = self._file(name)
        try:
            return NpyReader(path)
        except (ValueError, OSError, EOFError) as e:
            raise DamagedEntry(f"cache file {str(path)!r} is damaged or gone ({_reason(e)}); "
                               "run again to recompute it") from e


def _reason(e: BaseException) -> str:
    return (e.strerror if isinstance(e, OSError) and e.strerror else str(e)) or type(e).__name__


def _default_note(text: str) -> None:
    print(f"mvgviz: {text}", file=sys.stderr)


class Store:
    """A cache folder. Safe to share between processes.

    Parameters
    ----------
    directory
        The cache folder (default :func:`default_cache_dir`).
    verify
        ``"first"`` (default): every array's CRC-32 is checked the first time this process reads
        it (and again if the file changes); ``"full"``: on every :meth:`get`. Default:
        ``$MVGVIZ_VERIFY`` if set, else ``"first"``. Size, header and value checks always run.
    readonly
        Never write (read a shared or mounted cache). Default: detected (``os.access``).
    note
        Called with one line when the store does something the user should know (a damaged
        entry removed, the index rebuilt, leftovers removed). Default: printed to stderr.
        Every note is also kept in :attr:`notes`.
    """

    def __init__(self, directory: str | os.PathLike | None = None, *, verify: str | None = None,
                 readonly: bool | None = None, note: Callable[[str], None] | None = None):
        self.dir = Path(directory) if directory is not None else default_cache_dir()
        v = verify if verify is not None else (os.environ.get("MVGVIZ_VERIFY") or "first")
        if v not in VERIFY_MODES:
            from .conventions import ParamError
            raise ParamError("verify", f"must be one of {', '.join(VERIFY_MODES)}, got {v!r}"
                             + ("" if verify is not None else " (from $MVGVIZ_VERIFY)"))
        self.verify = v
        self.notes: list[str] = []
        self._note = note or _default_note
        self._index = None
        self.removed: list[str] = []  # leftovers of dead processes removed by this store
        if readonly is None:
            readonly = self.dir.is_dir() and not all(
                os.access(p, os.W_OK) for p in (self.dir, self.dir / "entries") if p.exists())
        self.readonly = bool(readonly)
        if self.readonly:
            if not self.dir.is_dir():
                raise CacheError(f"cache folder {str(self.dir)!r} does not exist")
            return
        try:
            for sub in ("entries", "locks", "tmp"):
                (self.dir / sub).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            if (self.dir / "entries").is_dir() and e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                self.readonly = True  # an existing cache we may not write into
                return
            raise CacheError(f"cannot create cache folder {str(self.dir)!r}: {_reason(e)}") from e
        self.removed = self.remove_leftovers()

    def note(self, text: str) -> None:
        self.notes.append(text)
        self._note(text)

    def _readonly_error(self, what: str) -> CacheReadOnly:
        return CacheReadOnly(f"cache {str(self.dir)!r} is read-only: cannot {what} "
                             "(use a writable cache folder: --cache DIR or $MVGVIZ_CACHE)")

    # -- reading -------------------------------------------------------------------
    def get(self, key: str) -> Entry | None:
        """The verified entry ``key``, or None (a miss: absent, or damaged and removed). Never writes
        except to remove a damaged entry; never waits on a lock."""
        path = self.dir / "entries" / key
        rec, problem = _read_record(path)
        if rec is None and problem is None:
            return None
        if problem is None:
            problem = self._check(path, rec, full=self.verify == "full", checksum=True)
        if problem is None:
            entry = _entry(key, path, rec)
            from .results import check_entry  # values that cannot be right
            problem = check_entry(entry)
            if problem is None:
                return entry
        self._discard(key, path, rec, problem)
        return None

    def _check(self, path: Path, rec: dict, *, full: bool, checksum: bool) -> str | None:
        """Why the entry's arrays do not match its record (None: they do)."""
        for name, a in rec["arrays"].items():
            p = path / f"{name}.npy"
            try:
                st = p.stat()
                if st.st_size != a["bytes"]:
                    return f"{name}.npy has {st.st_size} bytes, {a['bytes']} recorded"
                shape, dtype, fortran, offset = _read_header(p)
                if list(shape) != list(a["shape"]) or dtype.str != a["dtype"] or fortran or offset != a["offset"]:
                    return (f"{name}.npy header says {shape} {dtype.str}, "
                            f"{tuple(a['shape'])} {a['dtype']} recorded")
                if checksum and (full or _VERIFIED.get(str(p)) != _signature(st)):
                    if crc32_file(p, offset) != a["crc32"]:
                        _VERIFIED.pop(str(p), None)
                        return f"{name}.npy does not match its checksum"
                    _VERIFIED[str(p)] = _signature(st)
            except FileNotFoundError:
                return f"{name}.npy is missing"
            except (OSError, ValueError, EOFError, KeyError, TypeError) as e:
                return f"{name}.npy is unreadable ({_reason(e)})"
        return None

    def _discard(self, key: str, path: Path, rec: dict | None, problem: str) -> None:
        what = _describe(rec["parts"]) if rec else "entry"
        if self.readonly:
            self.note(f"cache entry {key[:12]} ({what}) is damaged ({problem}); not used "
                      f"(read-only cache {str(self.dir)!r})")
            return
        try:
            with self.lock(key, timeout=0):
                _remove_tree(path, self.dir / "tmp")
        except Timeout:  # the lock holder (maybe this process) is rewriting it: nothing removed here
            self.note(f"cache entry {key[:12]} ({what}) is damaged ({problem}); not used, and left to the "
                      "process that holds its lock")
            return
        except OSError as e:
            self.note(f"cache entry {key[:12]} ({what}) is damaged ({problem}); could not remove "
                      f"{str(path)!r}: {_reason(e)}")
            return
        self._index_delete(key)
        self.note(f"cache entry {key[:12]} ({what}) was damaged ({problem}): removed; it will be recomputed")

    def lock(self, key: str, timeout: float = -1) -> FileLock:
        if self.readonly:
            raise self._readonly_error("store new results")
        return FileLock(str(self.dir / "locks" / f"{key}.lock"), timeout=timeout)

    # -- writing -------------------------------------------------------------------
    def put(self, key: str, parts: dict, meta: dict, arrays: Mapping[str, np.ndarray]) -> Entry:
        """Write an entry atomically (call it while holding ``lock(key)``)."""
        with self.writer(key, parts) as w:
            for name, arr in arrays.items():
                w.put(name, arr)
            w.meta.update(meta)
        return w.entry

    @contextmanager
    def writer(self, key: str, parts: dict, *, source: dict | None = None) -> Iterator["EntryWriter"]:
        """Write an entry array by array, large ones chunk by chunk (call it while holding
        ``lock(key)``). Everything is written into ``tmp/``; on a clean exit the files are
        fsynced, the record is written, the folder is renamed into ``entries/<key>`` and then
        indexed. On an exception nothing is left behind; a full disk is :class:`CacheFull`
        naming the path. ``source``: facts about where the data came from (``data_root``),
        recorded in ``meta.json`` and shown by :meth:`ls`, not part of the key. After the block,
        ``writer.entry`` is the committed entry."""
        if self.readonly:
            raise self._readonly_error("store new results")
        tmp = self.dir / "tmp" / f"{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}.{_host()}"
        try:
            tmp.mkdir(parents=True)
        except OSError as e:
            raise self._write_error(e, tmp) from e
        w = EntryWriter(tmp)
        final = self.dir / "entries" / key
        try:
            yield w
            t0 = time.perf_counter()
            w.close()
            rec = {"parts": parts, "meta": w.meta, "arrays": w.info(), "created": time.time(),
                   "bytes": w.nbytes, "source": dict(source or {}), "format": 2}
            _write_json(tmp / "meta.json", rec)
            if final.exists():  # a damaged or replaced entry
                _remove_tree(final, self.dir / "tmp")
            os.rename(tmp, final)
            _fsync_dir(final.parent)
        except BaseException as e:
            w.abort()
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(e, OSError) and not isinstance(e, CacheError) and _disk_full(e):
                raise self._write_error(e, Path(e.filename) if e.filename else tmp) from e
            raise
        for name in w.names:  # written and checksummed by this process: verified
            p = final / f"{name}.npy"
            _VERIFIED[str(p)] = _signature(p.stat())
        w.entry = _entry(key, final, rec)
        self._index_set(key, rec)
        w.commit_seconds = time.perf_counter() - t0

    def _write_error(self, e: OSError, path: Path) -> CacheError:
        if _disk_full(e):
            return CacheFull(f"disk full: cannot write {str(path)!r} ({_reason(e)}); free space there "
                             "or use another cache folder (--cache DIR)")
        if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return self._readonly_error(f"write {str(path)!r} ({_reason(e)})")
        return CacheError(f"cannot write {str(path)!r}: {_reason(e)}")

    # -- the index (a listing; never needed to read an entry) ------------------------
    def _open_index(self):
        if self._index is None:
            import diskcache
            self._index = diskcache.Cache(str(self.dir / "index"))
        return self._index

    @property
    def index(self):
        """The diskcache index (key -> record), opened (and if damaged, rebuilt) on first use."""
        try:
            return self._open_index()
        except sqlite3.DatabaseError as e:
            if _disk_full(e):
                raise CacheFull(f"disk full: cannot open the cache index {str(self.dir / 'index')!r}") from e
            self.rebuild_index(f"{e}")
            return self._open_index()

    def _index_set(self, key: str, rec: dict) -> None:
        try:
            self.index.set(key, rec)
        except (sqlite3.DatabaseError, OSError) as e:
            if _disk_full(e):
                raise CacheFull(f"disk full: cannot write the cache index {str(self.dir / 'index')!r} "
                                f"({e}); the entry {key[:12]} is stored, the index is rebuilt when there "
                                "is space; free space there or use another cache folder (--cache DIR)") from e
            self.rebuild_index(str(e))

    def _index_delete(self, key: str) -> None:
        try:
            self.index.delete(key)
        except (sqlite3.DatabaseError, OSError):
            self._close_index()  # out of step: ls rebuilds it

    def _close_index(self) -> None:
        if self._index is not None:
            try:
                self._index.close()
            except Exception:  # a damaged database may fail to close: it is replaced anyway
                pass
            self._index = None

    def rebuild_index(self, why: str = "") -> int:
        """Replace the index by one made from the entry folders' records; returns the number of
        entries indexed. Needs a writable cache."""
        if self.readonly:
            raise self._readonly_error("rebuild the index")
        self._close_index()
        index = self.dir / "index"
        if index.exists():
            _remove_tree(index, self.dir / "tmp")
        recs = self._scan()
        try:
            idx = self._open_index()
            for key, rec in recs.items():
                idx.set(key, rec)
        except (sqlite3.DatabaseError, OSError) as e:
            self._close_index()
            if _disk_full(e):
                raise CacheFull(f"disk full: cannot write the cache index {str(index)!r}; free space there "
                                "or use another cache folder (--cache DIR)") from e
            raise CacheError(f"cannot rebuild the cache index {str(index)!r}: {e}") from e
        if why:
            self.note(f"cache index {str(index)!r} was damaged or out of step ({why}); rebuilt from "
                      f"{len(recs)} entry folders")
        return len(recs)

    def _scan(self) -> dict[str, dict]:
        """key -> record of every entry folder whose record parses."""
        out = {}
        entries = self.dir / "entries"
        for p in sorted(entries.iterdir()) if entries.is_dir() else ():
            rec, problem = _read_record(p)
            if rec is not None and problem is None:
                out[p.name] = rec
        return out

    def _records(self) -> dict[str, dict]:
        """Every entry's record: from the index when it agrees with the entry folders, else
        from the folders (and the index is rebuilt when the cache is writable)."""
        entries = self.dir / "entries"
        folders = {p.name for p in entries.iterdir() if p.is_dir()} if entries.is_dir() else set()
        if not self.readonly:
            try:
                idx = self.index
                keys = set(idx.iterkeys())
                recs = {k: idx.get(k) for k in keys}
                if keys == {f for f in folders if (entries / f / "meta.json").is_file()} and all(
                        isinstance(r, dict) and isinstance(r.get("arrays"), dict) for r in recs.values()):
                    return recs
                self.rebuild_index("" if not keys or keys <= folders else "entries missing from disk")
                return {k: self.index.get(k) for k in self.index.iterkeys()}
            except (sqlite3.DatabaseError, OSError, CacheError) as e:
                if not isinstance(e, CacheFull):
                    try:
                        self.rebuild_index(str(e))
                        return {k: self.index.get(k) for k in self.index.iterkeys()}
                    except (sqlite3.DatabaseError, OSError):
                        pass
        return self._scan()

    # -- housekeeping --------------------------------------------------------------
    def ls(self, *, verify: bool = False) -> list[dict]:
        """One dict per entry: key, parts, size, creation time, data root (``data_root``, where
        recorded), ``valid`` (sizes and headers match the record; with ``verify=True`` also the
        checksums and values), ``problem`` (why not valid) and ``current_version``."""
        out = []
        for key, rec in self._records().items():
            if rec is None:
                continue
            path = self.dir / "entries" / key
            problem = self._check(path, rec, full=True, checksum=verify)
            if problem is None and verify:
                from .results import check_entry
                problem = check_entry(_entry(key, path, rec))
            out.append({"key": key, **rec["parts"], "bytes": rec.get("bytes", 0), "created": rec.get("created"),
                        "data_root": (rec.get("source") or {}).get("data_root"),
                        "valid": problem is None, "problem": problem,
                        "current_version": rec["parts"].get("version") == __version__})
        return sorted(out, key=lambda r: (str(r.get("category")), str(r.get("kind")), str(r.get("layer"))))

    def remove_leftovers(self) -> list[str]:
        """Remove ``tmp/`` folders of writes whose process is dead (this host's, or of unknown
        host); returns their names. Needs a writable cache."""
        removed = []
        tmp = self.dir / "tmp"
        for p in sorted(tmp.iterdir()) if tmp.is_dir() else ():
            pid, host = _writer_of(p.name)
            if host not in (None, _host()):
                continue
            if pid is not None and pid != os.getpid() and _pid_alive(pid):
                continue
            if pid == os.getpid():
                continue
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            if not p.exists():
                removed.append(p.name)
        return removed

    def clear(self) -> int:
        """Remove every entry, the index and every temporary folder; returns the number of entry
        folders removed. Works with a damaged index (it is not opened)."""
        if self.readonly:
            raise self._readonly_error("clear it")
        entries = self.dir / "entries"
        n = sum(1 for p in entries.iterdir() if p.is_dir()) if entries.is_dir() else 0
        self._close_index()
        for sub in ("entries", "tmp", "index"):
            try:
                shutil.rmtree(self.dir / sub)
            except FileNotFoundError:
                pass
            except OSError as e:
                raise CacheError(f"cannot remove {str(self.dir / sub)!r}: {_reason(e)}") from e
        for sub in ("entries", "tmp"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        return n

    def close(self) -> None:
        self._close_index()


def _entry(key: str, path: Path, rec: dict) -> Entry:
    return Entry(key, path, rec["parts"], rec["meta"], tuple(rec["arrays"]), dict(rec["arrays"]))


def _read_record(path: Path) -> tuple[dict | None, str | None]:
    """(record, None); (None, None) when there is no entry; (partial or None, problem) when it is damaged."""
    f = path / "meta.json"
    try:
        text = f.read_text()
    except FileNotFoundError:
        return None, None
    except OSError as e:
        return None, f"meta.json is unreadable ({_reason(e)})"
    try:
        rec = json.loads(text)
    except ValueError:
        return None, "meta.json is not valid JSON"
    if not isinstance(rec, dict) or not isinstance(rec.get("parts"), dict) or not isinstance(rec.get("meta"), dict):
        return None, "meta.json lacks parts or meta"
    arrays = rec.get("arrays")
    if not isinstance(arrays, dict):
        return rec, "written without checksums by an older mvgviz"
    for name, a in arrays.items():
        if not (isinstance(a, dict) and {"shape", "dtype", "bytes", "offset", "crc32"} <= set(a)):
            return rec, f"meta.json: no checksum for {name}"
    return rec, None


def _write_json(path: Path, obj) -> None:
    with open(path, "w") as f:
        f.write(json.dumps(obj, default=str))
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_tree(path: Path, aside: Path) -> None:
    """Remove a folder so that no reader sees it half removed: rename it aside first."""
    target = aside / f"{path.name}.removed.{uuid.uuid4().hex[:8]}"
    try:
        aside.mkdir(parents=True, exist_ok=True)
        os.rename(path, target)
    except FileNotFoundError:
        return
    except OSError:
        target = path
    shutil.rmtree(target)


def _host() -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname()) or "host"


def _writer_of(name: str) -> tuple[int | None, str | None]:
    """(pid, host) of a ``tmp/`` folder ``<key>.<pid>.<id>[.<host>]``; pid None: not a writer's
    folder (a removed entry set aside: always a leftover)."""
    parts = name.split(".")
    if len(parts) >= 3 and parts[1] == "removed":
        return None, None
    if len(parts) >= 3 and parts[1].isdigit():
        return int(parts[1]), (parts[3] if len(parts) >= 4 else None)
    return -1, "?"  # not ours: never touched


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


# ---------------------------------------------------------------------------------------
# Streamed arrays
# ---------------------------------------------------------------------------------------

class NpyAppender:
    """A ``.npy`` file of known shape written in order, chunk by chunk along axis 0.

    The header is written first; each :meth:`write` appends ``chunk`` (shape ``(n, *shape[1:])``)
    with a plain file write, so nothing is memory-mapped and resident memory stays at one chunk.
    The CRC-32 of the data bytes is computed as they are written (:attr:`crc32`; no second read).
    :meth:`close` checks that exactly ``shape[0]`` rows arrived and fsyncs the file. A failed
    write raises ``OSError`` naming the file.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype):
        self.path = path
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.rows = 0
        self.crc32 = 0
        self._f = open(path, "wb")
        with self._naming_errors():
            np.lib.format.write_array_header_1_0(
                self._f, {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                          "shape": self.shape})
            self.offset = self._f.tell()

    @contextmanager
    def _naming_errors(self):
        try:
            yield
        except OSError as e:
            if e.filename is None:
                raise OSError(e.errno, e.strerror or str(e), str(self.path)) from e
            raise

    @property
    def nbytes(self) -> int:
        """Size of the file when complete."""
        return self.offset + int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def write(self, chunk) -> None:
        chunk = np.ascontiguousarray(chunk, dtype=self.dtype)
        if chunk.shape[1:] != self.shape[1:] or self.rows + chunk.shape[0] > self.shape[0]:
            raise ValueError(f"chunk of shape {chunk.shape} does not fit {self.path.name} of shape "
                             f"{self.shape} after {self.rows} rows")
        data = memoryview(chunk).cast("B")
        with self._naming_errors():
            self._f.write(data)
        self.crc32 = zlib.crc32(data, self.crc32)
        self.rows += chunk.shape[0]

    def close(self) -> None:
        if self._f.closed:
            return
        if self.rows != self.shape[0]:
            self._f.close()
            raise ValueError(f"{self.path.name}: {self.rows} rows written, expected {self.shape[0]}")
        try:
            with self._naming_errors():
                self._f.flush()
                os.fsync(self._f.fileno())
        finally:
            self._f.close()


@dataclass
class EntryWriter:
    """The folder of an entry being written (see :meth:`Store.writer`)."""

    dir: Path
    meta: dict = field(default_factory=dict)
    names: list = field(default_factory=list)
    entry: "Entry | None" = None
    commit_seconds: float = 0.0  # fsync, rename and index of the finished entry
    _open: dict = field(default_factory=dict)

    def put(self, name: str, arr) -> None:
        """Write a whole (small) array."""
        arr = np.asarray(arr)
        if arr.ndim == 0:
            raise ValueError(f"array {name!r} must have at least one dimension")
        a = self.appender(name, arr.shape, arr.dtype)
        a.write(arr)
        a.close()

    def appender(self, name: str, shape, dtype) -> NpyAppender:
        """A streamed array ``name``: write its chunks in order, then it is closed with the entry
        (or earlier with ``.close()``, after which :meth:`read` can read it back)."""
        if name in self.names:
            raise ValueError(f"array {name!r} is already in this entry")
        a = NpyAppender(self.dir / f"{name}.npy", shape, dtype)
        self.names.append(name)
        self._open[name] = a
        return a

    def read(self, name: str) -> "NpyReader":
        """Read back a closed array of this entry in chunks, before the entry is committed."""
        a = self._open[name]
        if not a._f.closed:
            raise ValueError(f"array {name!r} is still being written")
        return NpyReader(a.path)

    @property
    def nbytes(self) -> int:
        return int(sum(int(np.prod(a.shape)) * a.dtype.itemsize for a in self._open.values()))

    def info(self) -> dict:
        """name -> shape, dtype, file size, header size and CRC-32 of every array (the record)."""
        return {name: {"shape": list(a.shape), "dtype": a.dtype.str, "bytes": a.nbytes, "offset": a.offset,
                       "crc32": a.crc32} for name, a in self._open.items()}

    def close(self) -> None:
        for a in self._open.values():
            a.close()

    def abort(self) -> None:
        for a in self._open.values():
            if not a._f.closed:
                a._f.close()


class NpyReader:
    """Chunks of a ``.npy`` file along axis 0, read with plain file reads (no memory map, so
    resident memory stays at one chunk however large the file is)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            shape, self.dtype, fortran, self.offset = _read_header(self.path)
        except ValueError as e:
            raise ValueError(f"{self.path}: {e}") from e
        if fortran:
            raise ValueError(f"{self.path}: Fortran-ordered arrays are not supported")
        self.shape = shape
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as a fresh, writable array."""
        stop = min(stop, self.shape[0])
        out = np.empty((max(stop - start, 0), *self.shape[1:]), dtype=self.dtype)
        with open(self.path, "rb") as f:
            f.seek(self.offset + start * self.row_bytes)
            n = f.readinto(memoryview(out).cast("B"))
        if n != out.nbytes:
            raise DamagedEntry(f"cache file {str(self.path)!r} is truncated ({n} of {out.nbytes} bytes at "
                               f"row {start}); run again to recompute it")
        return out

    def chunks(self, size: int) -> Iterator[np.ndarray]:
        for i in range(0, self.shape[0], size):
            yield self.rows(i, i + size)
