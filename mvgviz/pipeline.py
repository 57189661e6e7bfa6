"""Fit a category end to end: orchestration that knows no method by name.

``fit(root, category, ...)`` returns a :class:`mvgviz.results.Model` with one
:class:`mvgviz.results.LayerModel` per layer: the paper's Gaussian
(:class:`mvgviz.models.MVG`) fitted on that layer, every part of it in the cache. Layers
already cached are not recomputed.

Everything streams over image batches, so memory follows ``batch_size``, not the data set:

1. ``decode``: images are read, preprocessed and appended to the category's data entry in
   batches;
2. ``backbone``: the feature pass (:mod:`mvgviz.featurepass`) runs the backbone once per (data
   set, category, backbone, weights, preprocessing, storage) and caches every layer's maps;
3. per layer (one bar, ``layer <name>``): ``fit`` (the method's streamed fit), ``whitening``
   (the method scores both splits batch by batch: components Y, maps M2 and image scores are
   appended to the layer's entry; colour-scale statistics stream over what was written),
   ``metrics`` (:func:`mvgviz.evaluation.evaluate` over the upsampled maps, batch by batch),
   ``ranking`` (single-component pixel AUROC of every component, streamed), ``cache write``.

Their wall times land in ``Model.timings``.
"""

from __future__ import annotations

import dataclasses
import os
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from . import __version__
from .backbones import (RANDOM, LayerSpec, check_weights_available, check_weights_file, get_spec, parse_layers,
                        weights_tag)
from .cache import Entry, Store, make_key
from .conventions import DEFAULT_BACKBONE, SPLITS, ParamError
from .data import FINGERPRINTS, Category, Preprocessing, content_fingerprint, load_category, load_split_arrays
from .diagnostics import component_diagnostics
from .featurepass import CachedFeatures, check_storage, feature_key, feature_pass
from .gaussian import reg_tag
from .models import MVG, build_method
from .progress import Progress
from .results import CategoryArrays, LayerModel, MethodResult, Model, Names

__all__ = ["CategoryArrays", "LayerModel", "MethodResult", "Model", "fit", "fit_method", "load", "load_method"]

CURVE_POINTS = 256  # points kept per ROC / PR / PRO curve in a layer's entry (for plots)

# torch, scipy and the metrics are imported only when something must be computed, so
# that reading a warm cache (the viewer, ``report`` on a fitted category) starts fast.

class DeviceError(ParamError):
    """A bad ``device`` value, or CUDA asked for where there is none."""

    def __init__(self, detail: str):
        super().__init__("device", detail)


def check_device(device) -> str:
    """Validate a device name; ``cuda`` is checked against the machine (imports torch)."""
    d = str(device or "auto").lower()
    if d in ("auto", "cpu"):
        return d
    if d.startswith("cuda"):
        resolve_device(d)
        return d
    raise DeviceError(f"must be auto, cpu or cuda[:N], got {device!r}")


def resolve_device(device):
    """``"auto"`` -> CUDA when available, else CPU; ``"cuda"`` without CUDA is an error."""
    import torch
    d = str(device or "auto").lower()
    if d == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if d.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"{d!r}: CUDA is not available here (torch {torch.__version__}, "
                              f"built for CUDA {torch.version.cuda or 'none'}, no usable GPU); "
                              "use 'cpu' or 'auto'")
        return torch.device(d)
    if d == "cpu":
        return torch.device("cpu")
    raise DeviceError(f"must be auto, cpu or cuda[:N], got {device!r}")


# ---------------------------------------------------------------------------------------
# Fitting
# ---------------------------------------------------------------------------------------


