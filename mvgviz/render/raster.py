"""The fast raster of a grid (OpenCV): one RGB ``uint8`` array with labels, title and colour
bars, fast enough for the interactive viewer; JPEG encoding for the page.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..conventions import ParamError
from .colours import OUTLINE_RGB, blend, colormap_lut, format_value, heat_rgb
from .grid import GridData, outline_visible

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


def panel_rgb(data: GridData, row: int, col: int, *, outline: bool = True) -> np.ndarray:
    """One panel as shown in the raster, without labels: (S, S, 3) uint8 RGB.

    The blend of the image and the inferno heatmap (:func:`~mvgviz.render.colours.blend`),
    or the heatmap alone; with the ground-truth contour when ``outline`` and the row has one
    (the figure passes ``outline=False`` and draws the contour as a vector line).
    """
    heat = heat_rgb(data.maps[row, col:col + 1], data.vmax[col:col + 1])[0]
    out = blend(data.images[row], heat, data.spec.alpha) if data.spec.show_image else heat.copy()
    if outline and outline_visible(data, row):
        cv2.drawContours(out, _contours(data.masks[row]), -1, OUTLINE_RGB, 1, cv2.LINE_8)
    return out


def _contours(mask: np.ndarray):
    cs, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    return cs


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
        raise ParamError("rgb", f"must be (H, W, 3) uint8, got shape {rgb.shape}, dtype {rgb.dtype}")
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
