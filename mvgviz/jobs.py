"""Background jobs and the other logic of the Streamlit viewer that needs no Streamlit.

The viewer (``app.py``) only wires widgets to the functions here:

- :class:`AppConfig` / :func:`parse_app_args`: data roots, cache folder and options from
  ``streamlit run app.py -- --data ROOT --cache DIR`` or ``$MVGVIZ_DATA`` / ``$MVGVIZ_CACHE``;
- :func:`resolve_inside` and :func:`check_category_files`: the viewer reads only inside the
  configured data roots (plus the demo folder); every folder a person types is resolved
  (``Path.resolve``, symlinks followed) and refused when it lies outside;
- :func:`discover_categories`, :func:`needs_demo_data`, :func:`cache_notes`;
- :class:`Jobs`: a registry of background jobs (threads), one per key, shared by every
  browser session of the server process; each job reports its state (queued, running,
  done, failed), the current step and a monotone fraction through a :class:`JobProgress`
  (a :class:`mvgviz.progress.Progress`), and the error message on failure;
- :func:`model_job` / :func:`probe_model` / :func:`demo_job`: fitting a category (or
  reading it from the cache) and writing the demo data set as jobs;
- :func:`grid_file_bytes` / :func:`grid_manifest_bytes`: the current grid as PNG, PDF,
  SVG and its JSON manifest, for download buttons.

Jobs run one heavy computation at a time (``Jobs(slots=1)``): a second fit waits in the
``queued`` state. Two sessions asking for the same model get the same job; two processes
are kept apart by the cache's file locks.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Hashable, Mapping, Sequence

from .data import DataError, list_categories
from .progress import Progress

DEFAULT_BACKBONE = "efficientnet_lite0"
EXPORT_FORMATS = ("png", "pdf", "svg")
MIME = {"png": "image/png", "pdf": "application/pdf", "svg": "image/svg+xml",
        "json": "application/json"}

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
STATES = (QUEUED, RUNNING, DONE, FAILED)


class PathNotAllowed(DataError):
    """A folder or file resolves outside the viewer's allowed data roots."""


# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AppConfig:
    """Where the viewer reads data and keeps its cache.

    Attributes
    ----------
    data_roots
        Data roots given with ``--data`` (or ``$MVGVIZ_DATA``), absolute, in the given order.
    demo_root
        The demo folder (``<repo>/demo_data``): always allowed; generated when missing.
    cache
        Cache folder (``--cache``, ``$MVGVIZ_CACHE`` or the repository's ``cache/``).
    autofit
        Fit the default model (first category, default backbone) without a click when it
        is not cached (``--no-autofit`` / ``MVGVIZ_AUTOFIT=0`` turn it off).
    """

    data_roots: tuple[Path, ...]
    demo_root: Path
    cache: Path
    autofit: bool = True

    @property
    def roots(self) -> tuple[Path, ...]:
        """The roots a person can choose: the data roots, then the demo folder (no repeats)."""
        out: list[Path] = []
        for r in (*self.data_roots, self.demo_root):
            if all(_same_path(r, o) is False for o in out):
                out.append(r)
        return tuple(out)

    @property
    def allowed(self) -> tuple[Path, ...]:
        """The roots, resolved (symlinks followed): everything read must lie inside one."""
        return tuple(dict.fromkeys(Path(r).resolve() for r in self.roots))