def fit(root: str | os.PathLike, category: str, *, backbone: str = DEFAULT_BACKBONE,
        layers: str | Sequence[str] | None = None, weights: str | None = None, reg: str = "none",
        device: str = "auto", cache: str | os.PathLike | Store | None = None,
        preprocessing: Preprocessing | None = None, batch_size: int = 16, storage: str = "float32",
        unlabelled: bool = False, fingerprint: str = "stat", progress: Progress | None = None) -> Model:
    """Fit (or load from the cache) one Gaussian per layer for a category.

    Parameters
    ----------
    root, category
        An MVTec-layout data root and one of its categories.
    backbone, layers, weights
        See :mod:`mvgviz.backbones`; ``layers`` None means all of the backbone's layers;
        ``weights`` None = the standard pretrained weights, a path, or ``"random"``.
    reg
        ``"none"`` (the paper), ``"ridge:EPS"`` or ``"ledoit-wolf"``.
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"``; changes speed only, not results (up to
        float rounding).
    batch_size
        Images per batch everywhere (backbone, whitening, metrics, ranking); changes memory and
        speed only.
    storage
        ``"float32"`` (default) or ``"float16"``: how the cached features and whitened components
        are stored (half the disk; changes the metrics slightly, see README).
    unlabelled
        Accept a test split without (complete) labels or masks: metrics that need them are None,
        with a note; everything else works. See :func:`mvgviz.data.load_category`.
    fingerprint
        How the data set is identified in the cache keys: ``"stat"`` (default: every file's path,
        size and mtime) or ``"content"`` (path, size and a hash of the bytes: sees pixels changed
        with the same size and mtime; reads every image once per call). Entries of one mode are
        misses for the other.

    Every input is checked before any work (options, the category's name, folders and labels,
    masks that are all empty, the weights file against the network); a bad one raises a
    ValueError naming it (:class:`mvgviz.conventions.ParamError` for a parameter) and leaves
    nothing in the cache. Files of the image folders that are not read are reported through
    ``progress.message``, one line per folder.
    """
    progress = progress or Progress()
    # Everything is checked before any work: options, the category's files and labels (masks all
    # empty: MissingLabels, found by reading the masks only), the weights file. A bad input leaves
    # nothing in the cache.
    check_device(device)
    batch_size = _check_batch_size(batch_size)
    look = _lookup(root, category, backbone, layers, weights, reg, cache, preprocessing, storage, unlabelled,
                   fingerprint)
    for note in look.cat.ignored_notes():
        progress.message(note)
    missing = [l for l in look.wanted if look.entries[l.name] is None]
    if missing:  # before decoding anything: no weights, no work and no cache entry
        check_weights_available(backbone, weights)
        check_weights_file(backbone, weights)
    data = _ensure_data(look.store, look.cat, look.pre, batch_size, progress)
    entries, todo = dict(look.entries), []
    if missing:
        with ExitStack() as stack:
            for l in sorted(missing, key=lambda l: look.keys[l.name]):  # fixed order: no deadlock
                stack.enter_context(look.store.lock(look.keys[l.name]))
            entries.update({l.name: look.store.get(look.keys[l.name]) for l in missing})
            todo = [l for l in missing if entries[l.name] is None]  # another process may have done them
            if todo:
                _import_compute_stack(progress)
                if weights == RANDOM:
                    progress.message(f"WARNING: backbone {backbone} with RANDOM weights (not pretrained)")
                dev = resolve_device(device)
                feats = _ensure_features(look, data, backbone, weights, dev, batch_size, progress)
                for l in todo:
                    entries[l.name] = _fit_layer(look, l, feats, data, dev, batch_size, progress)
    return _model(look, root, backbone, weights, data, entries, timings=dict(progress.timings),
                  computed=tuple(l.name for l in todo))


def load(root: str | os.PathLike, category: str, *, backbone: str = DEFAULT_BACKBONE,
         layers: str | Sequence[str] | None = None, weights: str | None = None, reg: str = "none",
         cache: str | os.PathLike | Store | None = None, preprocessing: Preprocessing | None = None,
         storage: str = "float32", unlabelled: bool = False, fingerprint: str = "stat") -> Model | None:
    """The model from the cache, or None if any part of it is not cached. Never computes,
    never waits on a lock, never imports torch: a cheap check for viewers. Same options as
    :func:`fit` (a cache entry from another mvgviz version is a miss: None; so is a damaged
    entry, which :meth:`mvgviz.cache.Store.get` removes with a note)."""
    look = _lookup(root, category, backbone, layers, weights, reg, cache, preprocessing, storage, unlabelled,
                   fingerprint)
    data = look.store.get(_data_key(look.cat, look.pre)[0])
    if data is None or any(e is None for e in look.entries.values()):
        return None
    return _model(look, root, backbone, weights, CategoryArrays(data), look.entries)


