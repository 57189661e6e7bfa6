"""Fit a category end to end and read the results back from the cache.

``fit(root, category, ...)`` returns a :class:`Model`: one :class:`LayerModel` per layer,
each backed by a cache entry (whitened features Y of both splits, M2 maps, the Gaussian's
eigendecomposition, colour-scale statistics and metrics). Layers already cached are not
recomputed; missing ones are computed in one backbone pass.

Steps (their wall times land in ``Model.timings``): ``decode`` (read and preprocess the
images), ``backbone`` (feature maps), ``fit`` (streaming sums, eigendecomposition),
``whitening`` (Y, M2, colour-scale statistics), ``metrics`` (image/pixel AUROC, AUPR,
AUPRO), ``ranking`` (single-component pixel AUROC of every component), ``cache write``.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from . import __version__
from .backbones import RANDOM, LayerSpec, check_weights_available, get_spec, parse_layers, weights_tag
from .cache import Entry, Store, make_key
from .data import Category, Preprocessing, load_category, load_split_arrays
from .gaussian import reg_tag
from .progress import Progress
from .whitening import ScaleStats

# torch, scipy and the metrics are imported only when something must be computed, so
# that reading a warm cache (the viewer, ``report`` on a fitted category) starts fast.

SPLITS = ("train", "test")


class DeviceError(ValueError):
    pass


def check_device(device) -> str:
    """Validate a device name; ``cuda`` is checked against the machine (imports torch)."""
    d = str(device or "auto").lower()
    if d in ("auto", "cpu"):
        return d
    if d.startswith("cuda"):
        resolve_device(d)
        return d
    raise DeviceError(f"--device must be auto, cpu or cuda[:N], got {device!r}")


def resolve_device(device):
    """``"auto"`` -> CUDA when available, else CPU; ``"cuda"`` without CUDA is an error."""
    import torch
    d = str(device or "auto").lower()
    if d == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if d.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {d}: CUDA is not available here (torch {torch.__version__}, "
                              f"built for CUDA {torch.version.cuda or 'none'}, no usable GPU); "
                              "use --device cpu or auto")
        return torch.device(d)
    if d == "cpu":
        return torch.device("cpu")
    raise DeviceError(f"--device must be auto, cpu or cuda[:N], got {device!r}")


# ---------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CategoryArrays:
    """Preprocessed images and masks of a category, from the cache (memory-mapped)."""

    entry: Entry

    def images(self, split: str) -> np.ndarray:
        """(N, S, S, 3) uint8: the network's input before normalisation."""
        return self.entry.array(f"images_{split}")

    def masks(self, split: str = "test") -> np.ndarray:
        """(N, S, S) bool ground truth (all False for good and train images)."""
        return self.entry.array(f"masks_{split}")

    def files(self, split: str) -> list[str]:
        return self.entry.meta[f"files_{split}"]

    def defect_types(self, split: str) -> list[str]:
        return self.entry.meta[f"defects_{split}"]

    def labels(self, split: str) -> np.ndarray:
        return np.array([d != "good" for d in self.defect_types(split)], dtype=np.int64)