def _same_path(a: Path, b: Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def parse_app_args(argv: Sequence[str], environ: Mapping[str, str] | None = None, *,
                   app_dir: str | os.PathLike) -> AppConfig:
    """Read the viewer's options; command-line arguments win over environment variables.

    Parameters
    ----------
    argv
        The script's arguments (``sys.argv[1:]``: what follows ``--`` in
        ``streamlit run app.py -- ...``). Unknown arguments are ignored (under pytest
        ``sys.argv`` is pytest's).
    environ
        ``os.environ`` by default: ``MVGVIZ_DATA`` (data roots separated by ``os.pathsep``),
        ``MVGVIZ_CACHE`` (cache folder), ``MVGVIZ_AUTOFIT`` (``0`` = no automatic fit).
    app_dir
        The folder of ``app.py``; the demo folder is ``<app_dir>/demo_data``.

    Options
    -------
    ``--data ROOT`` (repeatable), ``--cache DIR``, ``--no-autofit``.
    """
    from .cache import default_cache_dir
    env = os.environ if environ is None else environ
    p = argparse.ArgumentParser(prog="streamlit run app.py --", add_help=False, allow_abbrev=False)
    p.add_argument("--data", action="append", default=None)
    p.add_argument("--cache", default=None)
    p.add_argument("--no-autofit", action="store_true")
    args, _ = p.parse_known_args(list(argv))
    if args.data:
        roots = [r for item in args.data for r in item.split(os.pathsep) if r.strip()]
    else:
        roots = [r for r in env.get("MVGVIZ_DATA", "").split(os.pathsep) if r.strip()]
    cache = args.cache or env.get("MVGVIZ_CACHE") or str(default_cache_dir())
    autofit = not args.no_autofit and env.get("MVGVIZ_AUTOFIT", "1").strip().lower() not in ("0", "false", "no")
    return AppConfig(data_roots=tuple(Path(r).expanduser().absolute() for r in roots),
                     demo_root=Path(app_dir).absolute() / "demo_data",
                     cache=Path(cache).expanduser().absolute(), autofit=autofit)


# ---------------------------------------------------------------------------------------
# Paths: read only inside the allowed roots
# ---------------------------------------------------------------------------------------

def resolve_inside(path: str | os.PathLike, allowed: Sequence[Path]) -> Path:
    """Resolve ``path`` (``~`` expanded, symlinks followed) and check it lies in a root.

    Returns the resolved path. Raises :class:`PathNotAllowed` naming the path, what it
    resolves to and the allowed roots.
    """
    text = str(path).strip()
    if not text:
        raise PathNotAllowed("folder: empty path")
    if "\x00" in text:
        raise PathNotAllowed(f"folder {text!r}: contains a NUL character")
    resolved = Path(text).expanduser().resolve()
    for root in allowed:
        r = Path(root).resolve()
        if resolved == r or resolved.is_relative_to(r):
            return resolved
    shown = f" (resolves to {str(resolved)!r})" if str(resolved) != text else ""
    raise PathNotAllowed(f"folder {text!r}{shown} is outside the allowed data roots: "
                         f"{', '.join(str(Path(a)) for a in allowed)}. Start the viewer with "
                         "`streamlit run app.py -- --data ROOT` to allow another root.")


def needs_demo_data(root: str | os.PathLike) -> bool:
    """True when ``root`` does not exist or is an empty folder: the viewer writes the demo
    data set there. A folder with content but no category is an error instead."""
    root = Path(root)
    if not root.exists():
        return True
    return root.is_dir() and not any(root.iterdir())


@dataclass(frozen=True)
class Categories:
    """Categories of a data root: usable ``names`` and ``skipped`` ones with the reason."""

    names: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...] = ()


def discover_categories(root: str | os.PathLike, allowed: Sequence[Path]) -> Categories:
    """Sub-folders of ``root`` with ``train/good``, sorted; hidden ones (``.name``) are
    ignored, those resolving outside the allowed roots (symlinks) are skipped. Raises
    DataError when ``root`` is not a folder, :class:`PathNotAllowed` when it lies outside."""
    root = resolve_inside(root, allowed)
    names, skipped = [], []
    for name in list_categories(root):  # hidden folders (a demo category being written) excluded
        try:
            resolve_inside(root / name, allowed)
        except PathNotAllowed:
            skipped.append((name, f"{name!r} resolves to {str((root / name).resolve())!r}, "
                                  "outside the allowed data roots"))
            continue
        names.append(name)
    return Categories(tuple(names), tuple(skipped))


def no_category_message(root: str | os.PathLike) -> str:
    return (f"no category in data root {str(root)!r}: expected the MVTec AD layout "
            "<root>/<category>/train/good/*.png, test/<defect or good>/*.png, "
            "ground_truth/<defect>/<name>_mask.png")


