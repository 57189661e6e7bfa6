"""Grids of per-component heatmaps: selection, data, a fast raster and a publication figure.

A grid shows ``n`` images (rows) of one split and ``k`` whitened components of one layer
(columns), optionally followed by an M2 column. Panel ``(i, j)`` is the heatmap
``y2_c = Y_c**2`` of image ``images[i]`` and component ``components[j]``, computed at
feature resolution and upsampled bilinear (OpenCV ``INTER_LINEAR``) to the input size,
alpha-blended over the image (METHOD.md, Visualisation)::

    overlay = (1 - alpha) * image + alpha * inferno(clip(map / vmax, 0, 1))   # alpha = 0.5

The colour scale starts at 0; its maximum ``vmax`` per column is

==================  ====================================================  ===============
scale               component columns                                     M2 column
==================  ====================================================  ===============
per-component       ``per_component_p99[c]`` of the split shown           ``m2_p99``
cross-component     ``cross_component_p99`` of the split (one for all)    ``m2_p99``
==================  ====================================================  ===============

(the statistics are :class:`mvgviz.whitening.ScaleStats` of the split shown, at feature
resolution). Values above ``vmax`` take the top colour. With the cross-component scale a
row's component heatmaps share one scale, so their visual sum is the M2 map (when every
component is shown).

Three steps, so that the Streamlit viewer and the exporter share everything:

- :func:`grid_data` reads only the requested images and components from the cache's
  memory maps and gathers maps, colour-scale maxima and labels into a :class:`GridData`;
- :func:`render_raster` composes the whole grid (labels, title, colour bars) into one
  RGB ``uint8`` array with OpenCV, fast enough for interactive use;
- :func:`render_figure` draws the same grid as a matplotlib :class:`~matplotlib.figure.Figure`
  for publication (PNG/PDF/SVG, see :mod:`mvgviz.export`).

Both renderers use the same 256-entry inferno table and the same bin rule as matplotlib
(``index = floor(256 * v / vmax)``, clipped to 0..255), so a raster and a figure of one
grid show the same colours. Nothing here imports streamlit or pyplot.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Sequence

import cv2
import numpy as np

from .conventions import ANY_DEFECT, SCALES, SPLITS  # noqa: F401  (re-exported, old import path)
from .selection import parse_components, parse_images  # noqa: F401  (re-exported, old import path)

if TYPE_CHECKING:  # matplotlib is imported only by render_figure
    from matplotlib.figure import Figure

    from .pipeline import LayerModel, Model

CMAP = "inferno"
OUTLINE_RGB = (0, 255, 255)          # cyan: reads on every inferno colour
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

    def __post_init__(self) -> None:
        if not isinstance(self.layer, str) or not self.layer.strip():
            raise ValueError(f"`layer` must be a layer name, got {self.layer!r}")
        if self.split not in SPLITS:
            raise ValueError(f"--split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if self.scale not in SCALES:
            raise ValueError(f"--scale must be one of {', '.join(SCALES)}, got {self.scale!r}")
        for name in ("images", "components"):
            object.__setattr__(self, name, _int_tuple(getattr(self, name), name))
        for name in ("show_m2", "show_image", "outline"):
            v = getattr(self, name)
            if not isinstance(v, (bool, np.bool_)):
                raise ValueError(f"`{name}` must be true or false, got {v!r}")
            object.__setattr__(self, name, bool(v))
        try:
            alpha = float(self.alpha)
        except (TypeError, ValueError):
            alpha = float("nan")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"`alpha` must be a number in [0, 1], got {self.alpha!r}")
        object.__setattr__(self, "alpha", alpha)

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


def _int_tuple(values, name: str) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"`{name}` must be a sequence of indices, got {values!r}")
    out = []
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"`{name}` must hold integer indices, got {v!r}")
        if v < 0:
            raise ValueError(f"`{name}` indices must be >= 0, got {int(v)}")
        out.append(int(v))
    if not out:
        raise ValueError(f"`{name}` is empty; give at least one index")
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
        (m,) e.g. ``"c 40 (AUROC 0.912)"`` and ``"M2"``.
    row_labels
        (n,) e.g. ``"img 12 | crack"`` (test) or ``"img 3 | train"``.
    title
        Multi-line figure title (category, backbone and weights, layer, feature size,
        split, the layer's pixel AUROC / AUPR / AUPRO, scale mode).
    scale_note
        One sentence saying which colour scale is used and what it means.
    panel_labels
        (n, m) ``"3 | img 12 | c 40"``: 1-based in-plot index (row-major), image index,
        component index (``"M2"`` for the M2 column).
    defects
        (n,) defect type per row (``"good"`` for good and train images).
    scale_groups
        Column index groups that share one colour bar: one per column (per-component),
        or all component columns together (cross-component), plus the M2 column.
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
            return f"M2, max = p99 ({s})"
        if len(group) > 1 or self.spec.scale == "cross-component":
            return f"all y2, max = p99 ({s})"
        return f"y2_c{self.spec.components[j]}, max = p99 ({s})"


def _layer(model: "Model", name: str) -> "LayerModel":
    try:
        return model.layer(name)
    except (KeyError, ValueError) as e:
        msg = e.args[0] if e.args else str(e)
        raise ValueError(f"--layer: {msg}") from None


def _check_indices(values: tuple[int, ...], hi: int, arg: str, what: str) -> None:
    bad = [v for v in values if not 0 <= v < hi]
    if bad:
        raise ValueError(f"{arg}: index {bad[0]} is out of range for {what}; valid: 0..{hi - 1}")


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
        components)`` then ``LayerModel.m2(split, images)``.

    Raises
    ------
    ValueError
        Unknown or unfitted layer, image or component index out of range.
    """
    lm = _layer(model, spec.layer)
    split = spec.split
    files = model.data.files(split)
    n_split = len(files)
    _check_indices(spec.images, n_split, "--images", f"the {split} split of {model.category} ({n_split} images)")
    _check_indices(spec.components, lm.channels, "--components",
                   f"layer {lm.name} ({lm.channels} components)")
    imgs = list(spec.images)
    comps = list(spec.components)
    maps = lm.y2(split, imgs, comps, upsampled=True)                    # (n, k, S, S)
    stats = lm.stats(split)
    if spec.scale == "per-component":
        vmax = np.asarray(stats.per_component_p99, dtype=np.float64)[comps]
    else:
        vmax = np.full(len(comps), float(stats.cross_component_p99))
    if spec.show_m2:
        m2 = lm.m2(split, imgs, upsampled=True)                          # (n, S, S)
        maps = np.concatenate([maps, m2[:, None]], axis=1)               # (n, k+1, S, S)
        vmax = np.append(vmax, float(stats.m2_p99))
    maps = np.ascontiguousarray(maps, dtype=np.float32)
    dead = ~(vmax > _MIN_VMAX)
    vmax = np.where(dead, _MIN_VMAX, vmax)

    images = np.array(model.data.images(split)[imgs])                      # (n, S, S, 3) copy
    masks = np.array(model.data.masks(split)[imgs]) if split == "test" else None
    types = model.data.defect_types(split)
    defects = tuple(str(types[i]) if split == "test" else "good" for i in imgs)

    auroc = lm.component_auroc
    col = [f"c {c} (AUROC {auroc[c]:.3f})" for c in comps] + (["M2"] if spec.show_m2 else [])
    rows = tuple(f"img {i} | {d}" if split == "test" else f"img {i} | train" for i, d in zip(imgs, defects))
    names = [f"c {c}" for c in comps] + (["M2"] if spec.show_m2 else [])
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
             f"layer pixel AUROC {met['pixel_auroc']:.3f} | AUPR {met['pixel_aupr']:.3f} | "
             f"AUPRO {met['aupro']:.3f} | image AUROC {met['image_auroc']:.3f} | scale: {spec.scale}")
    if spec.scale == "per-component":
        note = (f"per-component scale: column c spans 0..p99 of y2_c over the {split} split; "
                f"M2 spans 0..p99 of M2 over the {split} split; values above the max are clipped")
    else:
        note = (f"cross-component scale: every component column spans 0..{float(stats.cross_component_p99):.3g} "
                f"(p99 of all y2 of the layer over the {split} split), so a row's component maps add up to "
                f"its M2 map; M2 spans 0..p99 of M2; values above the max are clipped")
    if dead.any():
        note += "; columns with p99 = 0 (dead components) use max 1e-12"
    return GridData(spec=spec, images=images, masks=masks, maps=maps, vmax=vmax,
                    column_labels=tuple(col), row_labels=rows, title=title, scale_note=note,
                    panel_labels=panels, defects=defects, scale_groups=groups)


