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
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Hashable, Mapping, Sequence, TextIO

from ..progress import Progress
from ..data import DataError
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

    @property
    def seconds_left(self) -> float | None:
        """Estimated seconds until the job is done: the elapsed time scaled by the fraction
        still to go (the fraction is weighted by each step's measured cost, see
        :class:`FitProgress`). None while running for under 2 s or below 2 %, and when not running."""
        return estimate_left(self.elapsed, self.fraction) if self.state == RUNNING else None


def estimate_left(elapsed: float, fraction: float) -> float | None:
    """``elapsed * (1 - fraction) / fraction``: seconds left at a constant rate; None when
    too early to tell (under 2 s or 2 %)."""
    if elapsed < 2.0 or fraction < 0.02:
        return None
    return max(elapsed * (1.0 - min(fraction, 1.0)) / fraction, 0.0)


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
        self.echo: Callable[[str], None] | None = None  # set by Jobs: one line to the terminal
        self.echo_every = 2.0                          # seconds between lines of the same step
        self._echoed = (0.0, "")                       # (time, task) of the last line
        self.started_at: float | None = None

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
        if self.echo is not None:
            self.echo(str(text))

    # -- other sources (the demo generator's callback) --------------------------------
    def update(self, done: int, total: int, text: str = "") -> None:
        """Set the step text and the fraction ``done / total`` directly."""
        with self._lock:
            self._step = text
            if total:
                self._set(done / total)
        self._echo_progress("update")

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
        self._echo_progress(name)

    def _echo_progress(self, task: str) -> None:
        """A progress line for the terminal when a new task starts, else every ``echo_every`` s."""
        if self.echo is None:
            return
        now = time.time()
        last_t, last_task = self._echoed
        if task == last_task and now - last_t < self.echo_every:
            return
        self._echoed = (now, task)
        elapsed = now - self.started_at if self.started_at else 0.0
        left = estimate_left(elapsed, self.fraction)
        self.echo(f"{self.step} {self.fraction:.0%}, {elapsed:.0f} s"
                  + (f", about {left:.0f} s left" if left is not None else ""))

    def _set(self, value: float) -> None:  # call with the lock held
        value = min(max(float(value), 0.0), 1.0)
        if value > self._fraction:
            self._fraction = value
        self.history.append(self._fraction)


# Measured cost of each step of a fit, in seconds of a default fit of the demo data (brick,
# 40 + 34 images, efficientnet_lite0, 1 CPU thread, Model.timings of 2026-12-02): decode 0.25,
# backbone 1.34, and per layer "layer <name>" 0.21 (_blocks[4], 40 channels @ 28x28), 0.44
# (_blocks[10], 112 @ 14x14), 0.75 (_blocks[15], 320 @ 7x7). A layer's cost is mostly the
# ranking (one full-size map per component: ~channels) plus whitening (~channels x positions):
# cost ~ channels x (positions + _LAYER_POSITIONS_PER_MAP), 2.34e-6 s per unit here. Every
# step scales with the number of images, so the shares hold for any data set. Other backbones
# scale the backbone's cost by their multiply-adds at 224x224 (GMACs).
_COST_DECODE = 0.25
_COST_BACKBONE = 1.34
_BACKBONE_GMACS = {"efficientnet_lite0": 0.40, "resnet18": 1.82, "wide_resnet50_2": 11.4}
_LAYER_POSITIONS_PER_MAP = 950
_COST_PER_LAYER_UNIT = 2.34e-6


