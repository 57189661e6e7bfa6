"""The input-independent pattern grid: the paper's Fig. 1 made input-independent.

For a layer, the per-position mean ``P_c = mean over train images of y2_c`` (the diagnostics'
``pattern_mean``, :mod:`mvgviz.diagnostics`) is what component c shows whatever the input is. The
pattern grid shows ``P_c`` of the N components with the highest ``border_score`` (first row) and
of the N with the highest ``position_score`` (second row), each upsampled to the input size with
the layer's scored upsampling (:meth:`mvgviz.results.LayerModel.to_pixels`) and coloured with
inferno from 0 to the map's own maximum (no image underneath: the pattern belongs to no image).

:func:`pattern_data` gathers the maps; :func:`render_pattern_raster` draws them with OpenCV (the
viewer's JPEG, :func:`mvgviz.render.encode_raster`); :func:`render_pattern_figure` draws the same
panels with matplotlib (PNG/PDF/SVG); :func:`pattern_manifest` describes them (JSON types only).
Nothing here imports streamlit or pyplot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ..conventions import ParamError
from .colours import CMAP, format_value, heat_rgb
from .raster import _put, _fit_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..results import LayerModel, Model

SCORES = ("border_score", "position_score")
PATTERN_KIND = "mvgviz-pattern-grid"


def top_components(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` highest ``scores`` (C,), highest first; NaN (undefined) last, ties:
    lower index first (the order of :func:`mvgviz.variants.select`'s ``drop_*`` rules)."""
    s = np.asarray(scores, dtype=np.float64)
    order = np.lexsort((np.arange(s.size), -np.nan_to_num(s, nan=-np.inf)))
    return order[:n]


@dataclass(frozen=True)
class PatternData:
    """The panels of a pattern grid.

    Attributes
    ----------
    layer
        Layer name.
    feature_size
        (h, w) of the patterns before upsampling.
    rows
        The score of each row (``"border_score"``, ``"position_score"``).
    components
        (rows, n) int component indices, highest score first.
    scores
        (rows, n) float64 the row's score of each panel's component (NaN = undefined).
    maps
        (rows, n, S, S) float32 upsampled patterns ``P_c``.
    vmax
        (rows, n) float64 colour-scale maximum of each panel = its map's maximum (1 for an
        all-zero map, so that it shows black).
    n_images
        Train images the patterns average.
    """

    layer: str
    feature_size: tuple[int, int]
    rows: tuple[str, ...]
    components: np.ndarray
    scores: np.ndarray
    maps: np.ndarray
    vmax: np.ndarray
    n_images: int

    @property
    def title(self) -> str:
        h, w = self.feature_size
        return (f"Input-independent patterns of {self.layer}: mean y2_c per position over {self.n_images} train "
                f"images ({h}x{w} upsampled)")

    @property
    def scale_note(self) -> str:
        return ("Each panel: inferno from 0 (black) to that map's own maximum (yellow, written under the panel); "
                "no image underneath. Maps are not comparable in brightness across panels.")

    def panel_label(self, r: int, j: int) -> str:
        short = {"border_score": "border", "position_score": "position"}[self.rows[r]]
        s = self.scores[r, j]
        return f"c {int(self.components[r, j])} | {short} {format_value(s) if np.isfinite(s) else 'n/a'}"


def pattern_data(layer: "LayerModel", n: int = 8, rows: tuple[str, ...] = SCORES) -> PatternData:
    """The N components with the highest score of each row and their upsampled patterns.

    Raises
    ------
    ParamError
        Naming ``n`` when it is not in 1..C, ``rows`` for an unknown score.
    """
    c = int(layer.channels)
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or not 1 <= n <= c:
        raise ParamError("n", f"must be an integer in 1..{c} (layer {layer.name} has {c} components), got {n!r}")
    bad = [r for r in rows if r not in SCORES]
    if bad or not rows:
        raise ParamError("rows", f"must be scores among {', '.join(SCORES)}, got {rows!r}")
    diag = layer.diagnostics
    comps = np.stack([top_components(getattr(diag, r), int(n)) for r in rows])             # (R, n)
    scores = np.stack([getattr(diag, r)[comps[k]] for k, r in enumerate(rows)])            # (R, n)
    pm = np.asarray(diag.pattern_mean, dtype=np.float32)                                   # (C, h, w)
    maps = layer.to_pixels(pm[comps.ravel()][None])[0].reshape(*comps.shape, layer.image_size, layer.image_size)
    vmax = maps.reshape(*comps.shape, -1).max(-1).astype(np.float64)
    vmax = np.where(vmax > 0, vmax, 1.0)
    return PatternData(layer=layer.name, feature_size=tuple(layer.feature_size), rows=tuple(rows),
                       components=comps, scores=scores, maps=maps, vmax=vmax, n_images=int(diag.n_images))