def check_category_files(root: str | os.PathLike, category: str, allowed: Sequence[Path]) -> None:
    """Refuse a category with a file or folder (symlink) that resolves outside the roots."""
    cat = resolve_inside(Path(root) / category, allowed)
    for dirpath, dirnames, filenames in os.walk(cat, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p.is_symlink():
                resolve_inside(p, allowed)  # raises PathNotAllowed


# ---------------------------------------------------------------------------------------
# Progress of a job
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class JobStatus:
    """A snapshot of a job, safe to read from any thread."""

    key: Hashable
    label: str
    state: str
    step: str
    fraction: float
    error: str | None
    created: float
    started: float | None
    finished: float | None
    messages: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return self.state in (QUEUED, RUNNING)

    @property
    def elapsed(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.time()) - self.started


class JobProgress(Progress):
    """Thread-safe progress: current step text and an overall fraction that never decreases.

    ``plan`` maps a task name (or the prefix before a space, e.g. ``"ranking"`` for
    ``"ranking _blocks[2]"``) to its ``(start, end)`` share of the whole job; a task
    advances the fraction linearly from start to end when it has a total, or jumps to
    end when it finishes. Tasks not in the plan leave the fraction unchanged.
    """

    def __init__(self, plan: Mapping[str, tuple[float, float]] | None = None):
        super().__init__()
        self._lock = threading.Lock()
        self._plan = dict(plan or {})
        self._fraction = 0.0
        self._step = ""
        self._messages: list[str] = []
        self.history: list[float] = []  # every fraction reported, for tests and diagnostics

    # -- the Progress hooks ------------------------------------------------------------
    def start(self, name, total):
        handle = {"name": name, "total": total, "done": 0}
        self._report(name, total, 0)
        return handle

    def advance(self, handle, n):
        handle["done"] += n
        self._report(handle["name"], handle["total"], handle["done"])

    def finish(self, handle):
        span = self._span(handle["name"])
        with self._lock:
            if span is not None:
                self._set(span[1])

    def message(self, text):
        with self._lock:
            self._messages.append(str(text))

    # -- other sources (the demo generator's callback) --------------------------------
    def update(self, done: int, total: int, text: str = "") -> None:
        """Set the step text and the fraction ``done / total`` directly."""
        with self._lock:
            self._step = text
            if total:
                self._set(done / total)

    def complete(self) -> None:
        with self._lock:
            self._set(1.0)

    # -- reading -----------------------------------------------------------------------
    @property
    def fraction(self) -> float:
        with self._lock:
            return self._fraction

    @property
    def step(self) -> str:
        with self._lock:
            return self._step

    @property
    def messages(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._messages)

    # -- internals ---------------------------------------------------------------------
    def _span(self, name: str) -> tuple[float, float] | None:
        return self._plan.get(name) or self._plan.get(name.split(" ", 1)[0])

    def _report(self, name: str, total, done: int) -> None:
        span = self._span(name)
        with self._lock:
            self._step = f"{name} ({done}/{total})" if total else name
            if span is not None:
                a, b = span
                f = min(done / total, 1.0) if total else 0.0
                self._set(a + (b - a) * f)

    def _set(self, value: float) -> None:  # call with the lock held
        value = min(max(float(value), 0.0), 1.0)
        if value > self._fraction:
            self._fraction = value
        self.history.append(self._fraction)


class FitProgress(JobProgress):
    """Progress of :func:`mvgviz.pipeline.fit`: decode 0-15 %, backbone 15-35 %, then the
    layers share 35-100 % equally, in the order they start. A layer reports either one
    task ``"layer <name>"`` with a total (its sub-steps), or separate tasks ``"fit <name>"``,
    ``"whitening <name>"``, ``"metrics <name>"``, ``"ranking <name>"`` (10/20/10/60 % of
    its share)."""

    _LAYER_STEPS = {"layer": (0.0, 1.0), "fit": (0.0, 0.1), "whitening": (0.1, 0.3),
                    "metrics": (0.3, 0.4), "ranking": (0.4, 1.0)}

    def __init__(self, n_layers: int):
        super().__init__({"decode": (0.0, 0.15), "backbone": (0.15, 0.35)})
        self.n_layers = max(int(n_layers), 1)
        self._layers: list[str] = []
        self._layers_lock = threading.Lock()

    def _span(self, name: str):
        kind, _, layer = name.partition(" ")
        if kind in self._LAYER_STEPS and layer:
            with self._layers_lock:
                if layer not in self._layers:
                    self._layers.append(layer)
                k = self._layers.index(layer)
                n = max(self.n_layers, len(self._layers))
            width = 0.65 / n
            a0 = 0.35 + width * k
            lo, hi = self._LAYER_STEPS[kind]
            return (a0 + width * lo, a0 + width * hi)
        return super()._span(name)


class NotCached(Exception):
    """The model is not (completely) in the cache."""


def _load_cached(jobs: "Jobs", key: "ModelKey"):
    """The cached model (:func:`mvgviz.pipeline.load`: no computing, no lock, no torch), else
    NotCached, or the missing-weights error when a fit could not start."""
    from .pipeline import load
    from .backbones import check_weights_available
    model = load(key.root, key.category, backbone=key.backbone, cache=jobs.store(key.cache))
    if model is None:
        check_weights_available(key.backbone, None)  # say now that a fit could not even start
        raise NotCached(key.label)
    return model


# ---------------------------------------------------------------------------------------
# Jobs
# ---------------------------------------------------------------------------------------

def error_message(e: BaseException) -> str:
    """One readable line for the page: the message of our own errors, else type: message."""
    if isinstance(e, KeyError) and e.args:
        return str(e.args[0])
    if isinstance(e, (ValueError, OSError)) and str(e):
        return str(e)
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


_MD_SPECIAL = "\\`*_[]{}<>#|~$"


def escape_markdown(text: str) -> str:
    """Show ``text`` literally in Streamlit markdown (error messages hold paths with ``_``,
    globs with ``*``, layer names with ``[ ]``)."""
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in str(text))


