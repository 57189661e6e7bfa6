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
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

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


class Store:
    """A cache folder. Safe to share between processes."""

    def __init__(self, directory: str | os.PathLike | None = None):
        self.dir = Path(directory) if directory is not None else default_cache_dir()
        try:
            for sub in ("entries", "locks", "tmp"):
                (self.dir / sub).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(f"--cache: cannot create cache folder {str(self.dir)!r}: {e.strerror}") from e
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
        tmp = self.dir / "tmp" / f"{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        try:
            for name, arr in arrays.items():
                with open(tmp / f"{name}.npy", "wb") as f:
                    np.save(f, np.ascontiguousarray(arr))
                    f.flush()
                    os.fsync(f.fileno())
            (tmp / "meta.json").write_text(json.dumps({"parts": parts, "meta": meta}, default=str))
            final = self.dir / "entries" / key
            if final.exists():  # an orphan from an interrupted write, or a replaced entry
                self.index.delete(key)
                shutil.rmtree(final)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        row = {"parts": parts, "meta": meta, "arrays": list(arrays), "created": time.time(),
               "bytes": int(sum(np.asarray(a).nbytes for a in arrays.values()))}
        self.index.set(key, row)
        return Entry(key, final, parts, meta, tuple(arrays))

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