def render_pattern_raster(data: PatternData, *, panel: int = 104) -> np.ndarray:
    """The pattern grid as one (H, W, 3) uint8 RGB image: a title, per row a heading, then the
    panels (``panel`` px square) each with its component, score and maximum."""
    r_n, n = data.components.shape
    gap, margin, line = 6, 10, 16
    ts = 0.4
    width = 2 * margin + n * panel + (n - 1) * gap
    title_lines = [_fit_text(data.title, width - 2 * margin, ts)]
    head_h = line + 4
    label_h = 2 * line
    height = margin + len(title_lines) * line + r_n * (head_h + panel + label_h) + margin
    canvas = np.full((height, width, 3), 255, np.uint8)
    y = margin
    for t in title_lines:
        _put(canvas, t, margin, y, ts, thick=1)
        y += line
    heat = heat_rgb(data.maps.reshape(-1, *data.maps.shape[2:]), data.vmax.ravel())        # (R*n, S, S, 3)
    for r in range(r_n):
        name = {"border_score": "highest border score (outer ring / interior)",
                "position_score": "highest position score (share of variance explained by position)"}[data.rows[r]]
        _put(canvas, _fit_text(f"{n} components with the {name}", width - 2 * margin, ts), margin, y + 2, ts)
        y += head_h
        for j in range(n):
            x = margin + j * (panel + gap)
            tile = cv2.resize(heat[r * n + j], (panel, panel), interpolation=cv2.INTER_AREA)
            canvas[y:y + panel, x:x + panel] = tile
            lab = data.panel_label(r, j)
            _put(canvas, _fit_text(lab, panel, 0.35), x, y + panel + 3, 0.35)
            _put(canvas, _fit_text(f"max {format_value(data.vmax[r, j])}", panel, 0.35), x, y + panel + 3 + line - 2,
                 0.35, color=(90, 90, 90))
        y += panel + label_h
    return canvas


def render_pattern_figure(data: PatternData, *, panel_inches: float = 1.2, font_size: float = 6.5) -> "Figure":
    """The same panels as a matplotlib Figure (not registered with pyplot): one colour bar per
    panel, from 0 to the panel's maximum."""
    from matplotlib.figure import Figure
    r_n, n = data.components.shape
    fig = Figure(figsize=(n * panel_inches + 0.4, r_n * (panel_inches + 0.55) + 0.6), layout="constrained")
    fig.suptitle(data.title + "\n" + data.scale_note, fontsize=font_size)
    axes = fig.subplots(r_n, n, squeeze=False)
    for r in range(r_n):
        for j in range(n):
            ax = axes[r, j]
            im = ax.imshow(data.maps[r, j], cmap=CMAP, vmin=0.0, vmax=float(data.vmax[r, j]), interpolation="none")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(data.panel_label(r, j), fontsize=font_size)
            cb = fig.colorbar(im, ax=ax, location="bottom", fraction=0.06, pad=0.02, ticks=[0.0, float(data.vmax[r, j])])
            cb.ax.tick_params(labelsize=font_size - 1, length=2)
            cb.ax.set_xticklabels(["0", format_value(data.vmax[r, j])])
    return fig


def pattern_manifest(model: "Model", layer: "LayerModel", data: PatternData) -> dict:
    """What a pattern grid shows (JSON types only): model, layer, rows with components, scores,
    colour maxima, and the definitions."""
    from .. import __version__

    def num(v):
        return float(v) if np.isfinite(v) else None
    return {
        "kind": PATTERN_KIND, "mvgviz_version": __version__,
        "model": {"data": str(model.root), "category": model.category, "backbone": model.backbone,
                  "weights": model.weights, "reg": model.reg, "cache_key": layer.cache_key},
        "layer": {"name": layer.name, "channels": int(layer.channels), "feature_size": list(layer.feature_size),
                  "image_size": int(layer.image_size)},
        "pattern": "mean of y2_c per feature position over the train split (mvgviz.diagnostics.pattern_mean), "
                   "upsampled as scored",
        "n_train_images": data.n_images,
        "scale": data.scale_note,
        "rows": [{"score": data.rows[r],
                  "components": [int(c) for c in data.components[r]],
                  "scores": [num(s) for s in data.scores[r]],
                  "vmax": [float(v) for v in data.vmax[r]]} for r in range(len(data.rows))],
    }
