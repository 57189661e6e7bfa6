"""Several methods' heatmaps of the same images side by side: one column per method.

The Methods page's figure and its export. It is a grid (:class:`~mvgviz.render.grid.GridData`),
so the raster (:func:`~mvgviz.render.raster.render_raster`) and the publication figure
(:func:`~mvgviz.render.figure.render_figure`) draw it as they draw the paper's grids:

- rows: images of one split (``spec.images``), columns: methods in the order given;
- a method with maps shows its map *as scored* (:meth:`mvgviz.results.MethodResult.maps`: brought
  to the pixels by the method's ``to_pixels``), alpha-blended over the image in inferno;
- **one colour scale per method**: its column spans ``0 .. p99`` of that method's maps over the
  whole ``spec.scale_split`` split, as scored (:func:`map_scale`), one colour bar per column
  labelled with that maximum. Methods' maps have different units (squared Mahalanobis distance for
  the Gaussians of the paper, a distance for PaDiM, a squared kNN distance for SPADE), so no scale is
  shared between columns; a scale is shared by all rows, so images compare within a column;
- a method without maps (image-level, e.g. Gaussian-AD) gets a column all the same: the image
  faded, with "no pixel map" and its image score written on it, and no colour bar.

:func:`methods_manifest` describes a figure in JSON (data, methods with their options, cache keys
and metrics, images, the maxima used), like the Grid's manifest.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, ClassVar, Mapping

import numpy as np

from .. import __version__
from ..conventions import GOOD, ParamError, check_split
from .grid import GridData, _int_tuple, check_display_options, metric_text, weights_label

if TYPE_CHECKING:
    from ..results import MethodResult

SCALE = "per-method"
MANIFEST_KIND = "mvgviz-methods-figure"
_MIN_VMAX = 1e-12
MAX_SCALE_VALUES = 20_000_000  # map_scale: values kept (a regular subsample of the pixels beyond this)


@dataclass(frozen=True)
class MethodsSpec:
    """What a methods figure shows; JSON-serialisable (:meth:`to_dict`).

    Parameters
    ----------
    split
        The split the rows come from (``"test"`` or ``"train"``).
    images
        Image indices in the split, one row each.
    scale_split
        The split whose maps set each column's maximum (the 99th percentile of all its values).
    show_image, outline, alpha
        As :class:`~mvgviz.render.grid.GridSpec`'s.
    """

    split: str = "test"
    images: tuple[int, ...] = (0,)
    scale_split: str = "test"
    show_image: bool = True
    outline: bool = True
    alpha: float = 0.5

    show_m2: ClassVar[bool] = False     # what the grid renderers ask of a spec
    scale: ClassVar[str] = SCALE

    def __post_init__(self) -> None:
        check_split(self.split)
        check_split(self.scale_split, param="scale_split")
        object.__setattr__(self, "images", _int_tuple(self.images, "images"))
        check_display_options(self, ("show_image", "outline"))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["images"] = list(self.images)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "MethodsSpec":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields)
        if unknown:
            raise ValueError(f"unknown methods-figure key(s) {', '.join(map(repr, unknown))}; "
                             f"expected {', '.join(sorted(fields))}")
        return cls(**d)


@dataclass(frozen=True)
class MethodsData(GridData):
    """A :class:`GridData` whose columns are methods; ``methods`` (m,) their labels, ``scale_split``
    the split whose p99 is each column's maximum."""

    methods: tuple[str, ...] = ()

    def scale_label(self, group: tuple[int, ...]) -> str:
        return f"max = p99 ({self.spec.scale_split})"


def map_scale(result: "MethodResult", split: str, *, batch: int = 16) -> float:
    """The 99th percentile of all values of a method's maps over ``split``, as scored (upsampled
    by the method's ``to_pixels``): the maximum of its colour scale. Read ``batch`` images at a
    time; beyond :data:`MAX_SCALE_VALUES` values a regular subsample of the pixels (every k-th row
    and column of every map) is used. A ValueError for a method without maps."""
    split = check_split(split)
    n = result.n_images(split)
    s = int(result.image_size)
    step = max(1, int(np.ceil(np.sqrt(n * s * s / MAX_SCALE_VALUES))))
    parts = [result.maps(split, slice(a, min(a + batch, n)))[:, ::step, ::step].ravel() for a in range(0, n, batch)]
    return float(np.percentile(np.concatenate(parts), 99))


