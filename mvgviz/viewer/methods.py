"""The Methods page's logic, without Streamlit: running several methods as one background job,
reading their results back from the cache, the comparison table, and the heatmap figure's files.

A run (:func:`methods_job`) fits the chosen methods one after the other on the viewer's data root,
category, backbone and weights (:func:`mvgviz.compare.compare_category`, one method at a time so
that one method's failure of any kind is its row's error, not the run's), as an exclusive job of
:class:`~mvgviz.viewer.jobs.Jobs` (one heavy job at a time, with progress). Results go to the cache;
:func:`methods_view` reads them back (:func:`mvgviz.pipeline.load_method`, no computing) and
adds the error rows of the latest run, so that the page shows every chosen method: its metrics,
its error, or that it has not been run yet.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .jobs import DONE, FAILED, JobProgress, Jobs, ModelKey, with_labels_or_without
from .tables import EXPORT_FORMATS, error_message

NOT_RUN = "not run yet"
OK, ERROR, MISSING = "ok", "error", "not run"

# columns of the comparison table: (table column, key of a compare row)
TABLE_COLUMNS = (("method", "label"), ("status", "status"), ("image AUROC", "image_auroc"),
                 ("pixel AUROC", "pixel_auroc"), ("AUPR", "pixel_aupr"), ("AUPRO", "aupro"),
                 ("fit s", "fit_seconds"), ("predict s", "predict_seconds"), ("peak MB", "peak_memory_mb"),
                 ("cached", "cached"), ("note", "note"))
METRIC_NAMES = {"image_auroc": "image AUROC", "pixel_auroc": "pixel AUROC", "pixel_aupr": "AUPR", "aupro": "AUPRO"}


def method_names() -> list[str]:
    """Every registered method, those of ``mvgviz compare``'s default list first, in its order."""
    from ..compare import default_methods
    from ..models import METHODS
    first = [n for n in default_methods().split(",") if n]
    return first + [n for n in METHODS if n not in first]


@dataclass
class MethodsRun:
    """What a run or a cache look-up gives: ``rows`` (one per method asked for, the JSON schema
    of ``mvgviz compare`` plus ``status`` and ``note``), ``results`` ``{label: MethodResult}`` of the
    methods that ran."""

    rows: list[dict] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def errors(self) -> dict[str, str]:
        """``{method name: error}`` of the rows that failed."""
        return {r["name"]: r["error"] for r in self.rows if r.get("error")}

    @property
    def cached(self) -> dict[str, bool]:
        """``{method name: read from the cache}`` of the rows that ran."""
        return {r["name"]: bool(r.get("cached")) for r in self.rows if r.get("status") == OK}


def methods_key(key: ModelKey, names: Sequence[str]) -> tuple:
    """The job key of a run of ``names`` on the model ``key``'s data and backbone."""
    return ("methods", *key.job_key()[1:], tuple(names))


def _same_model(job_key, key: ModelKey) -> bool:
    return bool(job_key) and job_key[0] == "methods" and tuple(job_key[1:-1]) == tuple(key.job_key()[1:])


class MethodsProgress(JobProgress):
    """Progress of a run: method ``i`` of ``n`` takes the share [i/n, (i+1)/n]; inside it, decoding
    the images 0-10 %, the backbone 10-40 %, the method's fit and scoring (task ``layer <label>``)
    the rest. The step text names the method."""

    _STEPS = {"decode": (0.0, 0.1), "backbone": (0.1, 0.4), "layer": (0.4, 1.0)}

    def __init__(self, n: int):
        super().__init__()
        self.n = max(int(n), 1)
        self.i = 0
        self.method = ""

    def begin(self, i: int, name: str) -> None:
        self.i, self.method = int(i), str(name)
        with self._lock:
            self._set(self.i / self.n)
            self._step = f"{name} ({self.i + 1}/{self.n})"

    def _span(self, name: str):
        kind = name.split(" ", 1)[0]
        if kind not in self._STEPS:
            return None
        lo, hi = self._STEPS[kind]
        return ((self.i + lo) / self.n, (self.i + hi) / self.n)

    def _report(self, name, total, done):
        super()._report(name, total, done)
        with self._lock:
            self._step = f"{self.method} ({self.i + 1}/{self.n}): {self._step}"