class Job:
    """One background computation: ``fn(progress) -> result`` in its own thread."""

    def __init__(self, key: Hashable, label: str, fn: Callable[[JobProgress], Any],
                 progress: JobProgress, *, exclusive: bool):
        self.key, self.label, self.progress = key, label, progress
        self._fn, self.exclusive = fn, exclusive
        self._state = QUEUED
        self.result: Any = None
        self.error: str | None = None
        self.exception: BaseException | None = None
        self.created = time.time()
        self.started: float | None = None
        self.finished: float | None = None
        self._event = threading.Event()
        self.thread: threading.Thread | None = None

    @property
    def state(self) -> str:
        return self._state

    def status(self) -> JobStatus:
        return JobStatus(key=self.key, label=self.label, state=self._state, step=self.progress.step,
                         fraction=self.progress.fraction, error=self.error, created=self.created,
                         started=self.started, finished=self.finished, messages=self.progress.messages)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job is done or failed; False on timeout."""
        return self._event.wait(timeout)

    def _run(self, slot: threading.Semaphore) -> None:
        acquired = False
        try:
            if self.exclusive:
                slot.acquire()
                acquired = True
            self.started = time.time()
            self._state = RUNNING
            self.result = self._fn(self.progress)
            self.progress.complete()
            self._state = DONE
        except BaseException as e:  # the thread must record every failure
            self.exception = e
            self.error = error_message(e)
            self._state = FAILED
        finally:
            if acquired:
                slot.release()
            if self.started is None:
                self.started = time.time()
            self.finished = time.time()
            self._event.set()


class Jobs:
    """A registry of background jobs keyed by what they compute; thread-safe.

    ``submit(key, fn)`` starts ``fn`` in a daemon thread unless a job with ``key`` is
    already queued, running or done (then that job is returned: sessions share it); a
    failed job is replaced by a new attempt. ``slots`` exclusive jobs run at a time.
    """

    def __init__(self, *, slots: int = 1):
        self._lock = threading.Lock()
        self._jobs: dict[Hashable, Job] = {}
        self._slot = threading.Semaphore(slots)
        self._stores: dict[str, Any] = {}

    def submit(self, key: Hashable, fn: Callable[[JobProgress], Any], *, label: str = "",
               progress: JobProgress | None = None, exclusive: bool = True,
               retry_failed: bool = True) -> Job:
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and not (retry_failed and job.state == FAILED):
                return job
            job = Job(key, label or str(key), fn, progress or JobProgress(), exclusive=exclusive)
            self._jobs[key] = job
            job.thread = threading.Thread(target=job._run, args=(self._slot,), daemon=True,
                                          name=f"mvgviz-job {job.label}")
            job.thread.start()
            return job

    def add_done(self, key: Hashable, result: Any, *, label: str = "") -> Job:
        """Register a finished job (e.g. a model found in the cache); keeps a live one."""
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and job.state != FAILED:
                return job
            job = Job(key, label or str(key), lambda p: result, JobProgress(), exclusive=False)
            job.result, job._state = result, DONE
            job.started = job.finished = time.time()
            job.progress.complete()
            job._event.set()
            self._jobs[key] = job
            return job

    def get(self, key: Hashable) -> Job | None:
        with self._lock:
            return self._jobs.get(key)

    def forget(self, key: Hashable) -> None:
        """Drop a finished job (a running one keeps running but is no longer listed)."""
        with self._lock:
            self._jobs.pop(key, None)

    def statuses(self) -> list[JobStatus]:
        with self._lock:
            jobs = list(self._jobs.values())
        return [j.status() for j in jobs]

    def store(self, cache: str | os.PathLike):
        """One :class:`mvgviz.cache.Store` per cache folder, shared by all jobs."""
        from .cache import Store
        key = str(Path(cache).absolute())
        with self._lock:
            if key not in self._stores:
                self._stores[key] = Store(key)
            return self._stores[key]


# ---------------------------------------------------------------------------------------
# Model jobs
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelKey:
    """What identifies a fitted model in the viewer (and its job)."""

    root: str
    category: str
    backbone: str
    cache: str

    @property
    def label(self) -> str:
        return f"{self.category} / {self.backbone}"

    def job_key(self) -> tuple:
        return ("fit", self.root, self.category, self.backbone, self.cache)


def _fit(jobs: Jobs, key: ModelKey, progress: Progress, allowed: Sequence[Path] | None):
    from .pipeline import fit
    if allowed is not None:
        check_category_files(key.root, key.category, allowed)
    return fit(key.root, key.category, backbone=key.backbone, cache=jobs.store(key.cache),
               device="auto", progress=progress)


def model_job(jobs: Jobs, key: ModelKey, *, allowed: Sequence[Path] | None = None) -> Job:
    """Fit (or read from the cache) a model in the background; the job's result is the
    :class:`mvgviz.pipeline.Model`. A done job is reused; a failed one is retried."""
    from .backbones import get_spec
    n_layers = len(get_spec(key.backbone).layers)
    return jobs.submit(key.job_key(), lambda p: _fit(jobs, key, p, allowed), label=f"fit {key.label}",
                       progress=FitProgress(n_layers))


@dataclass(frozen=True)
class Probe:
    """Whether a model is in the cache: ``state`` is ``"cached"`` (``model`` set),
    ``"missing"``, ``"busy"`` (the cache entry is locked by a fit elsewhere) or
    ``"error"`` (``error`` says why, e.g. missing backbone weights)."""

    state: str
    model: Any = None
    error: str | None = None


def probe_key(key: ModelKey) -> tuple:
    """The job key of :func:`probe_model`'s look-up of ``key``."""
    return ("probe",) + key.job_key()


