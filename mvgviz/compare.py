"""Several methods on one data pipeline, compared with the same metrics: ``mvgviz compare``.

Every method of :mod:`mvgviz.models` runs on the same decoded images and the same cached feature
pass (:func:`mvgviz.pipeline.fit_method`), and is evaluated by the same exact metrics
(:func:`mvgviz.evaluation.evaluate`); results are cached per method and options. One category gives

``{"category", "backbone", "weights", "methods": [{"name", "options", "image_auroc", "pixel_auroc",
"pixel_aupr", "aupro", "fit_seconds", "predict_seconds", "peak_memory_mb", "label", "metrics_note", "cached"}]}``

with pixel metrics null where a method has no maps (the note says why); ``label`` is the name with
the options asked for that differ from the defaults (``padim(channels=50)``; the same label in every
category, for the means); ``options`` are the options as run, and ``resolved_options``, where
present, what the fit resolved from the data (SPADE's default K capped at a small train set:
``{"k": 40}``). A method that cannot
run on the configuration (SPADE's K larger than the train set, a layer the backbone lacks) gets
``"error"`` and null metrics; the others still run. The batch form
(:func:`compare`) covers several categories, every category of the root by default, and adds the
mean of each metric per method over the categories where it is defined.

Times: ``fit_seconds`` is the method's fit on the cached features, ``predict_seconds`` the scoring
of the test split's cached features: image scores and the maps at the pixels; the backbone's pass is
shared by every method and reported once per category (``feature_seconds``, null when it came
from the cache). ``peak_memory_mb`` is the process's peak RSS (:mod:`mvgviz.footprint`) over
everything the method's entry holds: fit, scoring both splits, colour-scale statistics,
diagnostics, metrics and, for the Gaussians with components, the ranking; in one process it
includes what earlier work left allocated; the benchmark (``bench/bench_methods.py``) runs each
method in a fresh process. A cached row reports the run that computed it.
"""

from __future__ import annotations

import os
from typing import Sequence

from .conventions import DEFAULT_BACKBONE, ParamError
from .models import build_method, parse_methods
from .progress import Progress

DEFAULT_METHODS = "mvg,mvg-sum,mvg-concat,padim,spade,gaussian-ad,opca"
METRICS = ("image_auroc", "pixel_auroc", "pixel_aupr", "aupro")


def default_methods() -> str:
    """The registered methods among :data:`DEFAULT_METHODS`, in that order."""
    from .models import METHODS
    return ",".join(n for n in DEFAULT_METHODS.split(",") if n in METHODS)


def compare_category(root: str | os.PathLike, category: str, methods: str | Sequence[tuple[str, dict]] | None = None,
                     *, backbone: str = DEFAULT_BACKBONE, progress: Progress | None = None, **options) -> dict:
    """One category's comparison (the module docstring's JSON). ``methods``: the command line's
    spelling (``"mvg,padim:channels=50"``) or ``[(name, options), ...]``; None = every method.
    ``options`` are :func:`mvgviz.pipeline.fit_method`'s (weights, device, cache, ...)."""
    from .backbones import weights_tag
    from .pipeline import fit_method
    progress = progress or Progress()
    wanted = _methods(methods, backbone)
    _check_methods(wanted, backbone)  # an unknown method or option: at once, for every method
    before = dict(progress.timings)
    rows, weights = [], weights_tag(backbone, options.get("weights"))
    for i, (name, opts) in enumerate(wanted):
        progress.message(f"{category}: {name} ({i + 1}/{len(wanted)})")
        try:
            r = fit_method(root, category, name, options=opts, backbone=backbone, progress=progress, **options)
        except ParamError as e:
            if e.param not in _METHOD_PARAMS:
                raise  # a bad data root, device, ...: not the method's fault
            rows.append({**_error_row(name, opts, e), "label": f"{name}({_spell(opts)})" if opts else name})
            continue
        weights = r.weights
        row = {**r.summary(), "label": label(name, r.options, backbone)}
        resolved = {k: v for k, v in r.effective_options.items() if r.options.get(k) != v}
        if resolved:  # what the fit resolved from the data (SPADE's default K on a small train set)
            row["resolved_options"] = resolved
        rows.append(row)
    spent = progress.timings.get("backbone", 0.0) - before.get("backbone", 0.0)
    return {"category": category, "backbone": backbone, "weights": weights,
            "feature_seconds": round(spent, 3) if spent > 0 else None, "methods": rows}