@dataclass(frozen=True)
class LayerModel:
    """One layer's fitted Gaussian, whitened features and metrics (cache-backed)."""

    spec: LayerSpec
    entry: Entry
    image_size: int

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def meta(self) -> dict:
        return self.entry.meta

    @property
    def channels(self) -> int:
        return self.spec.channels

    @property
    def feature_size(self) -> tuple[int, int]:
        return tuple(self.meta["feature_size"])

    @property
    def metrics(self) -> dict:
        """image_auroc, pixel_auroc, pixel_aupr (average precision), aupro."""
        return self.meta["metrics"]

    @cached_property
    def eigvals(self) -> np.ndarray:
        return np.asarray(self.entry.array("eigvals", mmap=False))

    @cached_property
    def component_auroc(self) -> np.ndarray:
        """(C,) single-component pixel AUROC on the test split."""
        return np.asarray(self.entry.array("component_auroc", mmap=False))

    @cached_property
    def component_auroc_error(self) -> np.ndarray:
        """(C,) proven bound on |binned - exact| AUROC (0 where computed exactly)."""
        return np.asarray(self.entry.array("component_auroc_error", mmap=False))

    def ranking(self) -> np.ndarray:
        """Component indices, best single-component AUROC first (ties: lower index first)."""
        return np.lexsort((np.arange(self.channels), -self.component_auroc))

    def stats(self, split: str) -> ScaleStats:
        return ScaleStats.from_dict(self.meta["stats"][split])

    def y(self, split: str, images: Sequence[int] | slice | None = None,
          components: Sequence[int] | slice | None = None) -> np.ndarray:
        """Whitened features (n, k, h, w) float32, read from the memory map."""
        arr = self.entry.array(f"y_{split}")
        images = slice(None) if images is None else images
        components = slice(None) if components is None else components
        if not isinstance(images, slice):
            images = np.asarray(images, dtype=np.int64)
        out = arr[images]
        if not isinstance(components, slice):
            components = np.asarray(components, dtype=np.int64)
        return np.asarray(out[:, components])

    def y2(self, split: str, images=None, components=None, *, upsampled: bool = True) -> np.ndarray:
        """Squared components (n, k, H, W); upsampled bilinear (OpenCV) to the input size."""
        y2 = np.square(self.y(split, images, components))
        return upsample_maps(y2, self.image_size) if upsampled else y2

    def m2(self, split: str, images=None, *, upsampled: bool = True) -> np.ndarray:
        """M2 maps (n, H, W); upsampled bilinear (OpenCV) to the input size."""
        arr = self.entry.array(f"m2_{split}")
        sel = slice(None) if images is None else (images if isinstance(images, slice)
                                                   else np.asarray(images, dtype=np.int64))
        m2 = np.asarray(arr[sel])
        return upsample_maps(m2[:, None], self.image_size)[:, 0] if upsampled else m2

    def image_scores(self) -> np.ndarray:
        """(N_test,) max of the upsampled M2 map per test image."""
        return np.asarray(self.entry.array("image_scores_test", mmap=False))


def upsample_maps(maps: np.ndarray, size: int) -> np.ndarray:
    """(n, k, h, w) -> (n, k, size, size) float32 with OpenCV INTER_LINEAR (the paper's)."""
    n, k, h, w = maps.shape
    if (h, w) == (size, size):
        return maps.astype(np.float32, copy=False)
    flat = np.ascontiguousarray(maps.reshape(n * k, h, w).transpose(1, 2, 0), dtype=np.float32)
    out = np.empty((n * k, size, size), dtype=np.float32)
    step = 128  # OpenCV 5 resizes at most 128 channels at once (CV_CN_MAX; 512 in OpenCV 4)
    for i in range(0, n * k, step):
        chunk = cv2.resize(flat[:, :, i:i + step], (size, size), interpolation=cv2.INTER_LINEAR)
        out[i:i + step] = chunk.reshape(size, size, -1).transpose(2, 0, 1)
    return out.reshape(n, k, size, size)


@dataclass
class Model:
    """A fitted (category, backbone, weights, regulariser) with its layers."""

    root: Path
    category: str
    backbone: str
    weights: str
    reg: str
    preprocessing: Preprocessing
    data: CategoryArrays
    layers: dict[str, LayerModel]
    timings: dict[str, float] = field(default_factory=dict)
    computed_layers: tuple[str, ...] = ()
    weights_arg: str | None = None  # the fit()/load() ``weights`` argument (a file path, "random" or None)

    @property
    def image_size(self) -> int:
        return self.preprocessing.crop

    def layer(self, name: str) -> LayerModel:
        key = get_spec(self.backbone).layer(name).name
        if key not in self.layers:
            raise KeyError(f"layer {name!r} was not fitted; fitted: {', '.join(self.layers)}")
        return self.layers[key]

    def report(self) -> dict:
        """The JSON report of ``mvgviz report --json``."""
        return {
            "category": self.category, "backbone": self.backbone, "weights": self.weights,
            "regularisation": self.reg, "image_size": self.image_size,
            "mvgviz_version": __version__,
            "pixel_aupr_definition": "average precision (step-wise, as sklearn.metrics.average_precision_score)",
            "layers": [{
                "name": lm.name, "channels": lm.channels, "feature_size": list(lm.feature_size),
                **{k: lm.metrics[k] for k in ("image_auroc", "pixel_auroc", "pixel_aupr", "aupro")},
                "components": [{"index": c, "eigenvalue": float(lm.eigvals[c]),
                                "auroc": float(lm.component_auroc[c])} for c in range(lm.channels)],
            } for lm in self.layers.values()],
        }


