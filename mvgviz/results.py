"""Reading a fitted model's results from the cache: the only module that knows the array names.

A :class:`Model` is a category fitted with one backbone: its preprocessed images and masks
(:class:`CategoryArrays`) and one :class:`LayerModel` per layer, each the cached results of the
paper's Gaussian (:class:`mvgviz.models.MVG`) on that layer: the fitted state, the whitened
components Y and the M2 maps of both splits, image scores, colour-scale statistics, metrics and
the component ranking. ``export``, ``inspect`` and the viewer read results only through these
classes. The writers (:mod:`mvgviz.pipeline`) take the names from :class:`Names`.

Every map shown is the map that was scored: :meth:`LayerModel.y2`, :meth:`LayerModel.m2` and a
subset model's :meth:`LayerModel.m2_subset` (M2 restricted to some components, :mod:`mvgviz.variants`)
upsample with the method's ``to_pixels`` (torch's bilinear, :func:`mvgviz.metrics.upsample`),
the same function the metrics and the component ranking use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from . import __version__
from .cache import Entry
from .whitening import ScaleStats

if TYPE_CHECKING:
    from .backbones import LayerSpec
    from .data import Preprocessing
    from .diagnostics import Diagnostics


class Names:
    """Names of the cache entries' arrays and meta keys (data, features and model results)."""

    @staticmethod
    def files(split: str) -> str:  # data entry meta: relative file paths in index order
        return f"files_{split}"

    @staticmethod
    def defects(split: str) -> str:  # data entry meta: defect type per image
        return f"defects_{split}"

    @staticmethod
    def labels(split: str) -> str:  # data entry meta: 1 / 0 / -1 per image
        return f"labels_{split}"

    @staticmethod
    def features(split: str, index: int) -> str:  # feature entry: the backbone's index-th layer
        return f"feat_{split}_{index}"

    @staticmethod
    def images(split: str) -> str:
        return f"images_{split}"

    @staticmethod
    def masks(split: str) -> str:
        return f"masks_{split}"

    @staticmethod
    def state(name: str) -> str:
        return f"state_{name}"

    @staticmethod
    def components(split: str) -> str:
        return f"components_{split}"

    @staticmethod
    def maps(split: str) -> str:
        return f"maps_{split}"

    @staticmethod
    def image_scores(split: str) -> str:
        return f"image_scores_{split}"

    @staticmethod
    def image_components(split: str) -> str:  # image-level Gaussians: (N, K) whitened components
        return f"image_components_{split}"

    COMPONENT_AUROC = "component_auroc"
    PATTERN_MEAN = "pattern_mean"
    PATTERN_STD = "pattern_std"
    COMPONENT_AUROC_ERROR = "component_auroc_error"


@dataclass(frozen=True)
class CategoryArrays:
    """Preprocessed images and masks of a category, from the cache (memory-mapped)."""

    entry: Entry

    def images(self, split: str) -> np.ndarray:
        """(N, S, S, 3) uint8: the network's input before normalisation."""
        return self.entry.array(Names.images(split))

    def masks(self, split: str = "test") -> np.ndarray:
        """(N, S, S) bool ground truth (all False for good, train and unlabelled images)."""
        return self.entry.array(Names.masks(split))

    def reader(self, name: str, split: str):
        """A chunked reader (:class:`mvgviz.cache.NpyReader`) of ``images`` or ``masks``."""
        return self.entry.reader({"images": Names.images, "masks": Names.masks}[name](split))

    def files(self, split: str) -> list[str]:
        return self.entry.meta[Names.files(split)]

    def defect_types(self, split: str) -> list[str]:
        return self.entry.meta[Names.defects(split)]

    def n_images(self, split: str) -> int:
        return len(self.files(split))

    def labels(self, split: str) -> np.ndarray:
        """(N,) int64: 1 = defective, 0 = good, -1 = unknown (unlabelled test images)."""
        return np.asarray(self.entry.meta[Names.labels(split)], dtype=np.int64)

    @property
    def image_labels(self) -> bool:
        """Whether the test images' labels define an image AUROC."""
        return bool(self.entry.meta.get("image_labels", True))

    @property
    def pixel_labels(self) -> bool:
        """Whether the test masks are ground truth for pixel metrics."""
        return bool(self.entry.meta.get("pixel_labels", True))

    @property
    def label_note(self) -> str:
        """Why some metrics are not available ("" for fully labelled data)."""
        return str(self.entry.meta.get("label_note", ""))