def fit_method(root: str | os.PathLike, category: str, method: str = MVG.name, *, options: dict | None = None,
               backbone: str = DEFAULT_BACKBONE, weights: str | None = None, device: str = "auto",
               cache: str | os.PathLike | Store | None = None, preprocessing: Preprocessing | None = None,
               batch_size: int = 16, storage: str = "float32", unlabelled: bool = False,
               fingerprint: str = "stat", progress: Progress | None = None) -> MethodResult:
    """Fit (or load from the cache) one method of :mod:`mvgviz.models` on a category.

    ``method`` is a name of :data:`mvgviz.models.METHODS` (``"mvg"``, ``"padim"``, ...); ``options``
    override the seeds' defaults for the backbone (:func:`mvgviz.models.build_method`). The other
    parameters are :func:`fit`'s. The paper's Gaussian (``"mvg"``, options ``layer`` and ``reg``)
    is :func:`fit` on that one layer and shares its cache entry.

    Everything is checked before any work, the method's own conditions included (e.g. SPADE's K
    larger than the train set): a :class:`~mvgviz.conventions.ParamError` naming the option. The
    result records what the run cost (:attr:`MethodResult.cost`).
    """
    progress = progress or Progress()
    check_device(device)
    batch_size = _check_batch_size(batch_size)
    spec = get_spec(backbone)
    m = build_method(method, spec, options, param="method")
    common = dict(backbone=backbone, weights=weights, cache=cache, preprocessing=preprocessing, storage=storage,
                  unlabelled=unlabelled, fingerprint=fingerprint)
    if isinstance(m, MVG):
        model = fit(root, category, layers=[m.layer], reg=m.reg, device=device, batch_size=batch_size,
                    progress=progress, **common)
        return _method_result(model.layers[m.layer].entry, model.data, model.category, backbone, model.weights,
                              model.image_size, computed=m.layer in model.computed_layers)
    look = _lookup(root, category, backbone, (), weights, "none", cache, preprocessing, storage, unlabelled,
                   fingerprint)
    for note in look.cat.ignored_notes():
        progress.message(note)
    m.check(_ShapeSource(spec, look.cat, look.pre))
    if not m.has_maps and not look.cat.test.image_labels:
        raise ParamError("method", f": {m.name!r} scores whole images and has no pixel maps, and the test images "
                                   f"of {look.cat.name!r} have no labels ({look.cat.test.label_note}): there would "
                                   "be nothing to evaluate or to show; use a method with maps (mvg, padim, spade, "
                                   "opca, ...) or label the test images")
    key, parts = _method_key(look, m)
    entry = look.store.get(key)
    if entry is None:
        check_weights_available(backbone, weights)
        check_weights_file(backbone, weights)
    data = _ensure_data(look.store, look.cat, look.pre, batch_size, progress)
    computed = False
    if entry is None:
        with look.store.lock(key):
            entry = look.store.get(key)
            if entry is None:
                _import_compute_stack(progress)
                if weights == RANDOM:
                    progress.message(f"WARNING: backbone {backbone} with RANDOM weights (not pretrained)")
                dev = resolve_device(device)
                feats = _ensure_features(look, data, backbone, weights, dev, batch_size, progress)
                entry = _run_method(look, m, key, parts, feats, data, dev, batch_size, progress, label=m.name,
                                    meta={"layers": list(m.layers)})
                computed = True
    return _method_result(entry, data, look.cat.name, backbone, look.wtag, look.pre.crop, computed=computed)