def probe_model(jobs: Jobs, key: ModelKey, *, timeout: float = 3.0) -> Probe:
    """Read a model from the cache without computing anything.

    A cached model is registered as a done job under ``key.job_key()``, so later calls of
    :func:`model_job` return it at once. Runs in a thread and gives up after ``timeout``
    seconds (``"busy"``): the cache's lock of an entry being written by another process
    must not block the page.
    """
    job = jobs.get(key.job_key())
    if job is not None and job.state == DONE:
        return Probe("cached", job.result)
    pkey = probe_key(key)
    probe = jobs.submit(pkey, lambda p: _load_cached(jobs, key), label=f"probe {key.label}",
                        exclusive=False)
    if not probe.wait(timeout):
        return Probe("busy")
    jobs.forget(pkey)
    if probe.state == DONE:
        jobs.add_done(key.job_key(), probe.result, label=f"fit {key.label}")
        return Probe("cached", probe.result)
    if isinstance(probe.exception, NotCached):
        return Probe("missing")
    return Probe("error", error=probe.error)


def demo_job(jobs: Jobs, root: str | os.PathLike) -> Job:
    """Write the demo data set (:func:`mvgviz.demo.make_demo_dataset`) into ``root``."""
    from .demo import make_demo_dataset
    root = Path(root)

    def run(progress: JobProgress):
        def cb(done, total, message=""):
            progress.update(done, total, f"{done}/{total} images ({message})")
        return make_demo_dataset(root, progress=cb)

    key = ("demo", str(root))
    old = jobs.get(key)
    if old is not None and old.state == DONE and needs_demo_data(root):
        jobs.forget(key)  # written once, deleted since: write it again
    return jobs.submit(key, run, label=f"demo data in {root}")