class _EntryResults:
    """What every method's entry holds: metrics, curves, image scores, the cost of the run."""

    entry: Entry

    @property
    def meta(self) -> dict:
        return self.entry.meta

    @property
    def cache_key(self) -> str:
        return self.entry.key

    @property
    def dataset_fingerprint(self) -> str | None:
        return self.entry.parts.get("dataset")

    @property
    def metrics(self) -> dict:
        """image_auroc, pixel_auroc, pixel_aupr (average precision), aupro: float, or None where
        the data (or the method: no pixel map) cannot define it (see :attr:`metrics_note`)."""
        return {k: self.meta["metrics"][k] for k in ("image_auroc", "pixel_auroc", "pixel_aupr", "aupro")}

    @property
    def curves(self) -> dict:
        """Curves of the full model on the test split, for plots (thinned; the metrics are exact):
        ``image_roc``, ``roc`` (x = FPR, y = TPR), ``pr`` (x = recall, y = precision), ``pro``
        (x = FPR, y = per-region overlap), each ``{"x": [...], "y": [...]}``, where defined."""
        return self.meta.get("curves", {})

    @property
    def metrics_note(self) -> str:
        """Why some metric is None ("" when all are available)."""
        return self.meta["metrics"].get("note", "")

    @property
    def cost(self) -> dict:
        """``fit_seconds`` (the method's fit on cached features), ``predict_seconds`` (scoring the
        test split's cached features: image scores and the maps at the pixels), ``peak_memory_mb`` (the
        process's peak RSS while the method ran, :class:`mvgviz.footprint.PeakMemory`), and on
        CUDA ``peak_gpu_memory_mb``; None for entries written before they were recorded."""
        c = self.meta.get("cost") or {}
        return {k: c.get(k) for k in ("fit_seconds", "predict_seconds", "peak_memory_mb", "peak_gpu_memory_mb")}

    def image_scores(self, split: str = "test") -> np.ndarray:
        """(N,) image scores as evaluated (the MVG: the max of the upsampled M2 map)."""
        return np.asarray(self.entry.array(Names.image_scores(split), mmap=False))