def _common(jobs: Jobs, key: ModelKey) -> dict:
    return dict(backbone=key.backbone, weights=key.weights, cache=jobs.store(key.cache))


def run_methods(jobs: Jobs, key: ModelKey, names: Sequence[str], progress: MethodsProgress | None = None, *,
                allowed: Sequence[Path] | None = None) -> MethodsRun:
    """Fit (or read from the cache) each of ``names`` with its defaults on ``key``'s category; a
    method that fails gets its error in its row (any exception, as one line) and the others run.
    An error that is not the method's (a refused folder) fails the run."""
    from ..compare import compare_category
    from .config import check_category_files
    progress = progress or MethodsProgress(len(names))
    if allowed is not None:
        check_category_files(key.root, key.category, allowed)
    run = MethodsRun()
    for i, name in enumerate(names):
        if isinstance(progress, MethodsProgress):
            progress.begin(i, name)
        try:
            out = with_labels_or_without(compare_category, key.root, key.category, methods=[(name, {})],
                                         device="auto", progress=progress, **_common(jobs, key))
            row = dict(out["methods"][0])
        except Exception as e:  # one method's failure of any kind is its row, never the run's
            row = {"name": name, "options": {}, "label": name, "error": f"{name}: {error_message(e)}"}
        run.rows.append(_with_status(row))
    return methods_view(jobs, key, names, run=run)


def _with_status(row: dict) -> dict:
    row = dict(row)
    if row.get("error"):
        row["status"], row["note"] = ERROR, row["error"]
        row.setdefault("cached", False)
    else:
        row["status"], row["note"] = OK, row.get("metrics_note", "")
    return row


def _load(jobs: Jobs, key: ModelKey, name: str):
    from ..pipeline import load_method
    return with_labels_or_without(load_method, key.root, key.category, method=name, **_common(jobs, key))


def latest_run(jobs: Jobs, key: ModelKey) -> MethodsRun | None:
    """The result of the latest finished run on ``key``'s data and backbone (None if none)."""
    done = []
    for s in jobs.statuses():
        if _same_model(s.key, key) and s.state == DONE:
            job = jobs.get(s.key)
            if job is not None and isinstance(job.result, MethodsRun):
                done.append((s.finished or 0.0, job.result))
    return max(done, key=lambda t: t[0])[1] if done else None


def active_run(jobs: Jobs, key: ModelKey):
    """A queued or running run on ``key``'s data and backbone (its :class:`Job`), else None."""
    for s in jobs.statuses():
        if _same_model(s.key, key) and s.active:
            return jobs.get(s.key)
    return None


def failed_run(jobs: Jobs, key: ModelKey, names: Sequence[str]):
    """The status of a run of ``names`` that failed as a whole (e.g. a refused folder), else None."""
    job = jobs.get(methods_key(key, names))
    s = job.status() if job is not None else None
    return s if s is not None and s.state == FAILED else None


def methods_view(jobs: Jobs, key: ModelKey, names: Sequence[str], *, run: MethodsRun | None = None) -> MethodsRun:
    """One row per method of ``names``: read from the cache (no computing), else its error in
    ``run`` or the latest finished run, else "not run yet"; ``results`` holds the cached ones.
    ``cached`` says whether the latest run read the method from the cache (True when no run
    computed it)."""
    from ..compare import label
    last = run or latest_run(jobs, key) or MethodsRun()
    errors, ran = last.errors, last.cached
    out = MethodsRun()
    for name in names:
        try:
            r = _load(jobs, key, name)
        except Exception as e:  # an unreadable entry, missing weights ...: the row says so
            r, errors = None, {**errors, name: f"{name}: {error_message(e)}"}
        if r is not None:
            lab = label(name, r.options, key.backbone)
            row = {**r.summary(), "label": lab}
            if name in ran:  # computed by the latest run, or read from the cache by it
                row["cached"] = ran[name]
            out.rows.append(_with_status(row))
            out.results[lab] = r
        elif name in errors:
            out.rows.append(_with_status({"name": name, "options": {}, "label": name, "error": errors[name]}))
        else:
            out.rows.append({"name": name, "options": {}, "label": name, "status": MISSING, "note": NOT_RUN})
    return out


