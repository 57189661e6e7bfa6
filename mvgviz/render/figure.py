"""The publication figure of a grid: a matplotlib :class:`~matplotlib.figure.Figure`
(PNG/PDF/SVG through :mod:`mvgviz.export`), never registered with pyplot.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from ..conventions import ParamError
from .colours import CMAP, format_value
from .grid import GridData, blank_text, outline_visible
from .raster import _header_variants, panel_rgb, wrap_text

if TYPE_CHECKING:  # matplotlib is imported only by render_figure
    from matplotlib.figure import Figure

MIN_FONT_PT = 5.0       # smallest text of a figure, whatever the grid's size


@lru_cache(maxsize=1)
def panel_image_class():
    """The class ``PanelImage`` (below), made on first use so that importing this module
    does not import matplotlib."""
    from matplotlib.image import AxesImage

    class PanelImage(AxesImage):
        """The heatmap of one panel, drawn as the raster draws it.

        As an artist it *describes* the heatmap: its array is the (S, S) map, its norm
        ``0..vmax`` with the inferno colour map, its alpha the blend weight. What it
        *draws* is one opaque (S, S, 3) uint8 RGB image, the blend of the image and the
        heatmap made by :func:`mvgviz.render.raster.panel_rgb` (the raster's pixels,
        without the contour, which the figure draws as a vector line), with
        ``interpolation="none"``: PNG replicates pixels (nearest), PDF and SVG embed the
        S x S pixels unresampled.

        Why: left to matplotlib, an image and a heatmap with ``alpha`` are two layers, and
        the vector backends composite adjacent images into one, applying the scalar alpha
        twice (once in the heatmap's alpha channel, once in the composite): PDF and SVG
        showed ``0.75 * image + 0.25 * heat`` while the PNG showed the 0.5 blend.
        """

        def __init__(self, ax, heat: np.ndarray, pixels: np.ndarray, *, vmax: float, cmap, alpha):
            from matplotlib.colors import Normalize
            super().__init__(ax, cmap=cmap, norm=Normalize(0.0, vmax), interpolation="none", origin="upper")
            self.set_data(heat)                                   # (S, S) float: what the colours mean
            self.set_alpha(alpha)
            self._pixels = AxesImage(ax, interpolation="none", origin="upper")
            self._pixels.set_data(pixels)                         # (S, S, 3) uint8: what is drawn

        def draw(self, renderer):
            px = self._pixels
            px.set_figure(self.get_figure(root=False))
            px.set_transform(self.get_transform())
            px.set_extent(self.get_extent())
            px.set_clip_box(self.get_clip_box())
            px.set_clip_path(self.get_clip_path())
            px.set_gid(self.get_gid())
            px.set_visible(self.get_visible())
            px.draw(renderer)
            self.stale = False

        def can_composite(self):
            return False        # never merged with other images (the cause of the double alpha)

    return PanelImage

def _fits_inches(width_in: float, size_pt: float):
    """``fits(text)``: whether ``text`` at ``size_pt`` (matplotlib's default font) is at most
    ``width_in`` inches wide, measured on its glyph outlines."""
    from matplotlib.textpath import TextPath

    def fits(text: str) -> bool:
        return TextPath((0, 0), text, size=size_pt).get_extents().width <= width_in * 72
    return fits


def render_figure(data: GridData, *, panel_inches: float = 1.45, font_size: float = 6.5) -> "Figure":
    """The grid as a matplotlib figure for PNG/PDF/SVG export.

    Each panel is an ``Axes`` holding one ``PanelImage`` (:func:`panel_image_class`): an ``AxesImage`` of the map
    with ``cmap="inferno"``, ``clim=(0, vmax[j])`` and ``alpha=spec.alpha``, which draws
    the raster's blend of image and heatmap (:func:`~mvgviz.render.raster.panel_rgb`) as
    one opaque RGB image, so PNG, PDF and SVG show the same colours; the ground-truth
    contour is a ``contour`` line (vector). Colour bars: one per column
    (per-component), or one for all component columns (cross-component), and one for M2.

    Parameters
    ----------
    data
        From :func:`grid_data`.
    panel_inches
        Side of one panel.
    font_size
        Base font size (points) of panel labels; titles are larger, the scale note 0.5 pt
        smaller. Panels keep ``panel_inches`` whatever the grid's size (the figure grows), so
        every text stays at least :data:`MIN_FONT_PT` (5 pt) and labels fit their panels.

    Returns
    -------
    matplotlib.figure.Figure
        Not registered with pyplot; save it with ``fig.savefig``.
    """
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    if not font_size - 0.5 >= MIN_FONT_PT:
        raise ParamError("font_size", f"must be >= {MIN_FONT_PT + 0.5} pt (the scale note is 0.5 pt smaller), "
                                      f"got {font_size}")
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
    PanelImage = panel_image_class()

    def box(x0, y_top, w, h):  # inches from the top-left -> figure fraction
        return [x0 / width, 1 - (y_top + h) / height, w / width, h / height]

    fig.suptitle(title, x=left / width, y=1 - 0.1 / height, ha="left", va="top",
                 fontsize=title_pt, linespacing=1.3)
    # column headers: the first form that fits the column (bold text is ~10 % wider); e.g.
    # "mvg-concat (AUROC 0.990)" -> "mvg-concat (0.990)" -> "mvg-concat"
    head_fits = _fits_inches(p + gap, (font_size + 0.5) * 1.1)
    headers = [next((v for v in _header_variants(c) if head_fits(v)), _header_variants(c)[-2])
               for c in data.column_labels]
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
            im = PanelImage(ax, data.maps[i, j], panel_rgb(data, i, j, outline=False), vmax=float(data.vmax[j]),
                            cmap=cmap, alpha=spec.alpha if spec.show_image else None)
            ax.add_image(im)
            im.set_clip_path(ax.patch)
            im.set_extent(im.get_extent())
            ax.set_xlim(-0.5, data.maps.shape[3] - 0.5)
            ax.set_ylim(data.maps.shape[2] - 0.5, -0.5)
            im.set_gid(f"heatmap-r{i}-c{j}")
            images[i, j] = im
            blank = blank_text(data, i, j)
            if contour:
                ax.contour(data.masks[i].astype(np.float32), levels=[0.5], colors=["cyan"],
                           linewidths=0.6)
            if blank:
                ax.text(0.5, 0.5, "\n".join(wrap_text(blank, _fits_inches(p - 0.1, font_size))), transform=ax.transAxes,
                        ha="center", va="center", fontsize=font_size, linespacing=1.3)
            ax.set_title(data.panel_labels[i][j], fontsize=font_size, pad=2)
            if j == 0:
                ax.set_ylabel(data.row_labels[i], fontsize=font_size + 0.5, labelpad=3)
            if i == 0:
                ax.text(0.5, 1.0 + (row_gap + 0.05) / p, headers[j], transform=ax.transAxes,
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
