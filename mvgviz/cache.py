"""The on-disk store: a diskcache index of entries whose large arrays are ``.npy`` files.

Layout of a cache folder (default ``cache/``, or ``--cache DIR``)::

    index/             diskcache.Cache: key -> {"parts": ..., "meta": ..., "arrays": ...}
    entries/<key>/     one folder per entry: <name>.npy arrays and meta.json
    locks/<key>.lock   inter-process locks (filelock, released by the OS if a process dies)
    tmp/               entries being written

Keys are hashes of the entry's *parts* (data set fingerprint, category, backbone, weights
tag, layer, preprocessing, regulariser, package version ...). A mismatch in any part is a
miss, never an error.

Atomicity: arrays are written into ``tmp/``, flushed, renamed into ``entries/<key>``, and
only then is the index row written. An entry is valid only if its index row exists *and*
every array it lists is there; a fit killed midway leaves at most an orphan folder, which
reads as a miss and is replaced. Two processes filling the same entry serialise on the
entry's lock: the second one waits and then reads what the first wrote.

Arrays are read as memory maps (``np.load(mmap_mode="r")``), so a viewer reading one
component of a few images touches only those bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

import diskcache
import numpy as np
from filelock import FileLock

from . import __version__

DEFAULT_CACHE_DIR = Path(__file__).resolve().parent.parent / "cache"


def default_cache_dir() -> Path:
    """``$MVGVIZ_CACHE`` if set, else the repository's ``cache/`` folder."""
    env = os.environ.get("MVGVIZ_CACHE")
    return Path(env) if env else DEFAULT_CACHE_DIR