def outline_visible(data: GridData, row: int) -> bool:
    """Whether row ``row`` gets a ground-truth contour (test split, defect image, outline on)."""
    return bool(data.spec.outline and data.masks is not None and data.defects[row] != "good"
                and data.masks[row].any())


# ---------------------------------------------------------------------------------------
# Colours
# ---------------------------------------------------------------------------------------

@lru_cache(maxsize=4)
def colormap_lut(name: str = CMAP) -> np.ndarray:
    """(256, 3) uint8 RGB table of a matplotlib colour map (matplotlib's own 256 colours)."""
    from matplotlib import colormaps
    rgba = colormaps[name].resampled(256)(np.arange(256))                  # (256, 4) float
    lut = (rgba[:, :3] * 255.0 + 0.5).astype(np.uint8)
    lut.setflags(write=False)
    return lut


def colour_index(maps: np.ndarray, vmax: np.ndarray) -> np.ndarray:
    """Colour-table index of maps on a [0, vmax] scale, matplotlib's binning.

    Parameters
    ----------
    maps
        (..., m, H, W) float maps.
    vmax
        (m,) maxima; values above take index 255, below 0 take index 0.

    Returns
    -------
    (..., m, H, W) uint8 ``clip(floor(256 * maps / vmax), 0, 255)``.
    """
    scale = (256.0 / np.asarray(vmax, dtype=np.float64)).astype(np.float32)[:, None, None]  # (m, 1, 1)
    x = maps * scale
    np.clip(x, 0.0, 255.0, out=x)
    return x.astype(np.uint8)  # truncation = floor for x >= 0


