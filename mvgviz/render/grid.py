"""What a grid shows (:class:`GridSpec`) and the data it shows (:class:`GridData`,
:func:`grid_data`), read from the cache's memory maps.

A grid shows ``n`` images (rows) of one split and ``k`` whitened components of one layer
(columns), optionally followed by an M2 column; see :mod:`mvgviz.render` for the colour
scales. Errors are :class:`~mvgviz.conventions.ParamError` naming the field or parameter.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..conventions import GOOD, ParamError, as_param_error, check_scale, check_split, is_defect

if TYPE_CHECKING:
    from ..results import LayerModel, Model

_MIN_VMAX = 1e-12                    # a zero p99 (dead component) would divide by zero

# ---------------------------------------------------------------------------------------
# What to show
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GridSpec:
    """What a grid shows; JSON-serialisable (:meth:`to_dict`), part of every manifest.

    Parameters
    ----------
    layer
        Layer name of the model's backbone (e.g. ``"_blocks[10]"``, ``"layer3"``).
    split
        ``"test"`` or ``"train"``.
    images
        Image indices in the split (sorted MVTec order, 0-based), one row each.
    components
        Component indices (0-based, ascending eigenvalue order), one column each.
    scale
        ``"per-component"`` or ``"cross-component"`` (see the module docstring).
    show_m2
        Add a last column with the M2 map (its maximum is ``m2_p99`` of the split).
    show_image
        Blend the heatmap over the image with ``alpha``; False shows the heatmap alone.
    outline
        Draw the ground-truth contour on test images that have a defect.
    alpha
        Heatmap weight of the blend, in [0, 1] (METHOD.md: 0.5).
    subset
        The model the M2 column shows: None (default) for the full model (M2 over all
        components), or a subset rule of :mod:`mvgviz.variants` (``"drop_border:5"``,
        ``"npca:5"``, ...): the column then shows ``M2_S``, the sum of ``y2_c`` over the
        components the rule keeps, labelled ``"M2 [rule]"``, on the scale 0 .. the 99th
        percentile of ``M2_S`` over the split. Stored in canonical form (``"npca:5"``).

    Lists given for ``images``/``components`` are stored as tuples of ``int``.
    """

    layer: str
    split: str = "test"
    images: tuple[int, ...] = (0,)
    components: tuple[int, ...] = (0,)
    scale: str = "per-component"
    show_m2: bool = True
    show_image: bool = True
    outline: bool = True
    alpha: float = 0.5
    subset: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.layer, str) or not self.layer.strip():
            raise ParamError("layer", f"must be a layer name, got {self.layer!r}")
        check_split(self.split)
        check_scale(self.scale)
        for name in ("images", "components"):
            object.__setattr__(self, name, _int_tuple(getattr(self, name), name))
        check_display_options(self, ("show_m2", "show_image", "outline"))
        if self.subset is not None:
            from ..variants import canonical_rule
            object.__setattr__(self, "subset", canonical_rule(self.subset))  # ParamError naming `subset`

    def to_dict(self) -> dict:
        """Plain JSON types: lists for the index tuples."""
        d = dataclasses.asdict(self)
        d["images"], d["components"] = list(self.images), list(self.components)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "GridSpec":
        """Inverse of :meth:`to_dict`; unknown or missing keys raise ValueError naming them."""
        if not isinstance(d, dict):
            raise ValueError(f"a grid spec must be a dict, got {type(d).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields)
        if unknown:
            raise ValueError(f"unknown grid spec key(s) {', '.join(map(repr, unknown))}; "
                             f"expected {', '.join(sorted(fields))}")
        if "layer" not in d:
            raise ValueError("grid spec: missing key 'layer'")
        return cls(**d)

    def replace(self, **changes) -> "GridSpec":
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)


def check_display_options(spec, flags: tuple[str, ...]) -> None:
    """Validate a frozen spec's true/false ``flags`` and its ``alpha`` in [0, 1], storing them as
    ``bool`` and ``float`` (ParamError naming the field)."""
    for name in flags:
        v = getattr(spec, name)
        if not isinstance(v, (bool, np.bool_)):
            raise ParamError(name, f"must be true or false, got {v!r}")
        object.__setattr__(spec, name, bool(v))
    try:
        alpha = float(spec.alpha)
    except (TypeError, ValueError):
        alpha = float("nan")
    if not 0.0 <= alpha <= 1.0:
        raise ParamError("alpha", f"must be a number in [0, 1], got {spec.alpha!r}")
    object.__setattr__(spec, "alpha", alpha)


def _int_tuple(values, name: str) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ParamError(name, f"must be a sequence of indices, got {values!r}")
    out = []
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise ParamError(name, f"must hold integer indices, got {v!r}")
        if v < 0:
            raise ParamError(name, f"indices must be >= 0, got {int(v)}")
        out.append(int(v))
    if not out:
        raise ParamError(name, "is empty; give at least one index")
    return tuple(out)


# ---------------------------------------------------------------------------------------
# Data of a grid
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GridData:
    """Everything a renderer needs; built by :func:`grid_data`, no model access after.

    Attributes
    ----------
    spec
        The :class:`GridSpec` shown.
    images
        (n, S, S, 3) uint8 RGB network inputs (before normalisation), one per row.
    masks
        (n, S, S) bool ground truth for the test split, None for the train split.
    maps
        (n, m, S, S) float32: the upsampled y2 maps of the k components, then (if
        ``spec.show_m2``) the upsampled M2 map; ``m = k + show_m2``.
    vmax
        (m,) float64 colour-scale maximum per column (minimum is always 0).
    column_labels
        (m,) e.g. ``"c 40 (AUROC 0.912)"`` and ``"M2"`` (``"M2 [npca:5]"`` for a subset model).
    row_labels
        (n,) e.g. ``"img 12 | crack"`` (test) or ``"img 3 | train"``.
    title
        Multi-line figure title (category, backbone and weights, layer, feature size,
        split, the layer's pixel AUROC / AUPR / AUPRO, scale mode).
    scale_note
        One sentence saying which colour scale is used and what it means.
    panel_labels
        (n, m) ``"3 | img 12 | c 40"``: 1-based in-plot index (row-major), image index,
        component index (``"M2"`` for the M2 column, ``"M2_S"`` for a subset model's).
    defects
        (n,) defect type per row (``"good"`` for good and train images).
    scale_groups
        Column index groups that share one colour bar: one per column (per-component),
        or all component columns together (cross-component), plus the M2 column.
    blank_columns
        Columns that have no map (e.g. an image-level method beside methods with maps,
        :mod:`mvgviz.render.methods`): their panels show the image faded, with
        ``blank_texts[i][j]`` written on it, and no colour bar (they are in no scale group).
    blank_texts
        (n, m) text written on the blank panels ("" elsewhere); may be empty.
    """

    spec: GridSpec
    images: np.ndarray
    masks: np.ndarray | None
    maps: np.ndarray
    vmax: np.ndarray
    column_labels: tuple[str, ...]
    row_labels: tuple[str, ...]
    title: str
    scale_note: str
    panel_labels: tuple[tuple[str, ...], ...] = ()
    defects: tuple[str, ...] = ()
    scale_groups: tuple[tuple[int, ...], ...] = ()
    blank_columns: tuple[int, ...] = ()
    blank_texts: tuple[tuple[str, ...], ...] = ()

    @property
    def n_rows(self) -> int:
        return int(self.maps.shape[0])

    @property
    def n_cols(self) -> int:
        return int(self.maps.shape[1])

    def scale_label(self, group: tuple[int, ...]) -> str:
        """Caption of a colour bar: what its maximum is."""
        s = self.spec.split
        j = group[0]
        if self.spec.show_m2 and j == self.n_cols - 1:
            return f"{'M2' if self.spec.subset is None else 'M2_S'}, max = p99 ({s})"  # the header names the rule
        if len(group) > 1 or self.spec.scale == "cross-component":
            return f"all y2, max = p99 ({s})"
        return f"y2_c{self.spec.components[j]}, max = p99 ({s})"


def _layer(model: "Model", name: str) -> "LayerModel":
    try:
        return model.layer(name)
    except (KeyError, ValueError) as e:
        raise as_param_error(e, "layer") from None


def _check_indices(values: tuple[int, ...], hi: int, param: str, what: str) -> None:
    bad = [v for v in values if not 0 <= v < hi]
    if bad:
        raise ParamError(param, f": index {bad[0]} is out of range for {what}; valid: 0..{hi - 1}")


def m2_label(subset: str | None) -> str:
    """The M2 column's name: ``"M2"`` for the full model, ``"M2 [npca:5]"`` for a subset model."""
    return "M2" if subset is None else f"M2 [{subset}]"


def metric_text(value) -> str:
    """A metric in a title or label: 3 decimals, or n/a where the data cannot define it."""
    return "n/a" if value is None else f"{value:.3f}"


def weights_label(weights: str) -> str:
    """The weights tag as shown in titles; random backbones are shouted."""
    return weights if "RANDOM" not in weights else f"!! {weights} !!"


def grid_data(model: "Model", spec: GridSpec) -> GridData:
    """Gather the maps, colour-scale maxima and labels of a grid.

    Reads only ``spec.images`` x ``spec.components`` of the split's whitened features
    (:meth:`LayerModel.y2`) and the M2 maps of ``spec.images`` from the cache's memory
    maps, plus those images (and masks) of the split.

    Parameters
    ----------
    model
        A fitted :class:`~mvgviz.pipeline.Model` with ``spec.layer``.
    spec
        What to show.

    Returns
    -------
    GridData
        ``maps`` (n, k[+1], S, S) float32 equal to ``LayerModel.y2(split, images,
        components)`` then ``LayerModel.m2(split, images)`` (with ``spec.subset``:
        ``LayerModel.m2_subset(split, S, images)``, S the rule's components, on the scale
        ``LayerModel.m2_subset_p99(split, S)``).

    Raises
    ------
    ValueError
        Unknown or unfitted layer, image or component index out of range, a subset rule
        that does not fit the layer (:class:`~mvgviz.conventions.ParamError` naming ``subset``).
    """
    lm = _layer(model, spec.layer)
    split = spec.split
    files = model.data.files(split)
    n_split = len(files)
    _check_indices(spec.images, n_split, "images", f"the {split} split of {model.category} ({n_split} images)")
    _check_indices(spec.components, lm.channels, "components",
                   f"layer {lm.name} ({lm.channels} components)")
    imgs = list(spec.images)
    comps = list(spec.components)
    maps = lm.y2(split, imgs, comps, upsampled=True)                    # (n, k, S, S)
    stats = lm.stats(split)
    if spec.scale == "per-component":
        vmax = np.asarray(stats.per_component_p99, dtype=np.float64)[comps]
    else:
        vmax = np.full(len(comps), float(stats.cross_component_p99))
    sub = None
    if spec.show_m2:
        if spec.subset is None:
            m2 = lm.m2(split, imgs, upsampled=True)                      # (n, S, S)
            m2_max = float(stats.m2_p99)
        else:
            from ..variants import subset_of
            sub = subset_of(lm, spec.subset)                              # ParamError naming `subset`
            m2 = lm.m2_subset(split, sub.components, imgs, upsampled=True)  # (n, S, S): M2_S as scored
            m2_max = lm.m2_subset_p99(split, sub.components)
        maps = np.concatenate([maps, m2[:, None]], axis=1)               # (n, k+1, S, S)
        vmax = np.append(vmax, m2_max)
    maps = np.ascontiguousarray(maps, dtype=np.float32)
    dead = ~(vmax > _MIN_VMAX)
    vmax = np.where(dead, _MIN_VMAX, vmax)

    images = np.array(model.data.images(split)[imgs])                      # (n, S, S, 3) copy
    masks = np.array(model.data.masks(split)[imgs]) if split == "test" else None
    types = model.data.defect_types(split)
    defects = tuple(str(types[i]) if split == "test" else GOOD for i in imgs)

    auroc = lm.component_auroc if lm.has_ranking else None
    m2_name = m2_label(sub.rule if sub is not None else None)
    col = [f"c {c} (AUROC {metric_text(None if auroc is None else auroc[c])})" for c in comps] + (
        [m2_name] if spec.show_m2 else [])
    rows = tuple(f"img {i} | {d}" if split == "test" else f"img {i} | train" for i, d in zip(imgs, defects))
    names = [f"c {c}" for c in comps] + ((["M2"] if sub is None else ["M2_S"]) if spec.show_m2 else [])
    m = len(names)
    panels = tuple(tuple(f"{r * m + j + 1} | img {i} | {names[j]}" for j in range(m))
                   for r, i in enumerate(imgs))
    k = len(comps)
    groups = (tuple((j,) for j in range(k)) if spec.scale == "per-component" else (tuple(range(k)),))
    if spec.show_m2:
        groups = groups + ((k,),)

    met = lm.metrics
    h, w = lm.feature_size
    stride = model.image_size // max(h, 1)
    title = (f"{model.category} | {model.backbone} [{weights_label(model.weights)}] | reg {model.reg}\n"
             f"layer {lm.name}: {lm.channels} components @ {h}x{w} (1 cell = {stride}x{stride} px) | "
             f"{split} split\n"
             f"layer pixel AUROC {metric_text(met['pixel_auroc'])} | AUPR {metric_text(met['pixel_aupr'])} | "
             f"AUPRO {metric_text(met['aupro'])} | image AUROC {metric_text(met['image_auroc'])} | scale: {spec.scale}")
    if sub is not None:
        title += f"\nlast column: {m2_name}, a subset model: {sub.description}"
    m2_note = (f"M2 spans 0..p99 of M2 over the {split} split" if sub is None else
               f"{m2_name} (M2_S, the sum of y2_c over the {len(sub.components)} components the rule keeps) "
               f"spans 0..p99 of M2_S over the {split} split")
    if spec.scale == "per-component":
        note = (f"per-component scale: column c spans 0..p99 of y2_c over the {split} split; "
                f"{m2_note}; values above the max are clipped")
    else:
        note = (f"cross-component scale: every component column spans 0..{float(stats.cross_component_p99):.3g} "
                f"(p99 of all y2 of the layer over the {split} split), so a row's component maps add up to "
                + ("its M2 map" if sub is None else "its M2_S map when they are the rule's components")
                + f"; {m2_note}; values above the max are clipped")
    if dead.any():
        note += "; columns with p99 = 0 (dead components) use max 1e-12"
    return GridData(spec=spec, images=images, masks=masks, maps=maps, vmax=vmax,
                    column_labels=tuple(col), row_labels=rows, title=title, scale_note=note,
                    panel_labels=panels, defects=defects, scale_groups=groups)


def blank_text(data: GridData, row: int, col: int) -> str | None:
    """The text of a blank panel (a column without a map), None for a panel with a map."""
    if col not in data.blank_columns:
        return None
    return data.blank_texts[row][col] if data.blank_texts else ""


def outline_visible(data: GridData, row: int) -> bool:
    """Whether row ``row`` gets a ground-truth contour (test split, defect image, outline on)."""
    return bool(data.spec.outline and data.masks is not None and is_defect(data.defects[row])
                and data.masks[row].any())
