"""The publication figure of a grid: a matplotlib :class:`~matplotlib.figure.Figure`
(PNG/PDF/SVG through :mod:`mvgviz.export`), never registered with pyplot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .colours import CMAP, format_value
from .grid import GridData, outline_visible
from .raster import wrap_text

if TYPE_CHECKING:  # matplotlib is imported only by render_figure
    from matplotlib.figure import Figure

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
