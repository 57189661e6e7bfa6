"""Grids of per-component heatmaps: grid data, colours, a fast raster and a publication figure.

=====================  =================================================================
module                 owns
=====================  =================================================================
``render.grid``        :class:`GridSpec` (what to show), :class:`GridData`, :func:`grid_data`
``render.colours``     the inferno table, its bin rule, the blend, tick labels
``render.raster``      :func:`render_raster` (OpenCV) and :func:`encode_raster`
``render.figure``      :func:`render_figure` (matplotlib, no pyplot)
``render.patterns``    the input-independent pattern grid (Diagnostics page, its export)
``render.methods``     several methods' maps of the same images, one column per method on its
                       own scale (Methods page, its export): a :class:`GridData`
=====================  =================================================================

The selection grammar (``best:N``, ``random:N``, ...) lives in :mod:`mvgviz.selection`, the
split and scale names in :mod:`mvgviz.conventions`; both are re-exported here for old imports.

A grid shows ``n`` images (rows) of one split and ``k`` whitened components of one layer
(columns), optionally followed by an M2 column. Panel ``(i, j)`` is the heatmap
``y2_c = Y_c**2`` of image ``images[i]`` and component ``components[j]``, computed at
feature resolution and upsampled bilinear to the input size exactly as it was scored
(:meth:`mvgviz.results.LayerModel.to_pixels`),
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
resolution). A grid of a subset model (``GridSpec.subset``, a rule of :mod:`mvgviz.variants`)
shows ``M2_S``, the sum of ``y2_c`` over the rule's components, in the M2 column, on the scale
0 .. the 99th percentile of ``M2_S`` over the split (:meth:`mvgviz.results.LayerModel.m2_subset_p99`). Values above ``vmax`` take the top colour. With the cross-component scale a
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

from ..conventions import ANY_DEFECT, SCALES, SPLITS               # old import path
from ..selection import parse_components, parse_images              # old import path
from .colours import CMAP, OUTLINE_RGB, blend, colormap_lut, colour_index, format_value, heat_rgb
from .figure import render_figure
from .grid import GridData, GridSpec, grid_data, outline_visible, weights_label
from .patterns import PatternData, pattern_data, pattern_manifest, render_pattern_figure, render_pattern_raster, top_components
from .raster import RasterLayout, encode_raster, panel_rgb, raster_layout, render_raster, wrap_text

__all__ = [
    "ANY_DEFECT", "CMAP", "OUTLINE_RGB", "SCALES", "SPLITS", "GridData", "GridSpec", "PatternData", "RasterLayout", "blend",
    "colormap_lut", "colour_index", "encode_raster", "format_value", "grid_data", "heat_rgb", "outline_visible",
    "panel_rgb", "parse_components", "parse_images", "pattern_data", "pattern_manifest", "raster_layout", "render_figure",
    "render_pattern_figure", "render_pattern_raster", "render_raster", "top_components", "weights_label", "wrap_text",
]