def load_method(root: str | os.PathLike, category: str, method: str = MVG.name, *, options: dict | None = None,
                backbone: str = DEFAULT_BACKBONE, weights: str | None = None,
                cache: str | os.PathLike | Store | None = None, preprocessing: Preprocessing | None = None,
                storage: str = "float32", unlabelled: bool = False,
                fingerprint: str = "stat") -> MethodResult | None:
    """:func:`fit_method`'s result from the cache, or None; never computes (like :func:`load`)."""
    m = build_method(method, get_spec(backbone), options, param="method")
    if isinstance(m, MVG):
        model = load(root, category, backbone=backbone, layers=[m.layer], weights=weights, reg=m.reg, cache=cache,
                     preprocessing=preprocessing, storage=storage, unlabelled=unlabelled, fingerprint=fingerprint)
        return None if model is None else _method_result(model.layers[m.layer].entry, model.data, model.category,
                                                         backbone, model.weights, model.image_size)
    look = _lookup(root, category, backbone, (), weights, "none", cache, preprocessing, storage, unlabelled,
                   fingerprint)
    data = look.store.get(_data_key(look.cat, look.pre)[0])
    entry = look.store.get(_method_key(look, m)[0])
    if data is None or entry is None:
        return None
    return _method_result(entry, CategoryArrays(data), look.cat.name, backbone, look.wtag, look.pre.crop)


def _method_result(entry, data, category, backbone, wtag, size, *, computed=False) -> MethodResult:
    return MethodResult(entry=entry, data=data, category=category, backbone=backbone, weights=wtag, image_size=size,
                        computed=computed)


def _method_key(look: "_Lookup", m) -> tuple[str, dict]:
    """The cache key of a method other than the paper's Gaussian: its name and options, the data
    and the features it reads."""
    base = {k: v for k, v in look.base.items() if k not in ("kind", "method", "reg")}
    parts = {"kind": "method", "method": m.name, "options": m.options, **base}
    return make_key(parts), parts