@dataclass(frozen=True)
class LayerModel(_EntryResults):
    """One layer's fitted Gaussian, whitened features, maps and metrics (cache-backed)."""

    spec: "LayerSpec"
    entry: Entry
    image_size: int

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def channels(self) -> int:
        return self.spec.channels

    @property
    def feature_size(self) -> tuple[int, int]:
        return tuple(self.meta["feature_size"])

    @cached_property
    def method(self):
        """The :class:`mvgviz.models.MVG` this layer was fitted with."""
        from .models import METHODS
        m = self.meta["method"]
        return METHODS[m["name"]](**m["options"])

    def state(self, name: str) -> np.ndarray:
        """A fitted state array (``mean``, ``eigvals``, ``eigvecs``)."""
        return np.asarray(self.entry.array(Names.state(name), mmap=False))

    @cached_property
    def eigvals(self) -> np.ndarray:
        """(C,) ascending; 0 below the floor (those components are identically 0)."""
        return self.state("eigvals")

    @property
    def has_ranking(self) -> bool:
        """Whether single-component AUROCs exist (they need ground-truth masks)."""
        return Names.COMPONENT_AUROC in self.entry.arrays

    def _ranking_array(self, name: str) -> np.ndarray:
        if not self.has_ranking:
            raise ValueError(f"layer {self.name}: no component ranking: {self.metrics_note or 'no ground-truth masks'}")
        return np.asarray(self.entry.array(name, mmap=False))

    @cached_property
    def component_auroc(self) -> np.ndarray:
        """(C,) single-component pixel AUROC on the test split."""
        return self._ranking_array(Names.COMPONENT_AUROC)

    @cached_property
    def component_auroc_error(self) -> np.ndarray:
        """(C,) proven bound on |binned - exact| AUROC (0 where computed exactly)."""
        return self._ranking_array(Names.COMPONENT_AUROC_ERROR)

    def ranking(self) -> np.ndarray:
        """Component indices, best single-component AUROC first (ties: lower index first)."""
        return np.lexsort((np.arange(self.channels), -self.component_auroc))

    @cached_property
    def diagnostics(self) -> "Diagnostics":
        """Per-component artifact and value-range measures from the train split
        (:mod:`mvgviz.diagnostics`): input-independent pattern, border/corner/position scores."""
        from .diagnostics import Diagnostics
        return Diagnostics.from_cache(self.entry.array(Names.PATTERN_MEAN, mmap=False),
                                      self.entry.array(Names.PATTERN_STD, mmap=False), self.meta["diagnostics"])

    @property
    def cell_pixels(self) -> int:
        """Input pixels along one side of a feature cell (the layer's resolution: 32 for 7x7 at 224)."""
        return self.image_size // max(self.feature_size[0], 1)

    def stats(self, split: str) -> ScaleStats:
        return ScaleStats.from_dict(self.meta["stats"][split])

    def n_images(self, split: str) -> int:
        return int(self.entry.array(Names.maps(split)).shape[0])

    def y(self, split: str, images: Sequence[int] | slice | None = None,
          components: Sequence[int] | slice | None = None) -> np.ndarray:
        """Whitened features (n, k, h, w) float32, read from the memory map."""
        arr = self.entry.array(Names.components(split))
        out = arr[_index(images)]
        return np.asarray(out[:, _index(components)], dtype=np.float32)

    def y2(self, split: str, images=None, components=None, *, upsampled: bool = True) -> np.ndarray:
        """Squared components (n, k, H, W) float32; upsampled as they were scored."""
        y2 = np.square(self.y(split, images, components))
        return self.to_pixels(y2) if upsampled else y2

    def m2(self, split: str, images=None, *, upsampled: bool = True) -> np.ndarray:
        """M2 maps (n, H, W) float32; upsampled as they were scored."""
        m2 = np.asarray(self.entry.array(Names.maps(split))[_index(images)], dtype=np.float32)
        return self.to_pixels(m2[:, None])[:, 0] if upsampled else m2

    # --- subset models: M2_S = sum of y2_c over the components c in S (mvgviz.variants)
    def _subset(self, components) -> np.ndarray:
        """(k,) int64 component indices, ascending, unique; ParamError naming ``components``."""
        from .conventions import ParamError
        comps = np.unique(np.asarray(components, dtype=np.int64).reshape(-1))
        if comps.size == 0:
            raise ParamError("components", "is empty; a subset model needs at least one component")
        if comps[0] < 0 or comps[-1] >= self.channels:
            bad = int(comps[0] if comps[0] < 0 else comps[-1])
            raise ParamError("components", f": index {bad} is out of range for layer {self.name} "
                                           f"({self.channels} components); valid: 0..{self.channels - 1}")
        return comps

    def m2_subset(self, split: str, components, images=None, *, upsampled: bool = True) -> np.ndarray:
        """M2_S maps (n, H, W) float32 of the subset model S = ``components``: the squares of the
        stored components (float32) summed over S in float64, upsampled as scored. Exactly the maps
        :func:`mvgviz.variants.evaluate_subset` scores (:meth:`subset_chunks`); over all components,
        :meth:`m2` up to float rounding (M2 is stored from float64 Y)."""
        comps = self._subset(components)
        m2 = _sum_squares(self.y(split, images, comps))                  # (n, h, w)
        return self.to_pixels(m2[:, None])[:, 0] if upsampled else m2

    def subset_chunks(self, split: str, components, *, batch_size: int = 16):
        """M2_S maps (n, h, w) float32 at feature resolution, batch by batch over the whole split, read
        with plain file reads (resident memory: one batch of components)."""
        comps = self._subset(components)
        y = self.entry.reader(Names.components(split))
        for i in range(0, len(y), max(int(batch_size), 1)):
            yield _sum_squares(y.rows(i, i + batch_size)[:, comps])

    def m2_subset_p99(self, split: str, components) -> float:
        """The colour maximum of a subset model's maps: the 99th percentile of all M2_S values of
        ``split`` at feature resolution, like :attr:`ScaleStats.m2_p99` of M2 (exact, streamed over
        the cached components: :func:`mvgviz.whitening.percentile_streamed`). Computed once per
        (split, subset) and kept in memory with this layer."""
        from .whitening import percentile_streamed
        comps = self._subset(components)
        key = (split, comps.tobytes())
        cache = self._subset_p99
        if key not in cache:
            n_cells = int(self.channels) * int(np.prod(self.feature_size))
            step = max(1, (1 << 24) // max(n_cells, 1))                 # ~64 MB of float32 components a batch
            cache[key] = percentile_streamed(lambda: self.subset_chunks(split, comps, batch_size=step))
        return cache[key]

    @cached_property
    def _subset_p99(self) -> dict:
        return {}

    def to_pixels(self, maps: np.ndarray) -> np.ndarray:
        """(n, k, h, w) -> (n, k, S, S) float32 NumPy with the method's upsampling (the scored one)."""
        import torch
        t = torch.from_numpy(np.require(maps, np.float32, ["C", "W"]))  # a copy only when read-only
        return self.method.to_pixels(t, (self.image_size, self.image_size)).numpy()


@dataclass(frozen=True)
class MethodResult(_EntryResults):
    """One method fitted on a category (:func:`mvgviz.pipeline.fit_method`): any method of
    :mod:`mvgviz.models`, read from its cache entry. The paper's Gaussian shares its entry with
    :class:`LayerModel`."""

    entry: Entry
    data: CategoryArrays
    category: str
    backbone: str
    weights: str
    image_size: int
    computed: bool = False  # fitted by this call (False: read from the cache)

    @property
    def name(self) -> str:
        return self.meta["method"]["name"]

    @property
    def options(self) -> dict:
        return dict(self.meta["method"]["options"])

    @property
    def effective_options(self) -> dict:
        """The options with what the fit resolved from the data (e.g. SPADE's default K capped at
        the train set's size): ``state.meta["effective_options"]`` over :attr:`options`."""
        return {**self.options, **(self.meta.get("state", {}).get("effective_options") or {})}

    @cached_property
    def method(self):
        """The method object, rebuilt from its options (``for_backbone(spec, **options)``)."""
        from .backbones import get_spec
        from .models import METHODS
        return METHODS[self.name].for_backbone(get_spec(self.backbone), **self.options)

    @property
    def has_maps(self) -> bool:
        return Names.maps("test") in self.entry.arrays

    @property
    def has_image_components(self) -> bool:
        return Names.image_components("test") in self.entry.arrays

    @property
    def has_components(self) -> bool:
        """Whether the entry holds per-position whitened components (:meth:`components`)."""
        return Names.components("test") in self.entry.arrays

    @property
    def components_per_position(self) -> bool:
        """Whether one Gaussian is fitted per feature position (e.g. PaDiM: the state's mean has one
        row per position), so that each position whitens its components with its own Gaussian."""
        shape = (self.entry.info.get(Names.state("mean")) or {}).get("shape")
        return shape is not None and len(shape) >= 2

    @property
    def component_basis(self) -> str | None:
        """How the components were whitened, from the fitted state: ``"pca"`` (eigenvectors of the
        covariance: component c is the direction with the c-th smallest variance), ``"cholesky"``
        (sequential whitening: component c is the c-th kept embedding channel's standardised residual given the
        channels before it), None for a method without components or an unknown state."""
        if not self.has_components:
            return None
        if Names.state("eigvecs") in self.entry.arrays:
            return "pca"
        if Names.state("cholesky") in self.entry.arrays:
            return "cholesky"
        return None

    def components(self, split: str, images=None, components=None) -> np.ndarray:
        """(n, k, h, w) float32 whitened components at feature resolution (their squares add up to
        :meth:`maps` with ``upsampled=False``); a ValueError for a method without them."""
        if not self.has_components:
            raise ValueError(f"method {self.name!r} has no per-position components")
        out = self.entry.array(Names.components(split))[_index(images)]
        return np.asarray(out[:, _index(components)], dtype=np.float32)

    def n_images(self, split: str) -> int:
        return int(self.entry.array(Names.image_scores(split)).shape[0])

    def maps(self, split: str, images=None, *, upsampled: bool = True) -> np.ndarray:
        """(n, H, W) float32 maps as scored (``upsampled``: brought to the pixels with the method's
        ``to_pixels``), or at the resolution stored; a ValueError for a method without maps."""
        if not self.has_maps:
            raise ValueError(f"method {self.name!r} has no pixel maps (it scores whole images)")
        m = np.asarray(self.entry.array(Names.maps(split))[_index(images)], dtype=np.float32)
        if not upsampled:
            return m
        import torch
        t = torch.from_numpy(np.require(m[:, None], np.float32, ["C", "W"]))
        return self.method.to_pixels(t, (self.image_size, self.image_size))[:, 0].numpy()

    def image_components(self, split: str, images=None) -> np.ndarray:
        """(n, K) whitened components of the image-level Gaussians (see :attr:`component_groups`)."""
        if not self.has_image_components:
            raise ValueError(f"method {self.name!r} has no image-level components")
        return np.asarray(self.entry.array(Names.image_components(split))[_index(images)], dtype=np.float32)

    @property
    def component_groups(self) -> list[tuple[str, int]]:
        """``[(level, count), ...]``: which level each run of :meth:`image_components` belongs to."""
        return [(str(g), int(n)) for g, n in self.meta.get("state", {}).get("component_groups", [])]

    def summary(self) -> dict:
        """This method's row of ``mvgviz compare --json``."""
        return {"name": self.name, "options": self.effective_options, **self.metrics, **{
            k: v for k, v in self.cost.items() if k != "peak_gpu_memory_mb" or v is not None},
            "metrics_note": self.metrics_note, "cached": not self.computed}


def check_entry(entry: Entry) -> str | None:
    """Why an entry's values cannot be right (None: nothing found). Cheap: reads only the small
    arrays (eigenvalues, component AUROCs, image scores) and the shapes of the others.

    Refused: a metric that is not None and not in [0, 1] (NaN included); a negative or non-finite
    eigenvalue; a component AUROC outside [0, 1] or a negative error bound; a non-finite image
    score; arrays whose shapes disagree with each other or with the entry's meta (image counts,
    channels, feature size). Only what the entry holds is checked. Called by
    :meth:`mvgviz.cache.Store.get` before an entry is trusted.
    """
    kind = entry.parts.get("kind")
    meta, info = entry.meta, entry.info

    def shape(name):
        return tuple(info[name]["shape"]) if name in info else None

    def small(name):
        return np.asarray(entry.array(name, mmap=False))

    try:
        if kind == "data":
            for split in ("train", "test"):
                im, m = shape(Names.images(split)), shape(Names.masks(split))
                n = len(meta[Names.files(split)]) if Names.files(split) in meta else None
                if im is not None and (len(im) != 4 or im[3] != 3 or (n is not None and im[0] != n)):
                    return f"{Names.images(split)} has shape {im}, expected ({n}, S, S, 3)"
                if m is not None and im is not None and m != im[:3]:
                    return f"{Names.masks(split)} has shape {m}, expected {im[:3]}"
                if n is not None and len(meta.get(Names.labels(split), [0] * n)) != n:
                    return f"{Names.labels(split)} has {len(meta[Names.labels(split)])} labels for {n} images"
            return None
        if kind not in ("layer", "method"):
            return None
        for k, v in (meta.get("metrics") or {}).items():
            if k != "note" and v is not None and not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0):
                return f"metric {k} is {v!r}, not in [0, 1]"
        if Names.state("eigvals") in info:
            ev = small(Names.state("eigvals"))
            if ev.ndim < 1 or not np.all(np.isfinite(ev)) or np.any(ev < 0):
                return "state_eigvals has a negative or non-finite eigenvalue"
            if ev.ndim == 1 and "channels" in meta and len(ev) != meta["channels"]:  # one Gaussian per layer
                return f"state_eigvals has {len(ev)} values for {meta['channels']} channels"
        if Names.COMPONENT_AUROC in info:
            a = small(Names.COMPONENT_AUROC)
            if not np.all((a >= 0) & (a <= 1)):  # NaN fails both
                return f"{Names.COMPONENT_AUROC} has values outside [0, 1]"
            if "channels" in meta and a.shape != (meta["channels"],):
                return f"{Names.COMPONENT_AUROC} has shape {a.shape}, expected ({meta['channels']},)"
        if Names.COMPONENT_AUROC_ERROR in info:
            e = small(Names.COMPONENT_AUROC_ERROR)
            if not np.all(e >= 0):
                return f"{Names.COMPONENT_AUROC_ERROR} has negative or NaN values"
        for split in ("train", "test"):
            y, m, s = (shape(Names.components(split)), shape(Names.maps(split)),
                       shape(Names.image_scores(split)))
            if y is not None and "channels" in meta and "feature_size" in meta and \
                    (meta.get("method") or {}).get("name", "mvg") == "mvg" and \
                    y[1:] != (meta["channels"], *meta["feature_size"]):
                return f"{Names.components(split)} has shape {y}, expected (N, {meta['channels']}, " \
                       f"{', '.join(map(str, meta['feature_size']))})"
            if y is not None and m is not None and (m[0] != y[0] or m[1:] != y[2:]):
                return f"{Names.maps(split)} has shape {m}, {Names.components(split)} {y}"
            if s is not None:
                if m is not None and s != (m[0],):
                    return f"{Names.image_scores(split)} has shape {s}, expected ({m[0]},)"
                if not np.all(np.isfinite(small(Names.image_scores(split)))):
                    return f"{Names.image_scores(split)} has non-finite values"
        return None
    except (KeyError, TypeError, ValueError, OSError) as e:
        return f"unreadable values ({e})"