def heat_rgb(maps: np.ndarray, vmax: np.ndarray, cmap: str = CMAP) -> np.ndarray:
    """(..., m, H, W) maps -> (..., m, H, W, 3) uint8 RGB heatmaps."""
    return colormap_lut(cmap)[colour_index(maps, vmax)]


def blend(image: np.ndarray, heat: np.ndarray, alpha: float) -> np.ndarray:
    """``round((1 - alpha) * image + alpha * heat)`` for (H, W, 3) uint8 arrays (OpenCV)."""
    return cv2.addWeighted(image, 1.0 - alpha, heat, alpha, 0.0)


def panel_rgb(data: GridData, row: int, col: int) -> np.ndarray:
    """One panel as shown in the raster, without labels: (S, S, 3) uint8 RGB."""
    heat = heat_rgb(data.maps[row, col:col + 1], data.vmax[col:col + 1])[0]
    out = blend(data.images[row], heat, data.spec.alpha) if data.spec.show_image else heat.copy()
    if outline_visible(data, row):
        cv2.drawContours(out, _contours(data.masks[row]), -1, OUTLINE_RGB, 1, cv2.LINE_8)
    return out


def _contours(mask: np.ndarray):
    cs, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    return cs


def format_value(v: float) -> str:
    """Tick label: 3 significant digits, no trailing zeros."""
    v = float(v)
    if v == 0:
        return "0"
    s = f"{v:.3g}"
    if "e" in s:
        m, e = s.split("e")
        s = f"{m}e{int(e)}"
    return s


# ---------------------------------------------------------------------------------------
# Fast raster (OpenCV)
# ---------------------------------------------------------------------------------------

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_INK = (20, 20, 20)
_PAPER = 255