def make_key(parts: Mapping) -> str:
    """A stable hash of ``parts`` (JSON-serialisable) plus the package version."""
    payload = json.dumps({**parts, "mvgviz_version": __version__}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Entry:
    """A committed cache entry: metadata plus lazily memory-mapped arrays."""

    key: str
    path: Path
    parts: dict
    meta: dict
    arrays: tuple[str, ...]

    def array(self, name: str, *, mmap: bool = True) -> np.ndarray:
        if name not in self.arrays:
            raise KeyError(f"cache entry {self.key} has no array {name!r}; it has {', '.join(self.arrays)}")
        return np.load(self.path / f"{name}.npy", mmap_mode="r" if mmap else None)

    def reader(self, name: str) -> "NpyReader":
        """Array ``name`` read in chunks with plain file reads (streaming; no memory map)."""
        if name not in self.arrays:
            raise KeyError(f"cache entry {self.key} has no array {name!r}; it has {', '.join(self.arrays)}")
        return NpyReader(self.path / f"{name}.npy")


class Store:
    """A cache folder. Safe to share between processes."""

    def __init__(self, directory: str | os.PathLike | None = None):
        self.dir = Path(directory) if directory is not None else default_cache_dir()
        try:
            for sub in ("entries", "locks", "tmp"):
                (self.dir / sub).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(f"cannot create cache folder {str(self.dir)!r}: {e.strerror}") from e
        self.index = diskcache.Cache(str(self.dir / "index"))

    # -- reading -------------------------------------------------------------------
    def get(self, key: str) -> Entry | None:
        row = self.index.get(key)
        if row is None:
            return None
        path = self.dir / "entries" / key
        if not all((path / f"{a}.npy").is_file() for a in row["arrays"]):
            return None
        return Entry(key, path, row["parts"], row["meta"], tuple(row["arrays"]))

    def lock(self, key: str, timeout: float = -1) -> FileLock:
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
    def writer(self, key: str, parts: dict) -> Iterator["EntryWriter"]:
        """Write an entry array by array, large ones chunk by chunk (call it while holding
        ``lock(key)``). Everything is written into ``tmp/``; on a clean exit the files are
        fsynced, the folder is renamed into ``entries/<key>`` and only then indexed. On an
        exception nothing is left behind. After the block, ``writer.entry`` is the committed entry.
        """
        tmp = self.dir / "tmp" / f"{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        w = EntryWriter(tmp)
        try:
            yield w
            t0 = time.perf_counter()
            w.close()
            (tmp / "meta.json").write_text(json.dumps({"parts": parts, "meta": w.meta}, default=str))
            final = self.dir / "entries" / key
            if final.exists():  # an orphan from an interrupted write, or a replaced entry
                self.index.delete(key)
                shutil.rmtree(final)
            os.rename(tmp, final)
        except BaseException:
            w.abort()
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        row = {"parts": parts, "meta": w.meta, "arrays": list(w.names), "created": time.time(),
               "bytes": w.nbytes}
        self.index.set(key, row)
        w.entry = Entry(key, final, parts, w.meta, tuple(w.names))
        w.commit_seconds = time.perf_counter() - t0

    # -- housekeeping --------------------------------------------------------------
    def ls(self) -> list[dict]:
        """One dict per indexed entry: key, parts, size, creation time, validity."""
        out = []
        for key in self.index.iterkeys():
            row = self.index.get(key)
            if row is None:
                continue
            out.append({"key": key, **row["parts"], "bytes": row.get("bytes", 0),
                        "created": row.get("created"), "valid": self.get(key) is not None,
                        "current_version": row["parts"].get("version") == __version__})
        return sorted(out, key=lambda r: (str(r.get("category")), str(r.get("kind")), str(r.get("layer"))))

    def clear(self) -> int:
        """Remove every entry, orphan and temporary folder; returns the number of entries removed."""
        n = len(self.index)
        self.index.clear()
        for sub in ("entries", "tmp"):
            shutil.rmtree(self.dir / sub, ignore_errors=True)
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        return n

    def close(self) -> None:
        self.index.close()


# ---------------------------------------------------------------------------------------
# Streamed arrays
# ---------------------------------------------------------------------------------------

class NpyAppender:
    """A ``.npy`` file of known shape written in order, chunk by chunk along axis 0.

    The header is written first; each :meth:`write` appends ``chunk`` (shape ``(n, *shape[1:])``)
    with a plain file write, so nothing is memory-mapped and resident memory stays at one chunk.
    :meth:`close` checks that exactly ``shape[0]`` rows arrived and fsyncs the file.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype):
        self.path = path
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.rows = 0
        self._f = open(path, "wb")
        np.lib.format.write_array_header_1_0(
            self._f, {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                      "shape": self.shape})

    def write(self, chunk) -> None:
        chunk = np.ascontiguousarray(chunk, dtype=self.dtype)
        if chunk.shape[1:] != self.shape[1:] or self.rows + chunk.shape[0] > self.shape[0]:
            raise ValueError(f"chunk of shape {chunk.shape} does not fit {self.path.name} of shape "
                             f"{self.shape} after {self.rows} rows")
        self._f.write(chunk.data)
        self.rows += chunk.shape[0]

    def close(self) -> None:
        if self._f.closed:
            return
        if self.rows != self.shape[0]:
            self._f.close()
            raise ValueError(f"{self.path.name}: {self.rows} rows written, expected {self.shape[0]}")
        self._f.flush()
        os.fsync(self._f.fileno())
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
        a = self.appender(name, arr.shape if arr.ndim else (1,), arr.dtype)
        if arr.ndim == 0:
            raise ValueError(f"array {name!r} must have at least one dimension")
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
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in read:
                raise ValueError(f"{self.path}: unsupported .npy format version {version}")
            shape, fortran, dtype = read[version](f)
            self.offset = f.tell()
        if fortran:
            raise ValueError(f"{self.path}: Fortran-ordered arrays are not supported")
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
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
            raise OSError(f"{self.path}: truncated ({n} of {out.nbytes} bytes at row {start})")
        return out

    def chunks(self, size: int) -> Iterator[np.ndarray]:
        for i in range(0, self.shape[0], size):
            yield self.rows(i, i + size)