def demo_running(jobs: Jobs, root: str | os.PathLike) -> bool:
    """Whether the demo data set is being written into ``root`` (its folder then holds
    partial, hidden category folders that must not be read)."""
    job = jobs.get(("demo", str(Path(root))))
    return job is not None and job.state in (QUEUED, RUNNING)


def cache_notes(store, root: str | os.PathLike, category: str, backbone: str) -> list[str]:
    """Why an uncached model may have left traces in the cache: entries of an older
    mvgviz version, or of data that changed since. The engine treats both as a miss."""
    from . import __version__
    rows = [r for r in store.ls() if r.get("kind") == "layer" and r.get("category") == category
            and r.get("backbone") == backbone]
    notes = []
    old = sorted({str(r.get("version")) for r in rows if not r.get("current_version")})
    if old:
        notes.append(f"The cache holds {category} / {backbone} results of an older mvgviz version "
                     f"({', '.join(old)}; this is {__version__}): they are not used, fitting will refit.")
    current = [r for r in rows if r.get("current_version")]
    if current:
        try:
            from .data import load_category
            fp = load_category(root, category).fingerprint
        except (DataError, OSError):
            fp = None
        if fp is not None and all(r.get("dataset") != fp for r in current):
            notes.append(f"The cache holds {category} / {backbone} results for other files of this "
                         "category (the data changed since): fitting will refit.")
    return notes


# ---------------------------------------------------------------------------------------
# Selections and export
# ---------------------------------------------------------------------------------------

def merge_components(current: Sequence[int], new: Sequence[int]) -> str:
    """Text for the component box: ``current`` then the ``new`` ones not yet in it."""
    out = list(dict.fromkeys([int(c) for c in current] + [int(c) for c in new]))
    return ",".join(map(str, out))


def image_choices(defect_types: Sequence[str]) -> list[str]:
    """Filter options of the image picker: every image, any defect, then each type."""
    from .render import ANY_DEFECT
    types = sorted(set(defect_types))
    extra = [ANY_DEFECT] if any(t != "good" for t in types) and ANY_DEFECT not in types else []
    return ["all images"] + extra + types


