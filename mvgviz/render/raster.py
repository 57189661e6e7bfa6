"""The fast raster of a grid (OpenCV): one RGB ``uint8`` array with labels, title and colour
bars, fast enough for the interactive viewer; JPEG encoding for the page.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..conventions import ParamError
from .colours import OUTLINE_RGB, blend, colormap_lut, format_value, heat_rgb
from .grid import GridData, blank_text, outline_visible

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
    """Pixel geometry and texts of a raster grid (see :func:`raster_layout`)."""

    size: int                   # panel side in the raster (S, or less to fit ``width``)
    panel_x: tuple[int, ...]    # (m,) left edge of each column's panels
    panel_y: tuple[int, ...]    # (n,) top edge of each row's panels
    width: int
    height: int
    title_lines: tuple[str, ...]
    note_lines: tuple[str, ...]
    header_y: int               # top of the column-header line
    bar_y: int                  # top of the colour bars
    note_y: int                 # top of the scale note
    text_scale: float = 0.5     # OpenCV scale of labels, ticks and note (the title is 10 % larger)
    label_h: int = 0            # per-panel label strip (0: no panel labels, panels too small)
    row_label_w: int = 22       # the rotated row-label column
    headers: tuple[str, ...] = ()        # (m,) column headers as drawn (shortened to fit)
    row_labels: tuple[str, ...] = ()     # (n,) row labels as drawn
    panel_labels: tuple[tuple[str, ...], ...] = ()   # (n, m) panel labels as drawn ("" if none)


LABEL_PX = 11       # default cap height (digits) of every raster text, in output pixels
MIN_PANEL = 32      # smallest panel side that ``width`` can ask for
_CAP = 20.0         # FONT_HERSHEY_SIMPLEX digits are >= 11 px tall (dark rows) at scale 0.55
_GAP, _M2_GAP, _MARGIN = 6, 14, 10
_MIN_WIDTH = 480


def _fits(text: str, width: int, scale: float) -> bool:
    return _text_size(text, scale)[0] <= width


def _first_fit(variants, width: int, scale: float, *, drop: bool = False) -> str:
    """The first of ``variants`` that fits ``width`` px; else the last shortened with '..'
    (or "" with ``drop``)."""
    for v in variants:
        if _fits(v, width, scale):
            return v
    return "" if drop else _fit_text(variants[-1], width, scale)


def _header_variants(label: str) -> list[str]:
    """"c 40 (AUROC 0.912)" -> itself, "c 40 (0.912)", "c 40", "40"; a subset model's
    "M2 [drop_position:11]" -> itself, "M2_S"."""
    if label.startswith("M2 ["):
        return [label, "M2_S", "M2_S"]
    out = [label]
    if " (AUROC " in label:
        out.append(label.replace("(AUROC ", "("))
    head = label.split(" (")[0]
    out += [head, head.removeprefix("c ")]
    return out


def _row_variants(label: str) -> list[str]:
    """"img 12 | crack" -> itself, "12 | crack", "img 12", "12"."""
    img = label.split(" | ")[0]
    return [label, label.removeprefix("img "), img, img.removeprefix("img ")]


def raster_layout(data: GridData, *, width: int | None = None, label_px: float = LABEL_PX) -> RasterLayout:
    """Where everything of :func:`render_raster` goes, and which texts fit.

    ``width`` (output pixels, e.g. the width at which the page shows the raster) shrinks the
    panels below their native S x S (to :data:`MIN_PANEL` at least) so that the raster is
    ``width`` wide; None keeps S. Every text is drawn with digits ``label_px`` pixels tall,
    whatever the panel size: labels too long for a panel fall back to shorter forms (panel
    label "3 | img 12 | c 40" -> "3", header "c 40 (AUROC 0.912)" -> "c 40" -> "40", row
    label "img 12 | crack" -> "img 12" -> "12"; the row and column headers name the image
    and component of every panel).
    """
    n, m = data.n_rows, data.n_cols
    native = data.images.shape[1]
    ts = float(label_px) / _CAP                          # text scale: digits label_px tall
    line = int(round(1.6 * label_px))                    # a text line with its spacing
    row_w = int(round(1.45 * label_px)) + 6              # rotated row-label column
    extra_m2 = (_M2_GAP - _GAP) if data.spec.show_m2 and m > 1 else 0
    x0 = _MARGIN + row_w + 4
    if width is None:
        s, gap = native, _GAP
    else:
        avail = int(width) - x0 - _MARGIN - extra_m2
        s = int(np.clip((avail - _GAP * (m - 1)) // m, MIN_PANEL, native))
        gap = _GAP if s >= 64 else 3
    xs, x = [], x0
    for j in range(m):
        if extra_m2 and j == m - 1:
            x += _M2_GAP - _GAP
        xs.append(x)
        x += s + gap
    out_w = max(x - gap + _MARGIN, _MIN_WIDTH if width is None else min(_MIN_WIDTH, int(width)))
    text_w = out_w - 2 * _MARGIN
    title = tuple(_wrap(data.title, text_w, ts * 1.1))
    note = tuple(_wrap(data.scale_note, text_w, ts))
    headers = tuple(_first_fit(_header_variants(c), s + gap - 2, ts) for c in data.column_labels)
    rows = tuple(_first_fit(_row_variants(r), s - 2, ts) for r in data.row_labels)
    panels = tuple(tuple(_first_fit([lab, lab.split(" | ")[0]], s, ts, drop=True) for lab in row)
                   for row in data.panel_labels)
    label_h = int(round(2 * label_px)) if any(p for row in panels for p in row) else 0  # room for descenders
    y = _MARGIN + int(round(line * 1.1)) * len(title) + 4
    header_y = y
    y += line + 2
    ys = []
    for _ in range(n):
        y += label_h if label_h else gap
        ys.append(y)
        y += s + gap
    bar_y = y + 2
    bar_block = _bar_h(label_px) + 4 + 2 * line
    note_y = bar_y + bar_block + 4
    height = note_y + line * len(note) + _MARGIN
    return RasterLayout(size=s, panel_x=tuple(xs), panel_y=tuple(ys), width=int(out_w), height=int(height),
                        title_lines=title, note_lines=note, header_y=header_y, bar_y=bar_y, note_y=note_y,
                        text_scale=ts, label_h=label_h, row_label_w=row_w, headers=headers, row_labels=rows,
                        panel_labels=panels)


def _bar_h(label_px: float) -> int:
    return int(round(label_px * 1.1))


def panel_rgb(data: GridData, row: int, col: int, *, outline: bool = True) -> np.ndarray:
    """One panel as shown in the raster, without labels: (S, S, 3) uint8 RGB.

    The blend of the image and the inferno heatmap (:func:`~mvgviz.render.colours.blend`),
    or the heatmap alone; with the ground-truth contour when ``outline`` and the row has one
    (the figure passes ``outline=False`` and draws the contour as a vector line). A blank
    column (no map, :attr:`GridData.blank_columns`) shows the image faded towards white.
    """
    if blank_text(data, row, col) is not None:
        out = faded(data.images[row])
    else:
        heat = heat_rgb(data.maps[row, col:col + 1], data.vmax[col:col + 1])[0]
        out = blend(data.images[row], heat, data.spec.alpha) if data.spec.show_image else heat.copy()
    if outline and outline_visible(data, row):
        cv2.drawContours(out, _contours(data.masks[row]), -1, OUTLINE_RGB, 1, cv2.LINE_8)
    return out


BLANK_FADE = 0.35  # a blank panel: this much of the image over white


def faded(image: np.ndarray) -> np.ndarray:
    """(S, S, 3) uint8 image faded towards white: a panel that has no heatmap."""
    return cv2.addWeighted(image, BLANK_FADE, np.full_like(image, _PAPER), 1.0 - BLANK_FADE, 0.0)


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


def render_raster(data: GridData, *, width: int | None = None, label_px: float = LABEL_PX) -> np.ndarray:
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
    width
        Output width in pixels: the width at which the raster is shown (the viewer's
        column, ~700-1100 px). Panels shrink to fit it (area-averaged, never below
        :data:`MIN_PANEL`; never enlarged); None keeps the native S x S panels.
    label_px
        Height of every text's digits in output pixels (default 11: readable when the
        raster is shown at ``width``). Labels that do not fit a panel take shorter forms
        (see :func:`raster_layout`).

    Returns
    -------
    (H, W, 3) uint8 RGB. Panel (i, j) occupies ``[y_i:y_i+s, x_j:x_j+s]`` of
    :func:`raster_layout` (same ``width``, ``label_px``); at native size its pixels are
    :func:`panel_rgb` (the blend of the image and the inferno heatmap, with the contour),
    shrunk, they are its area average with the contour drawn at the shrunk size.
    """
    lay = raster_layout(data, width=width, label_px=label_px)
    s, n, m = lay.size, data.n_rows, data.n_cols
    native = data.images.shape[1]
    ts = lay.text_scale
    canvas = np.full((lay.height, lay.width, 3), _PAPER, np.uint8)
    spec = data.spec

    heat = heat_rgb(data.maps, data.vmax)                                  # (n, m, S, S, 3)
    for i in range(n):
        outline = outline_visible(data, i)
        if outline and s != native:
            small = cv2.resize(data.masks[i].astype(np.uint8), (s, s), interpolation=cv2.INTER_NEAREST)
            contours = _contours(small)
        else:
            contours = _contours(data.masks[i]) if outline else None
        for j in range(m):
            x, y = lay.panel_x[j], lay.panel_y[i]
            dst = canvas[y:y + s, x:x + s]
            blank = blank_text(data, i, j)
            if blank is not None:
                full = faded(data.images[i])
            elif spec.show_image:
                full = cv2.addWeighted(data.images[i], 1.0 - spec.alpha, heat[i, j], spec.alpha, 0.0)
            else:
                full = heat[i, j]
            dst[...] = full if s == native else cv2.resize(full, (s, s), interpolation=cv2.INTER_AREA)
            if contours is not None:
                cv2.drawContours(dst, contours, -1, OUTLINE_RGB, 1, cv2.LINE_8)
            if blank:
                lines = _wrap(blank, s - 6, ts)
                line_h = int(round(1.6 * label_px))
                y0 = y + (s - line_h * len(lines)) // 2
                for k, text in enumerate(lines):
                    _put(canvas, text, x + s // 2, y0 + k * line_h, ts, anchor="center")
            if lay.panel_labels[i][j]:
                _put(canvas, lay.panel_labels[i][j], x, y - lay.label_h + 2, ts)
        # row label, vertical, centred on the panel
        patch = _rotated_text(lay.row_labels[i], s, ts)[:, :lay.row_label_w]   # (s, w, 3)
        canvas[lay.panel_y[i]:lay.panel_y[i] + s, _MARGIN:_MARGIN + patch.shape[1]] = patch

    title_line = int(round(1.6 * label_px * 1.1))
    for k, line in enumerate(lay.title_lines):
        _put(canvas, line, _MARGIN, _MARGIN + k * title_line, ts * 1.1)
    for j in range(m):
        _put(canvas, lay.headers[j], lay.panel_x[j] + s // 2, lay.header_y + 2, ts, anchor="center")
    for k, group in enumerate(data.scale_groups):
        _colour_bar(canvas, data, lay, group, label_px, k)
    line_h = int(round(1.6 * label_px))
    for k, line in enumerate(lay.note_lines):
        _put(canvas, line, _MARGIN, lay.note_y + k * line_h, ts)
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


def _colour_bar(canvas: np.ndarray, data: GridData, lay: RasterLayout, group: tuple[int, ...],
                label_px: float, k: int = 0) -> None:
    """The colour bar under the columns of ``group`` (the ``k``-th bar), its ticks and caption."""
    x0 = lay.panel_x[group[0]]
    x1 = lay.panel_x[group[-1]] + lay.size
    w = x1 - x0
    y = lay.bar_y
    ts = lay.text_scale
    bar_h = _bar_h(label_px)
    line = int(round(1.6 * label_px))
    lut = colormap_lut()
    idx = np.minimum((np.arange(w) * 256) // w, 255)
    canvas[y:y + bar_h, x0:x1] = lut[idx][None]
    cv2.rectangle(canvas, (x0, y), (x1 - 1, y + bar_h - 1), _INK, 1)
    vmax = float(data.vmax[group[0]])
    labels = {f: format_value(vmax * f) + ("+" if f == 1 else "") for f in (0.0, 0.5, 1.0)}
    # the ticks whose labels fit the bar's width: 0, max/2, max; else 0 and max; else max
    room = w + 2
    lw, mw, rw = (_text_size(labels[f], ts)[0] for f in (0.0, 0.5, 1.0))
    pad = 8
    if max(lw, rw) + mw / 2 + pad <= w / 2:
        shown = (0.0, 0.5, 1.0)
    elif lw + rw + pad <= w:
        shown = (0.0, 1.0)
    else:
        shown = (1.0,)
    caption = True
    for f in shown:
        tx = int(round(x0 + f * (w - 1)))
        cv2.line(canvas, (tx, y + bar_h), (tx, y + bar_h + 3), _INK, 1)
        if len(shown) > 1:
            anchor = "left" if f == 0 else ("right" if f == 1 else "center")
            _put(canvas, labels[f], tx, y + bar_h + 5, ts, anchor=anchor)
        elif _text_size(labels[f], ts)[0] <= room:            # max alone, under its bar
            _put(canvas, labels[f], x1, y + bar_h + 5, ts, anchor="right")
        elif _text_size(labels[f], ts)[0] <= 2 * room:        # narrow bars: every other one a line lower
            _put(canvas, labels[f], x1, y + bar_h + 5 + (k % 2) * line, ts, anchor="right")
            caption = False
        # else: no room for the number (never a truncated one); the scale note and tables give it
    cap = _first_fit([data.scale_label(group)], w, ts, drop=True)     # whole or not at all (the note says it)
    if cap and caption:
        _put(canvas, cap, x0 + w // 2, y + bar_h + 5 + line, ts, anchor="center")
