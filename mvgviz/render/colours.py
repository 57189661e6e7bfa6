"""Colours of the heatmaps: matplotlib's inferno table, its bin rule, the blend over the
image, and tick labels.

The raster (:mod:`mvgviz.render.raster`) and the figure (:mod:`mvgviz.render.figure`) both
use the same 256-entry table and matplotlib's bin rule (``index = floor(256 * v / vmax)``,
clipped to 0..255), so they show the same colours.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

CMAP = "inferno"
OUTLINE_RGB = (0, 255, 255)          # cyan: reads on every inferno colour

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