class FitProgress(JobProgress):
    """Progress of :func:`mvgviz.pipeline.fit` in shares of the whole: decode, backbone, then
    one share per layer, in the order the layers start. A layer reports either one task
    ``"layer <name>"`` with a total (its sub-steps), or separate tasks ``"fit <name>"``,
    ``"whitening <name>"``, ``"metrics <name>"``, ``"ranking <name>"`` (10/20/10/60 % of
    its share).

    ``FitProgress(n_layers)`` uses fixed shares (decode 0-15 %, backbone 15-35 %, the layers
    share the rest equally); :meth:`for_backbone` weights every share by the step's measured
    cost (what :func:`model_job` uses), so that the bar moves at a steady pace.
    """

    _LAYER_STEPS = {"layer": (0.0, 1.0), "fit": (0.0, 0.1), "whitening": (0.1, 0.3),
                    "metrics": (0.3, 0.4), "ranking": (0.4, 1.0)}

    def __init__(self, n_layers: int, *, decode: float = 0.15, backbone: float = 0.35,
                 layer_weights: Mapping[str, float] | None = None):
        super().__init__({"decode": (0.0, decode), "backbone": (decode, backbone)})
        self.n_layers = max(int(n_layers), 1)
        self._first_layer = backbone
        self._weights = dict(layer_weights or {})
        self._layers: list[str] = []
        self._layers_lock = threading.Lock()

    @classmethod
    def for_backbone(cls, backbone: str, layers: Sequence[str] | None = None) -> "FitProgress":
        """Shares weighted by the measured cost of each step (see the module's constants):
        decode, the backbone (scaled by its multiply-adds) and each of ``layers`` (default:
        all of the backbone's) by channels x (positions + 950)."""
        from ..backbones import get_spec
        spec = get_spec(backbone)
        chosen = [l for l in spec.layers if layers is None or l.name in set(layers)]
        size = 224
        cost = {l.name: _COST_PER_LAYER_UNIT * l.channels * ((size // l.stride) ** 2 + _LAYER_POSITIONS_PER_MAP)
                for l in chosen}
        bb = _COST_BACKBONE * _BACKBONE_GMACS.get(backbone, 1.0) / _BACKBONE_GMACS["efficientnet_lite0"]
        total = _COST_DECODE + bb + sum(cost.values())
        decode = _COST_DECODE / total
        return cls(len(chosen), decode=decode, backbone=decode + bb / total,
                   layer_weights={k: v / total for k, v in cost.items()})

    def layer_span(self, layer: str) -> tuple[float, float]:
        """The (start, end) share of ``layer``, given the layers started so far."""
        with self._layers_lock:
            if layer not in self._layers:
                self._layers.append(layer)
            k = self._layers.index(layer)
            n = max(self.n_layers, len(self._layers))
            names = list(self._layers)
        rest = 1.0 - self._first_layer
        if self._weights and all(name in self._weights for name in names):
            total = sum(self._weights.values()) or 1.0
            w = [self._weights[name] * rest / total for name in names]
            a0 = self._first_layer + sum(w[:k])
            return a0, min(a0 + w[k], 1.0)
        width = rest / n
        return self._first_layer + width * k, self._first_layer + width * (k + 1)

    def _span(self, name: str):
        kind, _, layer = name.partition(" ")
        if kind in self._LAYER_STEPS and layer:
            a0, a1 = self.layer_span(layer)
            lo, hi = self._LAYER_STEPS[kind]
            return (a0 + (a1 - a0) * lo, a0 + (a1 - a0) * hi)
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

    def _say(self, text: str) -> None:
        if self.progress.echo is not None:
            self.progress.echo(text)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job is done or failed; False on timeout."""
        return self._event.wait(timeout)

    def _run(self, slot: threading.Semaphore) -> None:
        acquired = False
        try:
            if self.exclusive:
                slot.acquire()
                acquired = True
            self.started = self.progress.started_at = time.time()
            self._state = RUNNING
            self._say("started")
            self.result = self._fn(self.progress)
            self.progress.complete()
            self._state = DONE
            self._say(f"done in {time.time() - self.started:.0f} s")
        except BaseException as e:  # the thread must record every failure
            self.exception = e
            self.error = error_message(e)
            self._state = FAILED
            self._say(f"failed: {self.error}")
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

    def __init__(self, *, slots: int = 1, echo: TextIO | None = None):
        self._lock = threading.Lock()
        self._jobs: dict[Hashable, Job] = {}
        self._slot = threading.Semaphore(slots)
        self._stores: dict[str, Any] = {}
        self._confined: set[tuple] = set()  # (job key, allowed roots) whose category files were checked
        self.echo = echo  # exclusive jobs (fits, demo data) print progress lines here

    def _echo_for(self, label: str) -> Callable[[str], None] | None:
        stream = self.echo
        if stream is None:
            return None

        def say(text: str) -> None:
            try:
                print(f"[mvgviz {time.strftime('%H:%M:%S')}] {label}: {text}", file=stream, flush=True)
            except (OSError, ValueError):  # a closed terminal must not break a job
                pass
        return say

    def submit(self, key: Hashable, fn: Callable[[JobProgress], Any], *, label: str = "",
               progress: JobProgress | None = None, exclusive: bool = True,
               retry_failed: bool = True) -> Job:
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and not (retry_failed and job.state == FAILED):
                return job
            progress = progress or JobProgress()
            if exclusive:
                progress.echo = self._echo_for(label or str(key))
            job = Job(key, label or str(key), fn, progress, exclusive=exclusive)
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


_SHARED: Jobs | None = None
_SHARED_LOCK = threading.Lock()


def shared_jobs() -> Jobs:
    """The server process's one registry (one fit at a time, progress lines on stderr):
    the launcher's warm-up and every browser session use it."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = Jobs(slots=1, echo=sys.stderr)
        return _SHARED


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
    weights: str | None = None  # None: the backbone's standard weights; else a weights file

    @property
    def label(self) -> str:
        extra = f" ({Path(self.weights).name})" if self.weights else ""
        return f"{self.category} / {self.backbone}{extra}"

    def job_key(self) -> tuple:
        return ("fit", self.root, self.category, self.backbone, self.cache, self.weights)


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
    model = with_labels_or_without(load, key.root, key.category, backbone=key.backbone, weights=key.weights,
                                   cache=jobs.store(key.cache))
    if model is None:
        check_weights_available(key.backbone, key.weights)  # say now that a fit could not even start
        raise NotCached(key.label)
    return model


def _fit(jobs: Jobs, key: ModelKey, progress: Progress, allowed: Sequence[Path] | None, preprocessing=None):
    from ..pipeline import fit
    if allowed is not None:
        check_category_files(key.root, key.category, allowed)
    return with_labels_or_without(fit, key.root, key.category, backbone=key.backbone, weights=key.weights,
                                  cache=jobs.store(key.cache), device="auto", progress=progress,
                                  preprocessing=preprocessing)


def resolution_key(key: ModelKey, resize: int, crop: int) -> tuple:
    """The job key of :func:`resolution_job`."""
    return ("resolution", resize, crop) + key.job_key()


def resolution_job(jobs: Jobs, key: ModelKey, resize: int, crop: int, *,
                   allowed: Sequence[Path] | None = None) -> Job:
    """Fit (or read from the cache) the same model at another input size (``resize``/``crop``:
    every layer's map finer), in the background; the job's result is that Model."""
    from ..data import Preprocessing
    pre = Preprocessing(resize=int(resize), crop=int(crop))
    return jobs.submit(resolution_key(key, resize, crop), lambda p: _fit(jobs, key, p, allowed, pre),
                       label=f"fit {key.label} at {resize}/{crop}", progress=FitProgress.for_backbone(key.backbone))


def cached_at_resolution(jobs: Jobs, key: ModelKey, resize: int, crop: int):
    """The model at ``resize``/``crop`` from the cache (no computing, no lock, no torch), else None."""
    from ..data import Preprocessing
    from ..pipeline import load
    return with_labels_or_without(load, key.root, key.category, backbone=key.backbone, weights=key.weights,
                                  cache=jobs.store(key.cache), preprocessing=Preprocessing(int(resize), int(crop)))


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
    return jobs.submit(key.job_key(), lambda p: _fit(jobs, key, p, allowed), label=f"fit {key.label}",
                       progress=FitProgress.for_backbone(key.backbone))


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
        # a model registered by any path (a fit, the warm-up, another session) is shown only inside
        # the caller's roots: the category's files are checked once per key and roots
        if allowed is not None and (key.job_key(), tuple(map(str, allowed))) not in jobs._confined:
            try:
                check_category_files(key.root, key.category, allowed)
            except (DataError, OSError) as e:
                return Probe("error", error=error_message(e))
            jobs._confined.add((key.job_key(), tuple(map(str, allowed))))
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


# ---------------------------------------------------------------------------------------
# Server start
# ---------------------------------------------------------------------------------------

def default_model_key(cfg) -> ModelKey | None:
    """The model the viewer opens with: the first category of the first root, the default
    backbone and its standard weights (None when that root has no category yet)."""
    from ..conventions import DEFAULT_BACKBONE
    from .config import discover_categories
    root = cfg.roots[0]
    cats = discover_categories(root, cfg.allowed)
    return ModelKey(str(root), cats.names[0], DEFAULT_BACKBONE, str(cfg.cache)) if cats.names else None


def warm_up(jobs: Jobs, cfg, *, say: Callable[[str], None] | None = None) -> threading.Thread:
    """Prepare the first page when the server starts, before any browser connects: write the
    demo data set when the first root needs it, then read the default model from the cache or
    (``cfg.autofit``) fit it. Runs in a daemon thread; the jobs are those every browser session
    shows, and ``jobs.echo`` gets their progress lines. ``say`` gets this function's own lines."""
    say = say or jobs._echo_for("start") or (lambda text: None)

    def run():
        try:
            root = cfg.roots[0]
            if needs_demo_data(root):
                say(f"writing the demo data set into {root}")
                job = demo_job(jobs, root)
                job.wait()
                if job.state == FAILED:
                    return
            key = default_model_key(cfg)
            if key is None:
                say(f"no category in {root}: nothing to fit")
                return
            probe = probe_model(jobs, key, allowed=cfg.allowed, timeout=600)
            if probe.state == "cached":
                say(f"{key.label} read from the cache {key.cache}")
            elif probe.state == "error":
                say(f"{key.label} cannot be fitted: {probe.error}")
            elif cfg.autofit:
                job = model_job(jobs, key, allowed=cfg.allowed)
                job.wait()
            else:
                say(f"{key.label} is not fitted (automatic fit off)")
        except Exception as e:  # the page shows the same error; the terminal gets one line
            say(f"{error_message(e)}")

    t = threading.Thread(target=run, daemon=True, name="mvgviz-warm-up")
    t.start()
    return t