# ---------------------------------------------------------------------------------------
# Fitting
# ---------------------------------------------------------------------------------------

def fit(root: str | os.PathLike, category: str, *, backbone: str = "efficientnet_lite0",
        layers: str | Sequence[str] | None = None, weights: str | None = None, reg: str = "none",
        device: str = "auto", cache: str | os.PathLike | Store | None = None,
        preprocessing: Preprocessing | None = None, batch_size: int = 16,
        progress: Progress | None = None) -> Model:
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
        Images per backbone batch; changes memory and speed only.
    """
    progress = progress or Progress()
    check_device(device)
    look = _lookup(root, category, backbone, layers, weights, reg, cache, preprocessing)
    pre, wanted, wtag, rtag, store, cat, base, keys, entries = (
        look.pre, look.wanted, look.wtag, look.rtag, look.store, look.cat, look.base, look.keys, look.entries)
    missing = [l for l in wanted if entries[l.name] is None]
    if missing:  # before decoding anything: no weights, no work and no cache entry
        check_weights_available(backbone, weights)
    data = _ensure_data(store, cat, pre, progress)
    todo: list = []
    if missing:
        with ExitStack() as stack:
            for l in sorted(missing, key=lambda l: keys[l.name]):  # fixed order: no deadlock
                stack.enter_context(store.lock(keys[l.name]))
            entries.update({l.name: store.get(keys[l.name]) for l in missing})
            todo = [l for l in missing if entries[l.name] is None]  # another process may have done them
            if todo:
                _import_compute_stack(progress)
                if weights == RANDOM:
                    progress.message(f"WARNING: backbone {backbone} with RANDOM weights (not pretrained)")
                new = _compute_layers(store, cat, data, backbone, weights, todo, base, keys, reg,
                                      resolve_device(device), pre, batch_size, progress)
                entries.update(new)
    return Model(root=Path(root), category=cat.name, backbone=backbone, weights=wtag, reg=rtag,
                 preprocessing=pre, data=data,
                 layers={l.name: LayerModel(l, entries[l.name], pre.crop) for l in wanted},
                 timings=dict(progress.timings), computed_layers=tuple(l.name for l in todo),
                 weights_arg=None if weights is None else str(weights))


@dataclass(frozen=True)
class _Lookup:
    pre: Preprocessing
    wanted: tuple
    wtag: str
    rtag: str
    store: Store
    cat: Category
    base: dict
    keys: dict
    entries: dict


def _lookup(root, category, backbone, layers, weights, reg, cache, preprocessing) -> _Lookup:
    """Validate the options and find the cache entries of every wanted layer (None = missing)."""
    pre = preprocessing or Preprocessing()
    spec = get_spec(backbone)
    wanted = parse_layers(spec, layers)
    wtag = weights_tag(backbone, weights)
    rtag = reg_tag(reg)
    store = cache if isinstance(cache, Store) else Store(cache)
    cat = load_category(root, category)
    base = {"kind": "layer", "dataset": cat.fingerprint, "category": cat.name, "backbone": backbone,
            "weights": wtag, "preprocessing": pre.tag(), "reg": rtag, "version": __version__}
    keys = {l.name: store_key(base, l.name) for l in wanted}
    entries = {name: store.get(k) for name, k in keys.items()}
    return _Lookup(pre, wanted, wtag, rtag, store, cat, base, keys, entries)


def load(root: str | os.PathLike, category: str, *, backbone: str = "efficientnet_lite0",
         layers: str | Sequence[str] | None = None, weights: str | None = None, reg: str = "none",
         cache: str | os.PathLike | Store | None = None,
         preprocessing: Preprocessing | None = None) -> Model | None:
    """The model from the cache, or None if any part of it is not cached. Never computes,
    never waits on a lock, never imports torch: a cheap check for viewers. Same options as
    :func:`fit` (a cache entry from another mvgviz version is a miss: None)."""
    look = _lookup(root, category, backbone, layers, weights, reg, cache, preprocessing)
    data = look.store.get(_data_key(look.cat, look.pre)[0])
    if data is None or any(e is None for e in look.entries.values()):
        return None
    return Model(root=Path(root), category=look.cat.name, backbone=backbone, weights=look.wtag, reg=look.rtag,
                 preprocessing=look.pre, data=CategoryArrays(data),
                 layers={l.name: LayerModel(l, look.entries[l.name], look.pre.crop) for l in look.wanted},
                 weights_arg=None if weights is None else str(weights))


def store_key(base: dict, layer: str) -> str:
    return make_key({**base, "layer": layer})


def _import_compute_stack(progress: Progress) -> None:
    """Import torch and SciPy under their own timer ("startup"), so the step timings are honest."""
    import sys
    if "torch" in sys.modules and "scipy.stats" in sys.modules:
        return
    with progress.timer("startup"):
        import scipy.stats  # noqa: F401
        import torch  # noqa: F401


def _data_key(cat: Category, pre: Preprocessing) -> tuple[str, dict]:
    parts = {"kind": "data", "dataset": cat.fingerprint, "category": cat.name,
             "preprocessing": pre.tag(), "version": __version__}
    return make_key(parts), parts


def _ensure_data(store: Store, cat: Category, pre: Preprocessing, progress: Progress) -> CategoryArrays:
    key, parts = _data_key(cat, pre)
    entry = store.get(key)
    if entry is None:
        with store.lock(key):
            entry = store.get(key)
            if entry is None:
                _import_compute_stack(progress)
                arrays, meta = {}, {}
                with progress.task("decode", total=len(cat.train) + len(cat.test)) as t:
                    for name in SPLITS:
                        split = cat.split(name)
                        images, masks = load_split_arrays(split, pre, progress=t.update)
                        arrays[f"images_{name}"] = images
                        arrays[f"masks_{name}"] = masks
                        meta[f"files_{name}"] = [p.relative_to(cat.root).as_posix() for p in split.paths]
                        meta[f"defects_{name}"] = list(split.defect_types)
                with progress.timer("cache write"):
                    entry = store.put(key, parts, meta, arrays)
    return CategoryArrays(entry)


def _compute_layers(store: Store, cat: Category, data: CategoryArrays, backbone: str,
                    weights: str | None, todo: list[LayerSpec], base: dict, keys: dict,
                    reg: str, dev, pre: Preprocessing, batch_size: int,
                    progress: Progress) -> dict[str, Entry]:
    import torch

    from .data import to_network_input
    from .features import FeatureExtractor
    extractor = FeatureExtractor(backbone, tuple(todo), weights).to(dev)
    feats: dict[str, dict[str, np.ndarray]] = {s: {} for s in SPLITS}
    n_total = sum(len(data.files(s)) for s in SPLITS)
    with progress.task("backbone", total=n_total) as t:
        for split in SPLITS:
            images = data.images(split)
            n = images.shape[0]
            for i in range(0, n, batch_size):
                x = to_network_input(images[i:i + batch_size], pre, dev)
                out = extractor(x)
                for name, f in out.items():
                    if name not in feats[split]:
                        feats[split][name] = np.empty((n, *f.shape[1:]), dtype=np.float32)
                    # torch's copy converts device, dtype and memory format (channels-last on the CPU) at once
                    torch.from_numpy(feats[split][name][i:i + f.shape[0]]).copy_(f)
                t.update(x.shape[0])
    del extractor
    masks = torch.from_numpy(np.array(data.masks("test"))).to(dev)  # (N, S, S) bool, a writable copy
    labels = data.labels("test")
    out = {}
    for l in todo:
        out[l.name] = _fit_layer(store, l, feats["train"].pop(l.name), feats["test"].pop(l.name),
                                 masks, labels, base, keys[l.name], reg, dev, pre, progress)
    return out


def _chunks(arr: np.ndarray, size: int = 32):
    import torch
    return lambda: (torch.from_numpy(arr[i:i + size]) for i in range(0, arr.shape[0], size))


def _fit_layer(store: Store, l: LayerSpec, f_train: np.ndarray, f_test: np.ndarray,
               masks, labels: np.ndarray, base: dict, key: str, reg: str,
               dev, pre: Preprocessing, progress: Progress) -> Entry:
    """Fit, whiten, score and store one layer. masks: (N, S, S) bool tensor on ``dev``."""
    import torch

    from .gaussian import fit_gaussian
    from .metrics import auroc, component_aurocs, pixel_metrics, upsample
    from .whitening import Whitener, scale_stats
    size = (pre.crop, pre.crop)
    # one bar per layer, five steps; each step's time is recorded under its own name
    with progress.task(f"layer {l.name}", total=5) as bar:
        with progress.timer(f"fit {l.name}"):
            g = fit_gaussian(_chunks(f_train), reg=reg, device=dev)
        bar.update(1)
        arrays: dict[str, np.ndarray] = {"mean": g.mean, "eigvals": g.eigvals, "eigvecs": g.eigvecs}
        stats = {}
        with progress.timer(f"whitening {l.name}"):
            wh = Whitener(g, dev)
            for split, f in (("train", f_train), ("test", f_test)):
                parts = [tuple(t.cpu().numpy() for t in wh.with_m2(b)) for b in _chunks(f)()]
                y = np.concatenate([p[0] for p in parts], axis=0)  # (N, C, h, w)
                m2 = np.concatenate([p[1] for p in parts], axis=0)  # (N, h, w), summed in float64
                del parts
                arrays[f"y_{split}"], arrays[f"m2_{split}"] = y, m2
                stats[split] = scale_stats(y, m2).to_dict()
        bar.update(1)
        with progress.timer(f"metrics {l.name}"):
            m2_up = upsample(torch.from_numpy(arrays["m2_test"]).to(dev)[:, None], size)[:, 0]  # (N, S, S)
            image_scores = m2_up.flatten(1).max(1).values.cpu().numpy()
            metrics = {"image_auroc": auroc(image_scores, labels),
                       **pixel_metrics(m2_up, masks)}  # pixel AUROC, AUPR (average precision), AUPRO
            del m2_up
        bar.update(1)
        with progress.timer(f"ranking {l.name}"):
            comp = component_aurocs(torch.from_numpy(arrays["y_test"]).to(dev), masks, out_size=size)
        bar.update(1)
        arrays.update(component_auroc=comp.auroc, component_auroc_error=comp.error_bound,
                      image_scores_test=image_scores)
        meta = {"layer": l.name, "module": l.module, "channels": l.channels, "stride": l.stride,
                "feature_size": list(f_train.shape[2:]), "n_train_vectors": g.n_samples,
                "eig_floor": g.floor, "n_zero_eigvals": int((g.eigvals == 0).sum()),
                "shrinkage": g.shrinkage, "metrics": metrics, "stats": stats,
                "component_auroc_max_error": float(comp.error_bound.max()),
                "component_auroc_n_exact": comp.n_exact, "device": str(dev)}
        with progress.timer("cache write"):
            entry = store.put(key, {**base, "layer": l.name}, meta, arrays)
        bar.update(1)
    return entry