def _text_size(text: str, scale: float, thick: int = 1) -> tuple[int, int, int]:
    (w, h), base = cv2.getTextSize(text, _FONT, scale, thick)
    return w, h, base


def _put(canvas: np.ndarray, text: str, x: int, y_top: int, scale: float, *, thick: int = 1,
         color=_INK, anchor: str = "left") -> None:
    """Draw ``text`` with its top-left (or top-centre / top-right) at (x, y_top)."""
    w, h, _ = _text_size(text, scale, thick)
    if anchor == "center":
        x -= w // 2
    elif anchor == "right":
        x -= w
    cv2.putText(canvas, text, (int(x), int(y_top + h)), _FONT, scale, color, thick, cv2.LINE_AA)


def _fit_text(text: str, width: int, scale: float, thick: int = 1) -> str:
    """Shorten ``text`` with '..' until it fits ``width`` pixels."""
    if _text_size(text, scale, thick)[0] <= width:
        return text
    while len(text) > 3 and _text_size(text + "..", scale, thick)[0] > width:
        text = text[:-1]
    return text + ".."


def wrap_text(text: str, fits, seps: tuple[str, ...] = (" | ", "; ", " ")) -> list[str]:
    """Greedy wrap of each line of ``text``: break at the first separator of ``seps`` that
    makes the pieces ``fits(piece)``, trying the next separator inside pieces still too long.
    A single word that does not fit is kept whole (renderers shorten it)."""
    out: list[str] = []
    for line in text.split("\n"):
        out.extend(_wrap_line(line, fits, seps))
    return out


def _wrap_line(line: str, fits, seps: tuple[str, ...]) -> list[str]:
    if fits(line) or not seps:
        return [line]
    sep, rest = seps[0], seps[1:]
    parts = line.split(sep)
    if len(parts) == 1:
        return _wrap_line(line, fits, rest)
    lines, cur = [], ""
    for p in parts:
        cand = p if not cur else cur + sep + p
        if fits(cand) or not cur:
            cur = cand
        else:
            lines.append(cur)
            cur = p
    lines.append(cur)
    out = []
    for ln in lines:
        out.extend(_wrap_line(ln, fits, rest) if not fits(ln) else [ln])
    return out


def _wrap(text: str, width: int, scale: float, thick: int = 1) -> list[str]:
    """Wrap to ``width`` pixels of OpenCV text; words still too long are shortened with '..'."""
    lines = wrap_text(text, lambda t: _text_size(t, scale, thick)[0] <= width)
    return [_fit_text(t, width, scale, thick) for t in lines]


@dataclass(frozen=True)
class RasterLayout:
    """Pixel geometry of a raster grid (see :func:`raster_layout`)."""

    size: int                   # panel side S
    panel_x: tuple[int, ...]    # (m,) left edge of each column's panels
    panel_y: tuple[int, ...]    # (n,) top edge of each row's panels
    width: int
    height: int
    title_lines: tuple[str, ...]
    note_lines: tuple[str, ...]
    header_y: int               # top of the column-header line
    bar_y: int                  # top of the colour bars
    note_y: int                 # top of the scale note


# text scales and spacing of the raster, at S = 224
_TITLE_SCALE, _HEAD_SCALE, _LABEL_SCALE, _TICK_SCALE = 0.5, 0.42, 0.38, 0.38
_LINE = 18          # title/note line height
_HEAD_H = 20        # column-header strip
_LABEL_H = 15       # per-panel label strip
_ROW_LABEL_W = 22   # rotated row label
_GAP, _M2_GAP, _ROW_GAP, _MARGIN = 6, 14, 6, 10
_MIN_WIDTH = 480
_BAR_H, _BAR_BLOCK = 12, 12 + 4 + 14 + 16   # bar, tick marks, tick labels, caption


