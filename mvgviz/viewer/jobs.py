"""Background jobs of the viewer: fitting a category (or reading it from the cache) and
writing the demo data set, with progress. No Streamlit.

:class:`Jobs` is a registry of background jobs (threads), one per key, shared by every
browser session of the server process; each job reports its state (queued, running,
done, failed), the current step and a monotone fraction through a :class:`JobProgress`
(a :class:`mvgviz.progress.Progress`), and the error message on failure.
:func:`model_job` / :func:`probe_model` / :func:`demo_job` are the jobs the viewer runs.

Jobs run one heavy computation at a time (``Jobs(slots=1)``): a second fit waits in the
``queued`` state. Two sessions asking for the same model get the same job; two processes
are kept apart by the cache's file locks.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Hashable, Mapping, Sequence

from ..progress import Progress
from .config import check_category_files, needs_demo_data
from .tables import error_message

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
STATES = (QUEUED, RUNNING, DONE, FAILED)


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
    def waiting(self) -> bool:
        """Queued behind another exclusive job."""
        return self.state == QUEUED

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


# ---------------------------------------------------------------------------------------
# Jobs
# ---------------------------------------------------------------------------------------

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
        from ..cache import Store
        key = str(Path(cache).absolute())
        with self._lock:
            if key not in self._stores:
                self._stores[key] = Store(key)
            return self._stores[key]


# ---------------------------------------------------------------------------------------
# Model jobs
# ---------------------------------------------------------------------------------------

class NotCached(Exception):
    """The model is not (completely) in the cache."""


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


def _load_cached(jobs: "Jobs", key: "ModelKey", allowed: Sequence[Path] | None = None):
    """The cached model (:func:`mvgviz.pipeline.load`: no computing, no lock, no torch), else
    NotCached, or the missing-weights error when a fit could not start.

    ``allowed``: the same confinement as :func:`_fit`: a category with a file or folder that
    resolves outside these roots is refused (:class:`PathNotAllowed`) before the cache is read,
    so that a model fitted elsewhere (the CLI) into the same cache cannot show such files."""
    from ..pipeline import load
    from ..backbones import check_weights_available
    if allowed is not None:
        check_category_files(key.root, key.category, allowed)
    model = with_labels_or_without(load, key.root, key.category, backbone=key.backbone, cache=jobs.store(key.cache))
    if model is None:
        check_weights_available(key.backbone, None)  # say now that a fit could not even start
        raise NotCached(key.label)
    return model


def _fit(jobs: Jobs, key: ModelKey, progress: Progress, allowed: Sequence[Path] | None):
    from ..pipeline import fit
    if allowed is not None:
        check_category_files(key.root, key.category, allowed)
    return with_labels_or_without(fit, key.root, key.category, backbone=key.backbone,
                                  cache=jobs.store(key.cache), device="auto", progress=progress)


def with_labels_or_without(fn, root, category, **kw):
    """``fn(root, category, **kw)`` (``fit`` or ``load``) on labelled data; a category whose test
    split lacks labels or masks (:class:`mvgviz.data.MissingLabels`) is taken as unlabelled data
    instead: it is fitted and explored, and its metrics say why they are not available."""
    from ..data import MissingLabels
    try:
        return fn(root, category, **kw)
    except MissingLabels:
        return fn(root, category, unlabelled=True, **kw)


def model_job(jobs: Jobs, key: ModelKey, *, allowed: Sequence[Path] | None = None) -> Job:
    """Fit (or read from the cache) a model in the background; the job's result is the
    :class:`mvgviz.pipeline.Model`. A done job is reused; a failed one is retried."""
    from ..backbones import get_spec
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


def probe_model(jobs: Jobs, key: ModelKey, *, allowed: Sequence[Path] | None = None,
                timeout: float = 3.0) -> Probe:
    """Read a model from the cache without computing anything.

    ``allowed``: the viewer's roots; a category with a file that resolves outside them is an
    ``"error"`` probe, whether or not the cache holds its model (as :func:`model_job` refuses
    to fit it).

    A cached model is registered as a done job under ``key.job_key()``, so later calls of
    :func:`model_job` return it at once. Runs in a thread and gives up after ``timeout``
    seconds (``"busy"``): the cache's lock of an entry being written by another process
    must not block the page.
    """
    job = jobs.get(key.job_key())
    if job is not None and job.state == DONE:
        return Probe("cached", job.result)
    pkey = probe_key(key)
    probe = jobs.submit(pkey, lambda p: _load_cached(jobs, key, allowed), label=f"probe {key.label}",
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
    from ..demo import make_demo_dataset
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
