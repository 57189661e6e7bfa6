"""One image across all fitted layers, side by side, with each layer's feature-cell grid drawn.

The paper's resolution mismatch made visible: the same test (or train) image's M2 map for every
layer, each upsampled as it was scored, alpha-blended over the image in inferno from 0 to that
layer's ``m2_p99`` of the split (the M2 scale of the Grid), with thin lines on the borders of the
layer's feature cells (a 7x7 layer's cells are 32x32 input pixels at 224). Returns one RGB
``uint8`` array (the page or an export encodes it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from ..conventions import check_split
from .colours import blend, heat_rgb

if TYPE_CHECKING:
    from ..results import Model

GRID_RGB = (255, 255, 255)  # cell lines: white, drawn at half opacity over the overlay
LABEL_H = 22                # px above each panel for the layer's name and cell size
MIN_CELL_PX = 8             # cells smaller than this get no drawn borders


def cell_lines(size: int, cells: int) -> np.ndarray:
    """Pixel positions (1..size-1) of the borders between ``cells`` equal cells along ``size`` px."""
    edges = np.round(np.arange(1, cells) * size / cells).astype(np.int64)
    return edges[(edges > 0) & (edges < size)]


def layers_panel(model: "Model", split: str, image: int, *, alpha: float = 0.5, grid: bool = True,
                 gap: int = 6) -> np.ndarray:
    """(LABEL_H + S, n_layers * (S + gap) - gap, 3) uint8: the image's M2 map in every layer.

    Parameters
    ----------
    model
        A fitted :class:`mvgviz.results.Model`.
    split, image
        Which image (index in the split's sorted order).
    alpha
        Heatmap opacity over the image, in [0, 1].
    grid
        Draw the feature-cell borders (on layers whose cells are at least ``MIN_CELL_PX`` pixels:
        finer grids would cover the map).
    gap
        Pixels between panels.
    """
    split = check_split(split)
    n = model.data.n_images(split)
    if isinstance(image, bool) or not isinstance(image, (int, np.integer)) or not 0 <= image < n:
        from ..conventions import ParamError
        raise ParamError("image", f"must be an index in 0..{n - 1} of the {split} split, got {image!r}")
    if not 0.0 <= float(alpha) <= 1.0:
        from ..conventions import ParamError
        raise ParamError("alpha", f"must be in [0, 1], got {alpha!r}")
    rgb = np.asarray(model.data.images(split)[image])                # (S, S, 3) uint8
    s = rgb.shape[0]
    panels = []
    for lm in model.layers.values():
        m2 = lm.m2(split, [int(image)])                               # (1, S, S) as scored
        vmax = np.array([max(float(lm.stats(split).m2_p99), 1e-12)])
        over = blend(rgb, heat_rgb(m2, vmax)[0], float(alpha))        # (S, S, 3)
        if grid and lm.cell_pixels >= MIN_CELL_PX:
            h, w = lm.feature_size
            lines = over.copy()
            for y in cell_lines(s, h):
                lines[y, :] = GRID_RGB
            for x in cell_lines(s, w):
                lines[:, x] = GRID_RGB
            over = cv2.addWeighted(over, 0.5, lines, 0.5, 0.0)
        canvas = np.full((LABEL_H + s, s, 3), 255, np.uint8)
        canvas[LABEL_H:] = over
        h, w = lm.feature_size
        text = f"{lm.name} {h}x{w} ({lm.cell_pixels} px)"
        cv2.putText(canvas, text, (2, LABEL_H - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
        panels.append(canvas)
    out = np.full((LABEL_H + s, len(panels) * (s + gap) - gap, 3), 255, np.uint8)
    for k, p in enumerate(panels):
        out[:, k * (s + gap):k * (s + gap) + s] = p
    return out