def raster_layout(data: GridData) -> RasterLayout:
    """Where everything of :func:`render_raster` goes."""
    n, m = data.n_rows, data.n_cols
    s = data.images.shape[1]
    x0 = _MARGIN + _ROW_LABEL_W + 4
    xs, x = [], x0
    for j in range(m):
        if data.spec.show_m2 and j == m - 1 and m > 1:
            x += _M2_GAP - _GAP
        xs.append(x)
        x += s + _GAP
    width = max(x - _GAP + _MARGIN, _MIN_WIDTH)
    text_w = width - 2 * _MARGIN
    title = tuple(_wrap(data.title, text_w, _TITLE_SCALE))
    note = tuple(_wrap(data.scale_note, text_w, _TICK_SCALE))
    y = _MARGIN + _LINE * len(title) + 4
    header_y = y
    y += _HEAD_H
    ys = []
    for _ in range(n):
        y += _LABEL_H
        ys.append(y)
        y += s + _ROW_GAP
    bar_y = y + 2
    note_y = bar_y + _BAR_BLOCK + 4
    height = note_y + _LINE * len(note) + _MARGIN
    return RasterLayout(size=s, panel_x=tuple(xs), panel_y=tuple(ys), width=int(width), height=int(height),
                        title_lines=title, note_lines=note, header_y=header_y, bar_y=bar_y, note_y=note_y)