# parameters of a method's own options (for_backbone's keywords) and of its checks
_METHOD_PARAMS = {"method", "layer", "layers", "channels", "seed", "eps", "sigma", "k", "kappa", "reg", "variant",
                  "fraction", "image_layer", "pixel_layers", "threshold", "data"}


def _error_row(name: str, opts: dict, e: ParamError) -> dict:
    return {"name": name, "options": opts, **{k: None for k in METRICS}, "fit_seconds": None,
            "predict_seconds": None, "peak_memory_mb": None, "error": f"{name}: {_say(e)}", "metrics_note": "",
            "cached": False}


def label(name: str, options: dict, backbone: str) -> str:
    """``name`` with the options that differ from its defaults on ``backbone``: ``padim(channels=50)``."""
    from .backbones import get_spec
    default = build_method(name, get_spec(backbone)).options
    diff = {k: v for k, v in options.items() if default.get(k) != v}
    return f"{name}({_spell(diff)})" if diff else name


def _spell(options: dict) -> str:
    return ", ".join(f"{k}={'+'.join(map(str, v)) if isinstance(v, list) else v}" for k, v in options.items())


def _say(e: ParamError) -> str:
    """A method's error in the words of ``--methods``: ``option k must be ...``."""
    return str(e) if e.param in ("methods", "method") else e.with_name(f"option {e.param}")


def _methods(methods, backbone: str) -> list[tuple[str, dict]]:
    if methods is None:
        methods = default_methods()
    if isinstance(methods, str):
        return parse_methods(methods)
    return [(str(n), dict(o or {})) for n, o in methods]


def compare(root: str | os.PathLike, categories: Sequence[str] | None = None, methods=None, *,
            progress: Progress | None = None, **options) -> dict:
    """The batch form: ``{"data", "backbone", "categories": [compare_category(...) or {"category",
    "error"}], "mean": {label: {metric: mean or None, "n_categories": n}}}`` (label: the name with non-default options); ``categories`` None =
    every category of ``root``. A category that cannot be read gets ``"error"`` and the rest still
    run; a bad option common to all (device, backbone, methods) raises at once."""
    from .data import DataError, list_categories
    progress = progress or Progress()
    backbone = options.pop("backbone", DEFAULT_BACKBONE)
    names = list(categories) if categories else list_categories(root)
    if not names:
        raise ParamError("root", f"{os.fspath(root)!r} has no category folders (expected ROOT/CATEGORY/train/good)")
    _check_methods(_methods(methods, backbone), backbone)
    out = []
    for c in names:
        try:
            out.append(compare_category(root, c, methods, backbone=backbone, progress=progress, **options))
        except DataError as e:
            if isinstance(e, ParamError) and e.param != "category":
                raise
            out.append({"category": c, "error": e.with_name("category") if isinstance(e, ParamError) else str(e)})
    return {"data": os.fspath(root), "backbone": backbone, "categories": out, "mean": _means(out)}


def _check_methods(wanted, backbone: str) -> None:
    """Every method and option exists and is valid for the backbone; a ParamError naming
    ``methods`` that says which method and option (``padim: option seed must be ...``)."""
    from .backbones import get_spec
    spec = get_spec(backbone)
    for name, opts in wanted:
        try:
            build_method(name, spec, opts, param="methods")
        except ParamError as e:
            if e.param == "methods":
                raise
            raise ParamError("methods", f": {name}: {_say(e)}") from None


def _means(results: list[dict]) -> dict:
    """Each method's mean of each metric over the categories where it is defined."""
    acc: dict[str, dict] = {}
    for r in results:
        for m in r.get("methods", []):
            a = acc.setdefault(m.get("label", m["name"]), {k: [] for k in METRICS})
            for k in METRICS:
                if m.get(k) is not None:
                    a[k].append(m[k])
    return {name: {**{k: (sum(v) / len(v) if v else None) for k, v in a.items()},
                   "n_categories": max((len(v) for v in a.values()), default=0)} for name, a in acc.items()}


__all__ = ["DEFAULT_METHODS", "compare", "compare_category", "default_methods", "label"]