def methods_job(jobs: Jobs, key: ModelKey, names: Sequence[str], *, allowed: Sequence[Path] | None = None):
    """Run ``names`` in the background (one exclusive job: fits wait for each other). A finished
    run of the same methods is run again (it reads what the cache holds and retries failures)."""
    names = tuple(names)
    jkey = methods_key(key, names)
    old = jobs.get(jkey)
    if old is not None and old.state == DONE:
        jobs.forget(jkey)
    progress = MethodsProgress(len(names))
    return jobs.submit(jkey, lambda p: run_methods(jobs, key, names, p, allowed=allowed),
                       label=f"methods {key.label}: {', '.join(names)}", progress=progress)


# ---------------------------------------------------------------------------------------
# What the page shows
# ---------------------------------------------------------------------------------------

def methods_table(rows: Sequence[dict]) -> dict[str, list]:
    """The comparison table: one row per method, the JSON schema's columns (None shows empty)."""
    return {col: [r.get(k) for r in rows] for col, k in TABLE_COLUMNS}


def methods_notes(rows: Sequence[dict]) -> list[str]:
    """One line per method with a metric that is null, saying which and why (errors excluded)."""
    out = []
    for r in rows:
        if r.get("status") != OK:
            continue
        missing = [v for k, v in METRIC_NAMES.items() if r.get(k) is None]
        if missing:
            out.append(f"{r['label']}: {', '.join(missing)} n/a: {r.get('metrics_note') or 'not defined for this method'}")
    return out


def default_images(defect_types: Sequence[str], *, n_defect: int = 3) -> list[int]:
    """Rows of the heatmap figure by default: the first image of up to ``n_defect`` defect types,
    then the first good image."""
    from ..conventions import GOOD, is_defect
    out, seen = [], set()
    for i, t in enumerate(defect_types):
        if is_defect(t) and t not in seen and len(seen) < n_defect:
            seen.add(t)
            out.append(i)
    good = next((i for i, t in enumerate(defect_types) if t == GOOD), None)
    if good is not None:
        out.append(good)
    return out or [0]


def methods_name(key: ModelKey, spec) -> str:
    """A file stem for the figure's downloads: ``brick_efficientnet_lite0_methods_test``."""
    return f"{key.category}_{key.backbone}_methods_{spec.split}"


def methods_file_bytes(results: dict, spec, fmt: str, *, scales: dict | None = None) -> bytes:
    """The heatmap figure (:mod:`mvgviz.render.methods`) as a PNG, PDF or SVG file (matplotlib,
    written by :func:`mvgviz.export.save_figure` like the Grid's)."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"`fmt` must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    from ..export import MIN_PNG_DPI, check_pixels, save_figure
    from ..render.figure import render_figure
    from ..render.methods import methods_data
    fig = render_figure(methods_data(results, spec, scales=scales))
    check_pixels(fig, fmt, MIN_PNG_DPI)
    with tempfile.TemporaryDirectory(prefix="mvgviz-export-") as tmp:
        out = Path(tmp) / f"methods.{fmt}"
        save_figure(fig, out, fmt)
        return out.read_bytes()


def methods_manifest_bytes(results: dict, spec, *, root: str | None = None, scales: dict | None = None) -> bytes:
    """The figure's JSON manifest (:func:`mvgviz.render.methods.methods_manifest`)."""
    from ..render.methods import methods_data, methods_manifest
    data = methods_data(results, spec, scales=scales)
    return (json.dumps(methods_manifest(results, spec, data, root=root), indent=1, default=str) + "\n").encode()


__all__ = ["MethodsProgress", "MethodsRun", "active_run", "default_images", "failed_run", "latest_run",
           "method_names", "methods_file_bytes", "methods_job", "methods_key", "methods_manifest_bytes",
           "methods_name", "methods_notes", "methods_table", "methods_view", "run_methods"]