def _rotated_text(text: str, length: int, scale: float) -> np.ndarray:
    """Text written bottom-to-top: (length, h, 3) uint8 patch on paper."""
    text = _fit_text(text, length - 4, scale)
    w, h, base = _text_size(text, scale)
    patch = np.full((h + base + 4, length, 3), _PAPER, np.uint8)
    _put(patch, text, length // 2, 2, scale, anchor="center")
    return np.ascontiguousarray(np.rot90(patch))  # (length, h+base+4, 3)


def render_raster(data: GridData) -> np.ndarray:
    """Compose the whole grid into one RGB image.

    Layout: title (wrapped), column headers (component and its single-component AUROC,
    or M2), one row per image with the row label (image index, defect type) written
    vertically on the left and a label above each panel (``"3 | img 12 | c 40"``),
    colour bars under the columns (one per column in per-component mode; one under all
    component columns in cross-component mode; one for M2), tick labels 0, max/2, max,
    and the scale note.

    Parameters
    ----------
    data
        From :func:`grid_data`.

    Returns
    -------
    (H, W, 3) uint8 RGB. Panel (i, j) occupies ``[y_i:y_i+S, x_j:x_j+S]`` of
    :func:`raster_layout`; its pixels are :func:`panel_rgb` (the blend of the image and
    the inferno heatmap, with the contour).
    """
    lay = raster_layout(data)
    s, n, m = lay.size, data.n_rows, data.n_cols
    canvas = np.full((lay.height, lay.width, 3), _PAPER, np.uint8)
    spec = data.spec

    heat = heat_rgb(data.maps, data.vmax)                                  # (n, m, S, S, 3)
    for i in range(n):
        contours = _contours(data.masks[i]) if outline_visible(data, i) else None
        for j in range(m):
            x, y = lay.panel_x[j], lay.panel_y[i]
            dst = canvas[y:y + s, x:x + s]
            if spec.show_image:
                cv2.addWeighted(data.images[i], 1.0 - spec.alpha, heat[i, j], spec.alpha, 0.0, dst=dst)
            else:
                dst[...] = heat[i, j]
            if contours is not None:
                cv2.drawContours(dst, contours, -1, OUTLINE_RGB, 1, cv2.LINE_8)
            _put(canvas, _fit_text(data.panel_labels[i][j], s, _LABEL_SCALE), x, y - _LABEL_H + 2, _LABEL_SCALE)
        # row label, vertical, centred on the panel
        patch = _rotated_text(data.row_labels[i], s, _HEAD_SCALE)[:, :_ROW_LABEL_W]   # (S, w, 3)
        canvas[lay.panel_y[i]:lay.panel_y[i] + s, _MARGIN:_MARGIN + patch.shape[1]] = patch

    for k, line in enumerate(lay.title_lines):
        _put(canvas, line, _MARGIN, _MARGIN + k * _LINE, _TITLE_SCALE)
    for j in range(m):
        _put(canvas, _fit_text(data.column_labels[j], s, _HEAD_SCALE), lay.panel_x[j] + s // 2,
             lay.header_y + 2, _HEAD_SCALE, anchor="center")
    for group in data.scale_groups:
        _colour_bar(canvas, data, lay, group)
    for k, line in enumerate(lay.note_lines):
        _put(canvas, line, _MARGIN, lay.note_y + k * _LINE, _TICK_SCALE)
    return canvas


def encode_raster(rgb: np.ndarray, *, quality: int = 95) -> bytes:
    """(H, W, 3) uint8 RGB -> JPEG bytes for the viewer (full 4:4:4 colour, so thin coloured text
    and outlines stay crisp). About 20 ms for a 4 x 8 grid, against ~1 s for the PNG that
    Streamlit would encode (and re-encode after resizing) from the array."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"`rgb` must be (H, W, 3) uint8, got shape {rgb.shape}, dtype {rgb.dtype}")
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality),
                            cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])
    if not ok:
        raise ValueError("OpenCV could not encode the raster as JPEG")
    return buf.tobytes()


def _colour_bar(canvas: np.ndarray, data: GridData, lay: RasterLayout, group: tuple[int, ...]) -> None:
    x0 = lay.panel_x[group[0]]
    x1 = lay.panel_x[group[-1]] + lay.size
    w = x1 - x0
    y = lay.bar_y
    lut = colormap_lut()
    idx = np.minimum((np.arange(w) * 256) // w, 255)
    canvas[y:y + _BAR_H, x0:x1] = lut[idx][None]
    cv2.rectangle(canvas, (x0, y), (x1 - 1, y + _BAR_H - 1), _INK, 1)
    vmax = float(data.vmax[group[0]])
    for f in (0.0, 0.5, 1.0):
        tx = int(round(x0 + f * (w - 1)))
        cv2.line(canvas, (tx, y + _BAR_H), (tx, y + _BAR_H + 3), _INK, 1)
        anchor = "left" if f == 0 else ("right" if f == 1 else "center")
        label = format_value(vmax * f) + ("+" if f == 1 else "")
        _put(canvas, label, tx, y + _BAR_H + 5, _TICK_SCALE, anchor=anchor)
    cap = _fit_text(data.scale_label(group), w, _TICK_SCALE)
    _put(canvas, cap, x0 + w // 2, y + _BAR_H + 5 + 15, _TICK_SCALE, anchor="center")


# ---------------------------------------------------------------------------------------
# Publication figure (matplotlib, no pyplot)
# ---------------------------------------------------------------------------------------

def _fits_inches(width_in: float, size_pt: float):
    """``fits(text)``: whether ``text`` at ``size_pt`` (matplotlib's default font) is at most
    ``width_in`` inches wide, measured on its glyph outlines."""
    from matplotlib.textpath import TextPath

    def fits(text: str) -> bool:
        return TextPath((0, 0), text, size=size_pt).get_extents().width <= width_in * 72
    return fits


def render_figure(data: GridData, *, panel_inches: float = 1.45, font_size: float = 6.5) -> "Figure":
    """The grid as a matplotlib figure for PNG/PDF/SVG export.

    Each panel is an ``Axes`` with the image (``imshow`` RGB) and, above it, the heatmap
    as an ``AxesImage`` with ``cmap="inferno"``, ``clim=(0, vmax[j])`` and
    ``alpha=spec.alpha`` (alone, opaque, when ``show_image`` is False); the ground-truth
    contour is a ``contour`` line (vector). Colour bars: one per column
    (per-component), or one for all component columns (cross-component), and one for M2.

    Parameters
    ----------
    data
        From :func:`grid_data`.
    panel_inches
        Side of one panel.
    font_size
        Base font size (points) of panel labels; titles are larger.

    Returns
    -------
    matplotlib.figure.Figure
        Not registered with pyplot; save it with ``fig.savefig``.
    """
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    n, m = data.n_rows, data.n_cols
    spec = data.spec
    p = float(panel_inches)
    gap, m2_gap, row_gap = 0.06, 0.14, 0.20      # between columns, before M2, label strip per row
    left, right = 0.32, 0.12
    head = 0.30                                   # column headers
    xs, x = [], left
    for j in range(m):
        if spec.show_m2 and j == m - 1 and m > 1:
            x += m2_gap - gap
        xs.append(x)
        x += p + gap
    width = max(x - gap + right, 4.2)
    title_pt = font_size + 1.5
    title = "\n".join(wrap_text(data.title, _fits_inches(width - left - 0.05, title_pt)))
    n_title = title.count("\n") + 1
    top = 0.12 + n_title * title_pt * 1.3 / 72 + 0.08 + head
    note = "\n".join(wrap_text(data.scale_note, _fits_inches(width - left - 0.05, font_size - 0.5)))
    bar_h = 0.09
    bottom = 0.60 + (note.count("\n") + 1) * font_size * 1.35 / 72
    height = top + n * (p + row_gap) + bottom
    fig = Figure(figsize=(width, height))
    cmap = colormaps[CMAP].resampled(256)

    def box(x0, y_top, w, h):  # inches from the top-left -> figure fraction
        return [x0 / width, 1 - (y_top + h) / height, w / width, h / height]

    fig.suptitle(title, x=left / width, y=1 - 0.1 / height, ha="left", va="top",
                 fontsize=title_pt, linespacing=1.3)
    images = {}
    for i in range(n):
        y_top = top + i * (p + row_gap) + row_gap
        contour = outline_visible(data, i)
        for j in range(m):
            ax = fig.add_axes(box(xs[j], y_top, p, p))
            ax.set_xticks([])
            ax.set_yticks([])
            for sp in ax.spines.values():
                sp.set_linewidth(0.4)
            if spec.show_image:
                ax.imshow(data.images[i], interpolation="antialiased")
            im = ax.imshow(data.maps[i, j], cmap=cmap, vmin=0.0, vmax=float(data.vmax[j]),
                           alpha=spec.alpha if spec.show_image else None, interpolation="antialiased")
            im.set_gid(f"heatmap-r{i}-c{j}")
            images[i, j] = im
            if contour:
                ax.contour(data.masks[i].astype(np.float32), levels=[0.5], colors=["cyan"],
                           linewidths=0.6)
            ax.set_title(data.panel_labels[i][j], fontsize=font_size, pad=2)
            if j == 0:
                ax.set_ylabel(data.row_labels[i], fontsize=font_size + 0.5, labelpad=3)
            if i == 0:
                ax.text(0.5, 1.0 + (row_gap + 0.05) / p, data.column_labels[j], transform=ax.transAxes,
                        ha="center", va="bottom", fontsize=font_size + 0.5, fontweight="bold")
    y_bar = top + n * (p + row_gap) + 0.12
    for group in data.scale_groups:
        x0 = xs[group[0]]
        w = xs[group[-1]] + p - x0
        cax = fig.add_axes(box(x0, y_bar, w, bar_h))
        vmax = float(data.vmax[group[0]])
        # an opaque mappable with the panels' norm: the bar shows the colours at full strength
        sm = ScalarMappable(norm=Normalize(0.0, vmax), cmap=cmap)
        cb = fig.colorbar(sm, cax=cax, orientation="horizontal", extend="max", extendfrac=0.04)
        cb.set_ticks([0.0, vmax / 2, vmax])
        cb.set_ticklabels([format_value(0), format_value(vmax / 2), format_value(vmax) + "+"])
        ticks = cb.ax.get_xticklabels()
        ticks[0].set_horizontalalignment("left")
        ticks[-1].set_horizontalalignment("right")
        cb.ax.tick_params(labelsize=font_size, length=2, width=0.4, pad=1)
        cb.outline.set_linewidth(0.4)
        cb.set_label(data.scale_label(group), fontsize=font_size, labelpad=2)
        cax.set_gid(f"colorbar-{'-'.join(map(str, group))}")
    fig.text(left / width, 0.06 / height, note, ha="left", va="bottom", fontsize=font_size - 0.5,
             linespacing=1.3)
    return fig