def grid_file_bytes(model, spec, fmt: str) -> bytes:
    """The grid as a publication figure file (``png``, ``pdf`` or ``svg``)."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"`fmt` must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    try:
        from .export import export_figure
    except ImportError:
        export_figure = None
    if export_figure is not None:
        with tempfile.TemporaryDirectory(prefix="mvgviz-export-") as tmp:
            paths = export_figure(model, spec, Path(tmp) / f"grid.{fmt}")
            for p in paths:
                if Path(p).suffix.lower() == f".{fmt}":
                    return Path(p).read_bytes()
            raise RuntimeError(f"export_figure wrote no .{fmt} file (it wrote {', '.join(map(str, paths))})")
    import io

    from .render import grid_data, render_figure
    fig = render_figure(grid_data(model, spec))
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=200)
    return buf.getvalue()


def grid_manifest_bytes(model, spec) -> bytes:
    """The JSON manifest of the grid (what :func:`mvgviz.export.figure_from_manifest` reads)."""
    try:
        from .export import manifest
    except ImportError:
        manifest = None
    if manifest is not None:
        d = manifest(model, spec)
    else:
        from . import __version__
        d = {"mvgviz_version": __version__, "root": str(model.root), "category": model.category,
             "backbone": model.backbone, "weights": model.weights, "reg": model.reg,
             "spec": spec.to_dict()}
    return (json.dumps(d, indent=1, default=str) + "\n").encode()


def export_name(model, spec) -> str:
    """A file stem for downloads: ``brick_efficientnet_lite0_blocks10_test``."""
    layer = "".join(ch for ch in spec.layer if ch.isalnum())
    return f"{model.category}_{model.backbone}_{layer}_{spec.split}"


# ---------------------------------------------------------------------------------------
# Tables of the pages (plain dicts of columns; st.dataframe shows them)
# ---------------------------------------------------------------------------------------

def overview_table(model) -> dict[str, list]:
    """One row per layer: size, channels, the four metrics, and how far whitened test
    values go beyond the [0, 9] range expected of Gaussian features."""
    cols: dict[str, list] = {k: [] for k in (
        "layer", "feature size", "channels", "image AUROC", "pixel AUROC", "AUPR", "AUPRO",
        "max y2 (test)", "p99 of all y2 (test)", "p99 of M2 (test)")}
    for lm in model.layers.values():
        m, st_test = lm.metrics, lm.stats("test")
        h, w = lm.feature_size
        cols["layer"].append(lm.name)
        cols["feature size"].append(f"{h}x{w} (1 cell = {model.image_size // max(h, 1)} px)")
        cols["channels"].append(int(lm.channels))
        cols["image AUROC"].append(float(m["image_auroc"]))
        cols["pixel AUROC"].append(float(m["pixel_auroc"]))
        cols["AUPR"].append(float(m["pixel_aupr"]))
        cols["AUPRO"].append(float(m["aupro"]))
        ext = max(float(abs(st_test.y_min).max()), float(abs(st_test.y_max).max()))
        cols["max y2 (test)"].append(ext ** 2)
        cols["p99 of all y2 (test)"].append(float(st_test.cross_component_p99))
        cols["p99 of M2 (test)"].append(float(st_test.m2_p99))
    return cols


def overview_notes(model) -> list[str]:
    """What the paper observed, made concrete for this model."""
    notes = []
    coarse = [lm for lm in model.layers.values() if lm.feature_size[0] and model.image_size // lm.feature_size[0] >= 16]
    for lm in coarse:
        h, w = lm.feature_size
        s = model.image_size // h
        notes.append(f"Resolution: {lm.name} is {h}x{w}, one feature cell covers {s}x{s} input pixels; "
                     "its heatmaps are blurred bilinear blow-ups (see the Grid).")
    for lm in model.layers.values():
        tr = lm.stats("train")
        ext = max(float(abs(tr.y_min).max()), float(abs(tr.y_max).max())) ** 2
        if ext > 9:
            notes.append(f"Value range: on its own training data, {lm.name} reaches y2 = {ext:.3g} "
                         "(a Gaussian would keep 99.7 % of values in [0, 9]).")
    best = max(model.layers.values(), key=lambda lm: lm.metrics["pixel_auroc"])
    notes.append(f"Best layer by pixel AUROC: {best.name} ({best.metrics['pixel_auroc']:.3f}).")
    return notes


def component_table(layer) -> dict[str, list]:
    """One row per component (row i = component i): eigenvalue, single-component AUROC,
    its rank, and the colour-scale statistics of both splits."""
    import numpy as np
    c = int(layer.channels)
    rank = np.empty(c, dtype=np.int64)
    rank[layer.ranking()] = np.arange(1, c + 1)
    te, tr = layer.stats("test"), layer.stats("train")
    return {"component": list(range(c)), "eigenvalue": [float(v) for v in layer.eigvals],
            "AUROC": [float(v) for v in layer.component_auroc], "rank": rank.tolist(),
            "p99 y2 test": [float(v) for v in te.per_component_p99],
            "p99 y2 train": [float(v) for v in tr.per_component_p99],
            "mean y2 test": [float(v) for v in te.y2_mean]}


def decomposition_table(decomp, layer) -> dict[str, list]:
    """The top components of a pixel decomposition with their share and AUROC."""
    top = list(decomp.top)
    shares = decomp.shares
    return {"component": top, "y2 at pixel": [float(decomp.y2[c]) for c in top],
            "share of M2": [f"{shares[c]:.1%}" for c in top],
            "AUROC": [float(layer.component_auroc[c]) for c in top],
            "eigenvalue": [float(layer.eigvals[c]) for c in top]}