def methods_data(results: Mapping[str, "MethodResult"], spec: MethodsSpec, *,
                 scales: Mapping[str, float] | None = None) -> MethodsData:
    """Gather the maps, colour-scale maxima and labels of a methods figure.

    Parameters
    ----------
    results
        ``{label: MethodResult}`` in column order, all of one category and data (the same images).
    spec
        What to show.
    scales
        ``{label: vmax}`` already computed (:func:`map_scale` of ``spec.scale_split``); the others
        are computed here.
    """
    if not results:
        raise ParamError("methods", "choose at least one method")
    labels = list(results)
    first = results[labels[0]]
    for lab in labels[1:]:
        r = results[lab]
        if (r.category, r.data.entry.key) != (first.category, first.data.entry.key):
            raise ValueError(f"method {lab!r} was fitted on other data than {labels[0]!r}")
    split = spec.split
    n_split = first.data.n_images(split)
    bad = [i for i in spec.images if not 0 <= i < n_split]
    if bad:
        raise ParamError("images", f": index {bad[0]} is out of range for the {split} split of {first.category} "
                                   f"({n_split} images); valid: 0..{n_split - 1}")
    imgs = list(spec.images)
    s = int(first.image_size)
    n, m = len(imgs), len(labels)
    maps = np.zeros((n, m, s, s), np.float32)
    vmax = np.ones(m, np.float64)
    blank, headers, texts, groups = [], [], [[""] * m for _ in range(n)], []
    scales = dict(scales or {})
    for j, lab in enumerate(labels):
        r = results[lab]
        if r.has_maps:
            maps[:, j] = r.maps(split, imgs)
            v = scales.get(lab)
            vmax[j] = max(float(v if v is not None else map_scale(r, spec.scale_split)), _MIN_VMAX)
            headers.append(f"{lab} (AUROC {metric_text(r.metrics['pixel_auroc'])})")
            groups.append((j,))
        else:
            blank.append(j)
            headers.append(f"{lab} (no pixel map)")
            scores = r.image_scores(split)
            for row, i in enumerate(imgs):
                texts[row][j] = f"no pixel map | image score {float(scores[i]):.4g}"
    types = first.data.defect_types(split)
    defects = tuple(str(types[i]) if split == "test" else GOOD for i in imgs)
    rows = tuple(f"img {i} | {d}" if split == "test" else f"img {i} | train" for i, d in zip(imgs, defects))
    panels = tuple(tuple(f"{r * m + j + 1} | img {i} | {labels[j]}" for j in range(m)) for r, i in enumerate(imgs))
    images = np.array(first.data.images(split)[imgs])                   # (n, S, S, 3) copy
    masks = np.array(first.data.masks(split)[imgs]) if split == "test" else None
    title = (f"{first.category} | {first.backbone} [{weights_label(first.weights)}] | {split} split | "
             f"{m} methods\ncolumn header: the method's pixel AUROC on the test split | image AUROC: "
             + ", ".join(f"{lab} {metric_text(results[lab].metrics['image_auroc'])}" for lab in labels))
    note = (f"per-method scale: each column spans 0..p99 of that method's maps (as scored) over the {spec.scale_split} "
            "split; the methods' units differ, so each column has its own colour bar; values above the max are clipped")
    if blank:
        note += ("; " + ", ".join(labels[j] for j in blank)
                 + " score whole images (no pixel map): the faded image and its image score")
    return MethodsData(spec=spec, images=images, masks=masks, maps=maps, vmax=vmax, column_labels=tuple(headers),
                       row_labels=rows, title=title, scale_note=note, panel_labels=panels, defects=defects,
                       scale_groups=tuple(groups), blank_columns=tuple(blank),
                       blank_texts=tuple(tuple(t) for t in texts), methods=tuple(labels))


def methods_manifest(results: Mapping[str, "MethodResult"], spec: MethodsSpec, data: MethodsData, *,
                     root: str | None = None) -> dict:
    """Everything the figure shows, in JSON types: data, methods (name, options, cache key,
    metrics, whether it has maps, its colour maximum), the spec, the images and the scale."""
    first = next(iter(results.values()))
    files = first.data.files(spec.split)
    types = first.data.defect_types(spec.split)
    return {
        "kind": MANIFEST_KIND,
        "mvgviz_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data": {"root": None if root is None else str(root), "category": first.category,
                 "dataset_fingerprint": first.dataset_fingerprint, "backbone": first.backbone,
                 "weights": first.weights, "image_size": int(first.image_size)},
        "spec": spec.to_dict(),
        "methods": [{"label": lab, "name": r.name, "options": r.options, "cache_key": r.cache_key,
                     "metrics": r.metrics, "metrics_note": r.metrics_note, "has_maps": bool(r.has_maps),
                     "vmax": float(data.vmax[j]) if r.has_maps else None}
                    for j, (lab, r) in enumerate(results.items())],
        "images": [{"index": int(i), "file": files[i], "defect": types[i]} for i in spec.images],
        "scale": {"mode": SCALE, "split": spec.scale_split, "columns": list(data.column_labels),
                  "vmax": [float(v) if j not in data.blank_columns else None for j, v in enumerate(data.vmax)],
                  "note": data.scale_note},
    }


__all__ = ["MANIFEST_KIND", "MethodsData", "MethodsSpec", "map_scale", "methods_data", "methods_manifest"]