def _sum_squares(y: np.ndarray) -> np.ndarray:
    """y (n, k, h, w) -> (n, h, w) float32: the squares in float32 (as :meth:`LayerModel.y2`), summed
    over k in float64."""
    return np.square(np.asarray(y, dtype=np.float32)).sum(1, dtype=np.float64).astype(np.float32)


def metrics_at_resolution(model: "Model", layer: "LayerModel") -> dict:
    """A layer's input resolution and metrics (``report --beside``, the Overview's comparison):
    resize, crop, feature size, input pixels per cell, the four metrics and their note."""
    return {"resize": model.preprocessing.resize, "crop": model.preprocessing.crop,
            "feature_size": list(layer.feature_size), "cell_pixels": layer.cell_pixels, **layer.metrics,
            "metrics_note": layer.metrics_note}


def _finite(v: float) -> float | None:
    """A float for strict JSON: NaN and infinities become None."""
    return float(v) if np.isfinite(v) else None


def _index(sel):
    if sel is None:
        return slice(None)
    if isinstance(sel, slice):
        return sel
    return np.asarray(sel, dtype=np.int64)


@dataclass
class Model:
    """A fitted (category, backbone, weights, regulariser) with its layers."""

    root: Path
    category: str
    backbone: str
    weights: str
    reg: str
    preprocessing: "Preprocessing"
    data: CategoryArrays
    layers: dict[str, LayerModel]
    timings: dict[str, float] = field(default_factory=dict)
    computed_layers: tuple[str, ...] = ()
    weights_arg: str | None = None  # the fit()/load() ``weights`` argument (a file path, "random" or None)
    storage: str = "float32"
    unlabelled: bool = False

    @property
    def image_size(self) -> int:
        return self.preprocessing.crop

    def layer(self, name: str) -> LayerModel:
        from .backbones import get_spec
        key = get_spec(self.backbone).layer(name).name
        if key not in self.layers:
            raise KeyError(f"layer {name!r} was not fitted; fitted: {', '.join(self.layers)}")
        return self.layers[key]

    def report(self) -> dict:
        """The JSON report of ``mvgviz report --json`` (metrics null where undefined, with a note)."""
        def component(lm: LayerModel, c: int) -> dict:
            return {"index": c, "eigenvalue": float(lm.eigvals[c]),
                    "auroc": float(lm.component_auroc[c]) if lm.has_ranking else None,
                    "train_p99": float(train_p99[lm.name][c]), **lm.diagnostics.per_component(c)}

        train_p99 = {lm.name: lm.stats("train").per_component_p99 for lm in self.layers.values()}

        return {
            "category": self.category, "backbone": self.backbone, "weights": self.weights,
            "regularisation": self.reg, "image_size": self.image_size, "storage": self.storage,
            "mvgviz_version": __version__,
            "pixel_aupr_definition": "average precision (step-wise, as sklearn.metrics.average_precision_score)",
            "diagnostics_definition": "train split only; see mvgviz.diagnostics: border_score = mean pattern on "
                                      "the outer ring of cells / interior, corner_score = 4 corner cells / interior, "
                                      "position_score = share of the variance of y2_c explained by position, "
                                      "train_p99 = 99th percentile of y2_c (chi-square(1): 6.63), non_gaussianity = "
                                      "mean |excess kurtosis| of the components",
            "labels": {"image": self.data.image_labels, "pixel": self.data.pixel_labels,
                       "note": self.data.label_note},
            "layers": [{
                "name": lm.name, "channels": lm.channels, "feature_size": list(lm.feature_size),
                "cell_pixels": lm.cell_pixels, "non_gaussianity": _finite(lm.diagnostics.non_gaussianity),
                **lm.metrics, "metrics_note": lm.metrics_note,
                "components": [component(lm, c) for c in range(lm.channels)],
            } for lm in self.layers.values()],
        }
