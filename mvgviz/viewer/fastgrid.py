"""The Grid page drawn in the browser (issue 10, item 11): what Python sends the ``fastgrid``
component once per (model, layer, split, images, scale, alpha, show image, outline, subset).

Every (shown image, component of the layer) panel, and the M2 column's, as a small JPEG data
URL at the displayed panel size, made with :mod:`mvgviz.render` (:func:`~mvgviz.render.grid.grid_data`
and :func:`~mvgviz.render.raster.panel_rgb`: the same colours and blend as the raster); the
ranking (``best:N`` / ``worst:N``), the column labels and colour-scale maxima. The component
(``fastgrid_frontend/index.html``) parses the Components text with the grammar of
:mod:`mvgviz.selection` (``fastgrid_frontend/selection.js``) and lays the grid out client-side,
so a change of components repaints without a server round trip.
"""

from __future__ import annotations

import base64
from pathlib import Path

import cv2
import numpy as np

FRONTEND = Path(__file__).resolve().parent / "fastgrid_frontend"
TILE_PX = 128           # panel side sent: the largest CSS size the component shows a panel at
TILE_QUALITY = 85
_CHUNK = 32             # components read per grid_data call (bounds the memory of the upsampled maps)


def _data_url(rgb: np.ndarray, quality: int = TILE_QUALITY) -> str:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("OpenCV could not encode a tile as JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def _tile(data, row: int, col: int, px: int) -> np.ndarray:
    """A panel of ``data`` at ``px`` x ``px``, its ground-truth contour drawn at that size (1 px)."""
    from ..render.grid import outline_visible
    from ..render.raster import _contours, panel_rgb
    from ..render.colours import OUTLINE_RGB
    out = cv2.resize(panel_rgb(data, row, col, outline=False), (px, px), interpolation=cv2.INTER_AREA)
    if outline_visible(data, row):
        mask = cv2.resize(data.masks[row].astype(np.uint8), (px, px), interpolation=cv2.INTER_NEAREST)
        cv2.drawContours(out, _contours(mask), -1, OUTLINE_RGB, 1, cv2.LINE_8)
    return out


def colour_stops(n: int = 17) -> list[str]:
    """CSS colours of the colour map (``n`` evenly spaced entries of the same 256-entry table)."""
    from ..render.colours import colormap_lut
    lut = colormap_lut()
    idx = np.round(np.linspace(0, 255, n)).astype(int)
    return ["#%02x%02x%02x" % tuple(int(v) for v in lut[i]) for i in idx]


def grid_payload(model, base_spec, *, tile_px: int = TILE_PX, limit: int = 16) -> dict:
    """The component's data for ``base_spec`` (its ``components`` are ignored: every component of
    the layer is sent). Plain JSON types."""
    from ..render.colours import format_value
    from ..render.grid import grid_data
    lm = model.layer(base_spec.layer)
    c = int(lm.channels)
    rows = None
    tiles: list[list[str]] = []
    labels: list[str] = []
    vmax: list[float] = []
    note = title = ""
    for start in range(0, c, _CHUNK):
        comps = tuple(range(start, min(c, start + _CHUNK)))
        data = grid_data(model, base_spec.replace(components=comps, show_m2=False))
        rows = rows or list(data.row_labels)
        note = note or data.scale_note
        title = data.title
        for j in range(len(comps)):
            tiles.append([_tile(data, r, j, tile_px) for r in range(data.n_rows)])
            labels.append(data.column_labels[j])
            vmax.append(float(data.vmax[j]))
    tiles = [[_data_url(t) for t in col] for col in tiles]
    m2 = None
    if base_spec.show_m2:
        data = grid_data(model, base_spec.replace(components=(0,), show_m2=True))
        note, title = data.scale_note, data.title
        m2 = {"label": data.column_labels[1], "vmax": float(data.vmax[1]), "vmax_text": format_value(data.vmax[1]),
              "caption": data.scale_label((1,)), "tiles": [_data_url(_tile(data, r, 1, tile_px)) for r in range(data.n_rows)]}
    ranking = [int(i) for i in lm.ranking()] if lm.has_ranking else None
    split = base_spec.split
    import hashlib
    import json
    key = hashlib.sha1(json.dumps([model.category, model.backbone, model.weights, base_spec.to_dict(), tile_px],
                                  sort_keys=True, default=str).encode()).hexdigest()[:16]
    return {
        "key": key, "name": lm.name, "layer": lm.name, "channels": c, "limit": int(limit), "tile": int(tile_px),
        "ranking": ranking, "metrics_note": lm.metrics_note or "",
        "rows": rows, "labels": labels, "vmax": vmax, "vmax_text": [format_value(v) for v in vmax],
        "tiles": tiles, "m2": m2, "title": title, "scale": base_spec.scale, "split": split, "note": note,
        "captions": [f"y2_c{j}, max = p99 ({split})" for j in range(c)],
        "cross_caption": f"all y2, max = p99 ({split})", "stops": colour_stops(),
    }