@dataclass(frozen=True)
class _ShapeSource:
    """What a method's ``check`` needs before any work: layers, image counts, feature shapes
    (channels from the backbone's table; sizes ``ceil(crop / stride)``, as the networks give)."""

    spec: object
    cat: Category
    pre: Preprocessing

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(l.name for l in self.spec.layers)

    def n_images(self, split: str) -> int:
        return len(self.cat.split(split))

    def feature_shape(self, layer: str) -> tuple[int, int, int]:
        l = self.spec.layer(layer)
        s = -(-self.pre.crop // l.stride)
        return l.channels, s, s

    def batches(self, *a, **kw):
        raise TypeError("a shape-only source has no features")


def _model(look: "_Lookup", root, backbone, weights, data: CategoryArrays, entries: dict, *,
           timings: dict | None = None, computed: tuple = ()) -> Model:
    return Model(root=Path(root), category=look.cat.name, backbone=backbone, weights=look.wtag, reg=look.rtag,
                 preprocessing=look.pre, data=data,
                 layers={l.name: LayerModel(l, entries[l.name], look.pre.crop) for l in look.wanted},
                 timings=timings or {}, computed_layers=computed,
                 weights_arg=None if weights is None else str(weights), storage=look.storage,
                 unlabelled=look.cat_unlabelled)


def _check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ParamError("batch_size", f"must be a positive integer, got {batch_size!r}")
    return int(batch_size)


@dataclass(frozen=True)
class _Lookup:
    pre: Preprocessing
    wanted: tuple
    wtag: str
    rtag: str
    storage: str
    store: Store
    cat: Category
    base: dict
    keys: dict
    entries: dict

    @property
    def cat_unlabelled(self) -> bool:
        return self.cat.unlabelled

    def parts(self, layer: str) -> dict:
        return {**self.base, "layer": layer}


def _lookup(root, category, backbone, layers, weights, reg, cache, preprocessing, storage,
            unlabelled, fingerprint="stat") -> _Lookup:
    """Validate the options and find the cache entries of every wanted layer (None = missing)."""
    pre = Preprocessing() if preprocessing is None else preprocessing
    if not isinstance(pre, Preprocessing):
        raise ParamError("preprocessing", f"must be a mvgviz.data.Preprocessing, got {type(pre).__name__}")
    spec = get_spec(backbone)
    wanted = () if isinstance(layers, tuple) and not layers else parse_layers(spec, layers)  # (): no layer
    wtag = weights_tag(backbone, weights)
    rtag = reg_tag(reg)
    storage = check_storage(storage)
    store = cache if isinstance(cache, Store) else Store(cache)
    if fingerprint not in FINGERPRINTS:
        raise ParamError("fingerprint", f"must be one of {', '.join(FINGERPRINTS)}, got {fingerprint!r}")
    cat = load_category(root, category, unlabelled=bool(unlabelled))
    if fingerprint == "content":
        cat = dataclasses.replace(cat, fingerprint=content_fingerprint(cat))
    base = {"kind": "layer", "method": MVG.name, "dataset": cat.fingerprint, "category": cat.name,
            "labels": _label_tag(cat), "backbone": backbone, "weights": wtag,
            "preprocessing": pre.tag(), "reg": rtag, "storage": storage, "version": __version__}
    keys = {l.name: make_key({**base, "layer": l.name}) for l in wanted}
    entries = {name: store.get(k) for name, k in keys.items()}
    return _Lookup(pre, wanted, wtag, rtag, storage, store, cat, base, keys, entries)


def _import_compute_stack(progress: Progress) -> None:
    """Import torch and SciPy under their own timer ("startup"), so the step timings are honest."""
    import sys
    if "torch" in sys.modules and "scipy.stats" in sys.modules:
        return
    with progress.timer("startup"):
        import scipy.stats  # noqa: F401
        import torch  # noqa: F401


# ---------------------------------------------------------------------------------------
# Data and features
# ---------------------------------------------------------------------------------------

def _data_key(cat: Category, pre: Preprocessing) -> tuple[str, dict]:
    parts = {"kind": "data", "dataset": cat.fingerprint, "category": cat.name,
             "labels": _label_tag(cat),
             "preprocessing": pre.tag(), "version": __version__}
    return make_key(parts), parts


def _label_tag(cat: Category) -> dict:
    """What the test labels allow, part of the keys: fully labelled data loaded with
    ``unlabelled=True`` is the same data and shares its cache entries."""
    return {"image": cat.test.image_labels, "pixel": cat.test.pixel_labels, "note": cat.test.label_note}


def _source(cat: Category) -> dict:
    """Where an entry's data came from (recorded in its meta.json for ``cache ls``; not in the key)."""
    return {"data_root": str(Path(cat.root).absolute())}


def _ensure_data(store: Store, cat: Category, pre: Preprocessing, batch_size: int,
                 progress: Progress) -> CategoryArrays:
    """The category's preprocessed images and masks, decoded in batches into a cache entry."""
    key, parts = _data_key(cat, pre)
    entry = store.get(key)
    if entry is None:
        with store.lock(key):
            entry = store.get(key)
            if entry is None:
                _import_compute_stack(progress)
                step = max(batch_size, 32)
                with store.writer(key, parts, source=_source(cat)) as w, progress.task("decode", total=len(cat.train) + len(cat.test)) as t:
                    for name in SPLITS:
                        split = cat.split(name)
                        n, s = len(split), pre.crop
                        images = w.appender(Names.images(name), (n, s, s, 3), np.uint8)
                        masks = w.appender(Names.masks(name), (n, s, s), np.bool_)
                        for i in range(0, n, step):
                            part = dataclasses.replace(split, paths=split.paths[i:i + step],
                                                       defect_types=split.defect_types[i:i + step],
                                                       mask_paths=split.mask_paths[i:i + step])
                            im, m = load_split_arrays(part, pre, progress=t.update)
                            images.write(im)
                            masks.write(m)
                        w.meta[Names.files(name)] = [p.relative_to(cat.root).as_posix() for p in split.paths]
                        w.meta[Names.defects(name)] = list(split.defect_types)
                        w.meta[Names.labels(name)] = split.labels.tolist()  # 1 defective, 0 good, -1 unknown
                    test = cat.split("test")
                    w.meta.update(image_labels=test.image_labels, pixel_labels=test.pixel_labels,
                                  label_note=test.label_note)
                progress.timings["cache write"] = progress.timings.get("cache write", 0.0) + w.commit_seconds
                entry = w.entry
    return CategoryArrays(entry)


def _ensure_features(look: _Lookup, data: CategoryArrays, backbone: str, weights: str | None, dev,
                     batch_size: int, progress: Progress) -> CachedFeatures:
    key, parts = feature_key(look.cat, backbone, look.wtag, look.pre, look.storage)
    entry = look.store.get(key)
    if entry is None:
        with look.store.lock(key):
            entry = look.store.get(key)
            if entry is None:
                images = {s: data.reader("images", s) for s in SPLITS}
                return feature_pass(look.store, key, parts, images, backbone, weights, look.pre, dev,
                                    batch_size=batch_size, storage=look.storage, progress=progress)
    return CachedFeatures(entry, backbone)


# ---------------------------------------------------------------------------------------
# One layer
# ---------------------------------------------------------------------------------------

def _fit_layer(look: _Lookup, l: LayerSpec, feats: CachedFeatures, data: CategoryArrays, dev,
               batch_size: int, progress: Progress) -> Entry:
    """The paper's Gaussian on one layer (:class:`mvgviz.models.MVG`), run and stored."""
    c, h, w = feats.feature_shape(l.name)
    meta = {"layer": l.name, "module": l.module, "channels": l.channels, "stride": l.stride,
            "feature_size": [h, w]}
    return _run_method(look, MVG(l.name, look.rtag), look.keys[l.name], look.parts(l.name), feats, data,
                       dev, batch_size, progress, label=l.name, meta=meta)


def _run_method(look: _Lookup, method, key: str, parts: dict, feats: CachedFeatures, data: CategoryArrays,
                dev, batch_size: int, progress: Progress, *, label: str, meta: dict) -> Entry:
    """Fit, score, evaluate, rank and store one method, streaming; knows no method by name.

    What is written depends on what the method has (``has_maps``, ``has_components``): its state,
    image scores of both splits, maps and components, their colour-scale statistics and
    diagnostics, metrics (:func:`mvgviz.evaluation.evaluate`) and the component ranking.
    """
    import time

    import torch

    from .evaluation import evaluate
    from .footprint import PeakMemory
    size = (look.pre.crop, look.pre.crop)
    dtype = np.dtype(look.storage)
    out = {}  # the entry's meta beside ``meta``
    seconds = {"fit": 0.0, "test": 0.0}  # the cost: fit; predicting the test split (scores and pixel maps)
    pixels_timed = {"pending": False}  # the scorer left the pixel maps to the metrics' pass
    image_components = getattr(method, "has_image_components", False)
    peak = PeakMemory(dev)
    # one bar per method, five steps; each step's time is recorded under its own name
    with progress.task(f"layer {label}", total=5) as bar, peak:
        with look.store.writer(key, parts, source=_source(look.cat)) as w:
            with progress.timer(f"fit {label}"):
                t0 = time.perf_counter()
                state = method.fit(feats, device=dev, batch_size=batch_size, progress=progress)
                seconds["fit"] = time.perf_counter() - t0
            for name, arr in state.arrays.items():
                w.put(Names.state(name), arr)
            bar.update(1)
            scores = {}
            with progress.timer(f"whitening {label}"):
                score = method.scorer(state, dev, size=size)
                for split in SPLITS:
                    n = feats.n_images(split)
                    ys = ms = ics = None
                    parts_ = []
                    for b in feats.batches(split, method.layers, batch_size=batch_size, device=dev):
                        t0 = time.perf_counter()
                        s = score(b)
                        if split == "test" and method.has_maps and s.pixels is None:
                            pixels_timed["pending"] = True  # timed in the metrics' first pass, below
                        image_scores = s.image_scores.double().cpu().numpy()  # waits for the device
                        seconds[split] = seconds.get(split, 0.0) + time.perf_counter() - t0
                        if method.has_components:
                            ys = ys or w.appender(Names.components(split), (n, *s.components.shape[1:]), dtype)
                            ys.write(s.components.cpu().numpy())
                        if method.has_maps:
                            ms = ms or w.appender(Names.maps(split), (n, *s.maps.shape[1:]), np.float32)
                            ms.write(s.maps.cpu().numpy())
                        if image_components:
                            ics = ics or w.appender(Names.image_components(split),
                                                    (n, *s.image_components.shape[1:]), np.float32)
                            ics.write(s.image_components.cpu().numpy())
                        parts_.append(image_scores)
                    for a in (ys, ms, ics):
                        if a is not None:
                            a.close()
                    scores[split] = np.concatenate(parts_)
                    w.put(Names.image_scores(split), scores[split])
                if method.has_components and method.has_maps:
                    out["stats"] = {split: _scale_stats(w.read(Names.components(split)), w.read(Names.maps(split)),
                                                        batch_size).to_dict() for split in SPLITS}
            if method.has_components:
                with progress.timer(f"diagnostics {label}"):  # train split only: reads no test label
                    diag = component_diagnostics(w.read(Names.components("train")).chunks(batch_size))
                w.put(Names.PATTERN_MEAN, diag.pattern_mean.astype(np.float32))
                w.put(Names.PATTERN_STD, diag.pattern_std.astype(np.float32))
                out["diagnostics"] = diag.to_meta()
            bar.update(1)
            masks = data.reader("masks", "test")

            def pixel_chunks():  # (n, S, S) maps as scored, with their masks
                # predicting includes the maps at the pixels: where the scorer did not make them,
                # the first pass's to_pixels is added to the test split's time (made once, not twice)
                timed, pixels_timed["pending"] = pixels_timed["pending"], False
                maps = w.read(Names.maps("test"))
                for i in range(0, len(maps), batch_size):
                    m = torch.from_numpy(maps.rows(i, i + batch_size)).to(dev)[:, None]  # (n, 1, h, w)
                    t0 = time.perf_counter()
                    px = method.to_pixels(m, size)[:, 0]
                    if timed:
                        if px.is_cuda:
                            torch.cuda.synchronize(px.device)
                        seconds["test"] += time.perf_counter() - t0
                    yield px, torch.from_numpy(masks.rows(i, i + batch_size)).to(dev)

            with progress.timer(f"metrics {label}"):
                out["metrics"] = evaluate(scores["test"], data.labels("test") if data.image_labels else None,
                                          pixel_chunks=pixel_chunks if method.has_maps else None,
                                          pixel_labels=data.pixel_labels,
                                          note=data.label_note, curves=CURVE_POINTS)
                out["curves"] = out["metrics"].pop("curves", {})
            bar.update(1)
            if data.pixel_labels and method.has_components and method.ranks_components:
                with progress.timer(f"ranking {label}"):
                    comp = _rank(w.read(Names.components("test")), masks, dev, size, batch_size)
                w.put(Names.COMPONENT_AUROC, comp.auroc)
                w.put(Names.COMPONENT_AUROC_ERROR, comp.error_bound)
                out["ranking"] = {"max_error": float(comp.error_bound.max()), "n_exact": comp.n_exact}
            bar.update(1)
            w.meta.update({**meta, "method": {"name": method.name, "options": method.options},
                           "state": state.meta, **out, "storage": look.storage, "device": str(dev)})
            # the cost, in the meta before the commit (the peak so far covers fit, scoring, metrics)
            rss, gpu = peak.so_far()
            w.meta["cost"] = {"fit_seconds": round(seconds["fit"], 4),
                              "predict_seconds": round(seconds["test"], 4),
                              "peak_memory_mb": rss, "peak_gpu_memory_mb": gpu, "memory_measure": peak.how,
                              "device": str(dev)}
        bar.update(1)
        progress.timings["cache write"] = progress.timings.get("cache write", 0.0) + w.commit_seconds
    return w.entry


def _scale_stats(y, m2, batch_size: int):
    """Colour-scale statistics streamed over the written Y and M2 (chunked readers)."""
    from .whitening import scale_stats_streamed
    return scale_stats_streamed(lambda: ((a.astype(np.float32, copy=False), b)  # float16 storage: squares in float32
                                         for a, b in zip(y.chunks(batch_size), m2.chunks(batch_size))))


def _rank(y, masks, dev, size, batch_size: int):
    """Single-component pixel AUROC of every component, streamed over the written Y."""
    import torch

    from .ranking import component_aurocs_streamed

    def chunks():
        for i in range(0, len(y), batch_size):
            yield (torch.from_numpy(y.rows(i, i + batch_size)).to(dev, torch.float32),
                   torch.from_numpy(masks.rows(i, i + batch_size)).to(dev))

    return component_aurocs_streamed(chunks, out_size=size)
