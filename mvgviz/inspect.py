"""Inspect one pixel: how much each whitened component contributes to its M2 value.

The anomaly map of a layer is ``M2 = sum_c y2_c`` with ``y2_c = Y_c**2`` at feature
resolution, upsampled bilinear to the input size exactly as it was scored
(:meth:`mvgviz.results.LayerModel.to_pixels`). Bilinear upsampling is linear, so at every
input pixel ``(row, col)``::

    M2_up[row, col] = sum_c y2_c_up[row, col]

(up to float rounding). :func:`decompose_pixel` reads the displayed maps themselves: its
``m2`` is the value the M2 map shows at the pixel, and its contributions are the values the
component maps show there. A subset model (``subset``, :class:`mvgviz.variants.Subset`) shows
``M2_S = sum over c in S of y2_c`` instead (:meth:`mvgviz.results.LayerModel.m2_subset`): its
map, its colour scale (the p99 of M2_S over the split) and its decomposition into the
components of S only.

:func:`m2_figure` and :func:`decomposition_figure` return Plotly figures for the viewer.
Nothing here imports streamlit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import cv2
import numpy as np

from .conventions import ParamError, check_split

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from .results import LayerModel
    from .variants import Subset


def colorscale(n: int = 32) -> list[list]:
    """Plotly colour scale with matplotlib's inferno colours (the grid's own table,
    :func:`mvgviz.render.colours.colormap_lut`), ``n`` evenly spaced stops."""
    from .render.colours import CMAP, colormap_lut
    lut = colormap_lut(CMAP)
    idx = np.linspace(0, 255, n).round().astype(int)
    return [[float(i / 255.0), f"rgb({lut[i, 0]},{lut[i, 1]},{lut[i, 2]})"] for i in idx]





def _n_images(layer: "LayerModel", split: str) -> int:
    return layer.n_images(split)


def _check_image(layer: "LayerModel", split: str, image: int) -> int:
    n = _n_images(layer, split)
    if isinstance(image, (bool, np.bool_)) or not isinstance(image, (int, np.integer)) or not 0 <= image < n:
        raise ParamError("image", f"must be an index in 0..{n - 1} of the {split} split, got {image!r}")
    return int(image)


def _check_pixel(layer: "LayerModel", row: int, col: int) -> tuple[int, int]:
    s = int(layer.image_size)
    for name, v in (("row", row), ("col", col)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or not 0 <= v < s:
            raise ParamError(name, f"must be a pixel index in 0..{s - 1} (input size {s}x{s}), got {v!r}")
    return int(row), int(col)


class ComponentShares:
    """A score split into per-component contributions ``y2`` (C,) with the ``top`` indices:
    the totals and shares every decomposition shows (pixel, cell)."""

    y2: np.ndarray
    top: tuple[int, ...]

    @property
    def total(self) -> float:
        """Sum of all contributions (equals M2 up to rounding)."""
        return float(self.y2.sum())

    @property
    def shares(self) -> np.ndarray:
        """(C,) fraction of M2 contributed by each component; sums to 1 (0 if M2 is 0)."""
        t = self.total
        return self.y2 / t if t > 0 else np.zeros_like(self.y2)

    @property
    def top_values(self) -> np.ndarray:
        return self.y2[list(self.top)]

    @property
    def top_share(self) -> float:
        """Fraction of M2 explained by the ``top`` components."""
        return float(self.shares[list(self.top)].sum())


@dataclass(frozen=True)
class PixelDecomposition(ComponentShares):
    """The M2 value of one input pixel and its split into components.

    Attributes
    ----------
    layer, split, image, row, col
        Where: layer name, split, image index, pixel (row, col) in the input (S x S).
    m2
        The upsampled M2 map at the pixel (``LayerModel.m2(split, [image])[0, row, col]``), or
        a subset model's M2_S (``LayerModel.m2_subset(split, subset, [image])[0, row, col]``).
    y2
        (C,) float64: the upsampled ``y2_c`` maps of all C components at the pixel
        (``LayerModel.y2(split, [image])[0, :, row, col]``); the sum over the model's
        components equals ``m2`` up to float rounding.
    top
        The ``top`` component indices of the model with the largest contributions, largest
        first (ties: lower index first).
    feature_cell
        (i, j): the feature-map cell nearest to the pixel (cell = ``stride`` x ``stride``
        input pixels).
    feature_size
        (h, w) of the layer's feature map.
    stride
        Input pixels per feature cell along one axis (``S // h``).
    rule, components
        The subset model decomposed (its rule and its components, ascending), or None and ()
        for the full model.
    """

    layer: str
    split: str
    image: int
    row: int
    col: int
    m2: float
    y2: np.ndarray
    top: tuple[int, ...]
    feature_cell: tuple[int, int]
    feature_size: tuple[int, int]
    stride: int
    rule: str | None = None
    components: tuple[int, ...] = ()

    @property
    def included(self) -> np.ndarray:
        """(C,) bool: the components of the model (all of them for the full model)."""
        inc = np.zeros(self.y2.shape, bool)
        inc[list(self.components) if self.rule is not None else slice(None)] = True
        return inc

    @property
    def label(self) -> str:
        """The model's map: ``"M2"`` or ``"M2 [npca:5]"``."""
        return "M2" if self.rule is None else f"M2 [{self.rule}]"

    @property
    def total(self) -> float:
        """Sum of the model's contributions (equals ``m2`` up to rounding)."""
        return float(self.y2[self.included].sum())

    @property
    def dropped_total(self) -> float:
        """What the components outside the subset model add at the pixel (0 for the full model)."""
        return float(self.y2[~self.included].sum())

    @property
    def shares(self) -> np.ndarray:
        """(C,) fraction of the model's M2 contributed by each component (0 outside the model);
        sums to 1 (0 if M2 is 0)."""
        t = self.total
        return np.where(self.included, self.y2 / t, 0.0) if t > 0 else np.zeros_like(self.y2)

    def to_dict(self) -> dict:
        return {"layer": self.layer, "split": self.split, "image": self.image, "row": self.row,
                "col": self.col, "m2": self.m2, "top": list(self.top),
                "top_values": self.top_values.tolist(), "top_share": self.top_share,
                "feature_cell": list(self.feature_cell), "feature_size": list(self.feature_size),
                "stride": self.stride, "subset": self.rule,
                "n_components": len(self.components) if self.rule is not None else int(self.y2.size)}


def decompose_pixel(layer: "LayerModel", split: str, image: int, row: int, col: int, *,
                    top: int = 8, subset: "Subset | None" = None) -> PixelDecomposition:
    """Split the M2 value of input pixel ``(row, col)`` of one image into components.

    Parameters
    ----------
    layer
        A fitted :class:`~mvgviz.pipeline.LayerModel`.
    split
        ``"test"`` or ``"train"``.
    image
        Image index in the split.
    row, col
        Pixel of the (S x S) network input, 0-based.
    top
        How many of the largest contributions to list (1..C).
    subset
        A subset model (:func:`mvgviz.variants.subset_of`): ``m2`` is its M2_S and ``top`` lists
        its components only; None for the full model.

    Returns
    -------
    PixelDecomposition
        With the contributions of all C components (reads only this image's features).
    """
    check_split(split)
    image = _check_image(layer, split, image)
    row, col = _check_pixel(layer, row, col)
    c = int(layer.channels)
    if isinstance(top, (bool, np.bool_)) or not isinstance(top, (int, np.integer)) or top < 1:
        raise ParamError("top", f"must be an integer >= 1, got {top!r}")
    top = min(int(top), c)
    s = int(layer.image_size)
    h, w = layer.feature_size
    step = max(1, (1 << 22) // (s * s))  # components upsampled at once: ~16 MB of maps, whatever C is
    contrib = np.concatenate([layer.y2(split, [image], list(range(a, min(a + step, c))))[0, :, row, col]
                              for a in range(0, c, step)]).astype(np.float64)  # (C,) as the maps show it
    if subset is None:
        m2 = float(layer.m2(split, [image])[0, row, col])               # the displayed (and scored) value
        pool = np.arange(c)
    else:
        pool = np.asarray(subset.components, dtype=np.int64)
        m2 = float(layer.m2_subset(split, pool, [image])[0, row, col])  # M2_S as displayed and scored
    order = pool[np.lexsort((pool, -contrib[pool]))][:top]
    stride = s // max(h, 1)
    cell = (min(row * h // s, h - 1), min(col * w // s, w - 1))
    return PixelDecomposition(layer=layer.name, split=split, image=image, row=row, col=col, m2=m2,
                              y2=contrib, top=tuple(int(i) for i in order), feature_cell=cell,
                              feature_size=(int(h), int(w)), stride=int(stride),
                              rule=None if subset is None else subset.rule,
                              components=() if subset is None else tuple(int(i) for i in pool))


def argmax_pixel(layer: "LayerModel", split: str, image: int, *, subset: "Subset | None" = None) -> tuple[int, int]:
    """(row, col) of the largest upsampled M2 value of an image (the image score's pixel); of
    M2_S for a subset model."""
    check_split(split)
    image = _check_image(layer, split, image)
    m2 = _model_map(layer, split, image, subset)                       # (S, S)
    r, c = np.unravel_index(int(np.argmax(m2)), m2.shape)
    return int(r), int(c)


def pixel_from_selection(selection: Any, size: int) -> tuple[int, int] | None:
    """The (row, col) a person clicked, from ``st.plotly_chart(..., on_select=...)``'s
    selection state (``{"points": [{"x": col, "y": row, ...}, ...]}``); None if nothing
    usable was selected. Coordinates are rounded and must lie in 0..size-1."""
    if selection is None:
        return None
    if isinstance(selection, Mapping):
        sel = selection.get("selection", selection)
    else:
        sel = getattr(selection, "selection", selection)
    points = sel.get("points") if isinstance(sel, Mapping) else getattr(sel, "points", None)
    if not points:
        return None
    p = points[-1]
    try:
        x, y = float(p["x"]), float(p["y"])
    except (KeyError, TypeError, ValueError):
        return None
    r, c = int(round(y)), int(round(x))
    if not (0 <= r < size and 0 <= c < size):
        return None
    return r, c


def png_data_uri(rgb: np.ndarray) -> str:
    """(H, W, 3) uint8 RGB -> ``data:image/png;base64,...`` (compact for Plotly's go.Image)."""
    import base64
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.asarray(rgb, dtype=np.uint8), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("cannot encode the image as PNG")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def _model_map(layer: "LayerModel", split: str, image: int, subset: "Subset | None") -> np.ndarray:
    """(S, S) the upsampled M2 map of one image, or the subset model's M2_S."""
    if subset is None:
        return layer.m2(split, [image])[0]
    return layer.m2_subset(split, subset.components, [image])[0]


def m2_figure(layer: "LayerModel", split: str, image: int, *, rgb: np.ndarray | None = None,
              pixel: tuple[int, int] | None = None, clickable: bool = True, click_stride: int = 2,
              alpha: float = 0.5, height: int = 500, mask: np.ndarray | None = None,
              subset: "Subset | None" = None) -> "go.Figure":
    """Plotly heatmap of the upsampled M2 map of one image.

    Colour scale ``Inferno`` from 0 to ``m2_p99``, the 99th percentile of all M2 values of
    the split (:meth:`LayerModel.stats`), written in the title and on the colour bar;
    values above are clipped to the top colour. Hovering shows row, col and the M2 value.
    With ``subset`` (:func:`mvgviz.variants.subset_of`), the subset model's M2_S on 0 .. the
    99th percentile of M2_S over the split (:meth:`LayerModel.m2_subset_p99`), named
    ``subset.label`` (``"M2 [npca:5]"``) in the title, hover text and colour bar.

    Parameters
    ----------
    rgb
        (S, S, 3) uint8 image: the map is then shown alpha-blended over it, with the
        grid's colours (:func:`mvgviz.render.colours.heat_rgb`, :func:`mvgviz.render.colours.blend`); the
        heatmap trace stays (transparent) for hovering.
    pixel
        (row, col) marked with a cross.
    clickable
        Add an invisible grid of points (every ``click_stride`` pixels) so that a click
        selects a pixel in ``st.plotly_chart(on_select=...)`` (Streamlit reports no
        selection for heatmap traces).
    alpha
        Heatmap weight of the blend (METHOD.md: 0.5).
    mask
        (S, S) bool ground-truth mask: its outline is drawn (trace ``"ground truth"``, the
        grid's outline colour), nothing when the mask is empty.

    Returns
    -------
    plotly.graph_objects.Figure
        Traces: [image], heatmap ``"M2"``, [click points ``"pixels"``], colour bar,
        [ground-truth outline], [marker].
    """
    check_split(split)
    image = _check_image(layer, split, image)
    m2 = _model_map(layer, split, image, subset)                       # (S, S)
    s = m2.shape[0]
    h, w = layer.feature_size
    if subset is None:
        name, what = "M2", "M2"
        zmax = float(layer.stats(split).m2_p99)
        title = f"M2 of {split} image {image}, layer {layer.name} ({h}x{w} upsampled to {s}x{s})<br>"
    else:  # the model on a line of its own: the first stays short enough for half a page
        name, what = subset.label, "M2_S"
        zmax = float(layer.m2_subset_p99(split, subset.components))
        title = (f"{name} of {split} image {image}, layer {layer.name}<br>"
                 f"<span style='font-size:12px'>{subset.description}; {h}x{w} upsampled to {s}x{s}</span><br>")
    title += (f"<span style='font-size:12px'>inferno, 0 .. {zmax:.4g} = 99th percentile of {what} "
              f"over the {split} split; above: top colour</span>")
    fig = map_figure(m2, zmax, title=title, name=name, rgb=rgb, pixel=pixel, clickable=clickable,
                     click_stride=click_stride, alpha=alpha, height=height, mask=mask)
    if subset is not None:
        fig.update_layout(margin=dict(t=90))                           # room for the third title line
    return fig


def map_figure(values: np.ndarray, zmax: float, *, title: str, name: str = "M2", rgb: np.ndarray | None = None,
               pixel: tuple[int, int] | None = None, clickable: bool = True, click_stride: int = 2,
               alpha: float = 0.5, height: int = 500, mask: np.ndarray | None = None) -> "go.Figure":
    """Plotly heatmap of one (S, S) map on the scale 0 .. ``zmax`` (inferno; above: top colour),
    the figure of :func:`m2_figure` for any map (e.g. another method's, :mod:`mvgviz.explain`).
    ``name`` labels the values in the hover text and on the colour bar; the other parameters are
    :func:`m2_figure`'s. Traces: [image], heatmap ``name``, [click points ``"pixels"``], colour
    bar, [ground-truth outline], [marker]."""
    import plotly.graph_objects as go

    from .render.colours import blend, heat_rgb
    m2 = np.asarray(values, dtype=np.float32)                          # (S, S)
    s = m2.shape[0]
    zmax = float(zmax)
    fig = go.Figure()
    if rgb is not None:
        heat = heat_rgb(m2[None], np.array([max(zmax, 1e-12)]))[0]       # (S, S, 3)
        fig.add_trace(go.Image(source=png_data_uri(blend(np.asarray(rgb, dtype=np.uint8), heat, alpha)),
                               hoverinfo="skip", name="overlay"))
    fig.add_trace(go.Heatmap(
        z=m2, zmin=0.0, zmax=zmax, colorscale=colorscale(), showscale=False,
        opacity=0.0 if rgb is not None else 1.0,
        hovertemplate=f"row %{{y}}, col %{{x}}<br>{name} %{{z:.4g}}<extra></extra>", name=name))
    if clickable:
        step = max(int(click_stride), 1)
        rr, cc = np.mgrid[0:s:step, 0:s:step]
        rr, cc = rr.ravel(), cc.ravel()
        fig.add_trace(go.Scattergl(
            x=cc.astype(np.int16), y=rr.astype(np.int16), mode="markers",
            marker=dict(size=max(step * 3, 4), opacity=0.0, color="white"),
            customdata=m2[rr, cc].astype(np.float32),
            hovertemplate=f"row %{{y}}, col %{{x}}<br>{name} %{{customdata:.4g}}<extra>click to inspect</extra>",
            name="pixels", showlegend=False))
    # the colour bar, on a trace of its own so that it keeps full colour in overlay mode
    fig.add_trace(go.Scatter(
        x=[None], y=[None], mode="markers", hoverinfo="skip", showlegend=False, name="scale",
        marker=dict(colorscale=colorscale(), cmin=0.0, cmax=zmax, color=[0.0], showscale=True,
                    colorbar=dict(title=dict(text=name), thickness=14))))
    if mask is not None:
        from .render.colours import OUTLINE_RGB
        xs, ys = mask_outline(mask)
        if xs:
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip", showlegend=False,
                                     line=dict(color="rgb({},{},{})".format(*OUTLINE_RGB), width=1.5),
                                     name="ground truth"))
    if pixel is not None:
        r, c = pixel
        fig.add_trace(go.Scatter(x=[c], y=[r], mode="markers", hoverinfo="skip", showlegend=False,
                                 marker=dict(symbol="x-thin-open", size=16, line=dict(width=2, color="cyan")),
                                 name="pixel"))
    fig.update_layout(
        title=dict(text=title, font=dict(size=14)),
        height=height, margin=dict(l=10, r=10, t=70, b=10), dragmode=False, clickmode="event+select",
        plot_bgcolor="white", hovermode="closest")
    fig.update_xaxes(range=[-0.5, s - 0.5], showgrid=False, zeroline=False, constrain="domain")
    fig.update_yaxes(range=[s - 0.5, -0.5], showgrid=False, zeroline=False, scaleanchor="x", constrain="domain")
    return fig


def mask_outline(mask: np.ndarray) -> tuple[list, list]:
    """The outline of a (S, S) bool mask as plotly line coordinates: ``(x, y)`` lists of
    pixel centres (x = column, y = row), each closed contour ended by ``None``."""
    import cv2
    m = np.ascontiguousarray(np.asarray(mask, dtype=bool), dtype=np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    xs: list = []
    ys: list = []
    for c in contours:
        pts = c[:, 0, :]                                                   # (K, 2) as (x, y)
        pts = np.concatenate([pts, pts[:1]])                              # closed
        xs += pts[:, 0].tolist() + [None]
        ys += pts[:, 1].tolist() + [None]
    return xs, ys


def decomposition_figure(decomp: PixelDecomposition, *, height: int = 380) -> "go.Figure":
    """Bar chart of the ``top`` contributions ``y2_c`` at the pixel, largest first, each
    labelled with its share of M2; the title gives M2, the share the top components
    explain and what the others add."""
    import plotly.graph_objects as go
    top = list(decomp.top)
    shares = decomp.shares
    share = [float(shares[c]) for c in top]
    n_model = int(decomp.included.sum())
    n_rest = n_model - len(top)
    rest = f"; the other {n_rest} add {max(1.0 - decomp.top_share, 0.0) * 100:.1f}%" if n_rest else ""
    where = f"Pixel (row {decomp.row}, col {decomp.col}) of {decomp.split} image {decomp.image}, {decomp.layer}"
    if decomp.rule is None:
        text = (f"{where}: M2 = {decomp.m2:.4g}<br><span style='font-size:12px'>the top {len(top)} "
                f"components explain {decomp.top_share * 100:.1f}% of M2{rest}</span>")
    else:  # the model's value on the second line: the first stays short enough for half a page
        text = (f"{where}<br><span style='font-size:12px'>{decomp.label} = {decomp.m2:.4g}: the top {len(top)} "
                f"explain {decomp.top_share * 100:.1f}%{rest}<br>"
                f"subset model {decomp.rule}: {n_model} of {len(decomp.y2)} components; the "
                f"{len(decomp.y2) - n_model} left out would add {decomp.dropped_total:.4g}</span>")
    fig = go.Figure(go.Bar(
        x=[f"c {c}" for c in top], y=decomp.top_values, marker_color="#d9480f",
        customdata=np.asarray(share) * 100, text=[f"{p * 100:.1f}%" for p in share],
        textposition="outside", cliponaxis=False,
        hovertemplate="%{x}<br>y2 = %{y:.4g}<br>%{customdata:.1f}% of " + decomp.label + "<extra></extra>"))
    fig.update_layout(
        title=dict(text=text, font=dict(size=14)),
        height=height, margin=dict(l=10, r=10, t=70 if decomp.rule is None else 90, b=10),
        yaxis_title="y2_c at the pixel",
        xaxis=dict(type="category"), showlegend=False)
    return fig


def component_chart(layer: "LayerModel", *, height: int = 300) -> "go.Figure":
    """Single-component AUROC against component index (ascending eigenvalue), with the
    layer's own pixel AUROC as a line: where the useful components sit in the spectrum."""
    import plotly.graph_objects as go
    c = int(layer.channels)
    auc = (np.asarray(layer.component_auroc, dtype=np.float64) if layer.has_ranking
           else np.full(c, np.nan))  # no masks: an empty chart with the reason in its title
    eig = np.asarray(layer.eigvals, dtype=np.float64)
    fig = go.Figure(go.Scatter(
        x=np.arange(c), y=auc, mode="markers", marker=dict(size=5, color=auc, colorscale="Viridis"),
        customdata=eig, hovertemplate="c %{x}<br>AUROC %{y:.4f}<br>eigenvalue %{customdata:.4g}<extra></extra>"))
    full = layer.metrics["pixel_auroc"]
    if full is not None:
        fig.add_hline(y=full, line_dash="dot", line_color="#d9480f",
                      annotation_text=f"all components (M2): {full:.3f}", annotation_position="bottom right")
    fig.add_hline(y=0.5, line_color="#adb5bd", line_width=1)
    title = f"Single-component pixel AUROC, {layer.name}" + ("" if layer.has_ranking else " (n/a: no ground-truth masks)")
    fig.update_layout(title=dict(text=title, font=dict(size=14)),
                      height=height, margin=dict(l=10, r=10, t=40, b=10),
                      xaxis_title="component (ascending eigenvalue)", yaxis_title="AUROC")
    return fig


def spectrum_chart(layer: "LayerModel", *, height: int = 340) -> "go.Figure":
    """Single-component pixel AUROC against eigenvalue, log x-axis (the spectrum: where the
    useful components sit, next to the low-variance ones NPCA/OPCA keep).

    Hover: component, eigenvalue, AUROC, border score. Without ground-truth masks the AUROC is
    n/a: the points sit on an empty axis and the title says so. Eigenvalues of 0 (below the
    floor: the component is identically 0) cannot sit on a log axis; they are left out and
    counted in the title.
    """
    import plotly.graph_objects as go
    c = int(layer.channels)
    eig = np.asarray(layer.eigvals, dtype=np.float64)
    auc = np.asarray(layer.component_auroc, dtype=np.float64) if layer.has_ranking else np.full(c, np.nan)
    border = np.asarray(layer.diagnostics.border_score, dtype=np.float64)
    keep = eig > 0
    idx = np.flatnonzero(keep)
    text = [f"c {i}<br>eigenvalue {eig[i]:.4g}<br>AUROC " + (f"{auc[i]:.4f}" if np.isfinite(auc[i]) else "n/a")
            + "<br>border score " + (f"{border[i]:.3g}" if np.isfinite(border[i]) else "n/a") for i in idx]
    fig = go.Figure(go.Scatter(
        x=eig[idx], y=auc[idx], mode="markers", name="components", text=text, customdata=idx,
        marker=dict(size=6, color=np.nan_to_num(border[idx], nan=0.0), colorscale="Viridis", showscale=True,
                    colorbar=dict(title=dict(text="border<br>score"), thickness=12)),
        hovertemplate="%{text}<extra></extra>"))
    full = layer.metrics["pixel_auroc"]
    if full is not None:
        fig.add_hline(y=full, line_dash="dot", line_color="#d9480f",
                      annotation_text=f"all components (M2): {full:.3f}", annotation_position="bottom right")
    if layer.has_ranking:
        fig.add_hline(y=0.5, line_color="#adb5bd", line_width=1)
    title = f"Spectrum of {layer.name}: single-component pixel AUROC against eigenvalue"
    if not layer.has_ranking:
        title += " (AUROC n/a: no ground-truth masks)"
    if (~keep).any():
        title += f"<br><span style='font-size:12px'>{int((~keep).sum())} components with eigenvalue 0 left out</span>"
    fig.update_layout(title=dict(text=title, font=dict(size=14)), height=height,
                      margin=dict(l=10, r=10, t=60, b=10), showlegend=False,
                      xaxis=dict(type="log", title="eigenvalue (log)"),
                      yaxis=dict(title="AUROC" if layer.has_ranking else "AUROC (n/a)",
                                 range=None if layer.has_ranking else [0, 1]))
    return fig


def agreement_figure(count: np.ndarray, n_components: int, *, title: str = "", height: int = 420) -> "go.Figure":
    """Plotly heatmap of an agreement map (:func:`mvgviz.agreement.agreement_map`): (S, S) counts
    0..``n_components`` on inferno; hover shows row, col and the count."""
    import plotly.graph_objects as go
    count = np.asarray(count)
    s = count.shape[0]
    k = max(int(n_components), 1)
    fig = go.Figure(go.Heatmap(
        z=count, zmin=0, zmax=k, colorscale=colorscale(), name="agreement",
        colorbar=dict(title=dict(text="components<br>above p99"), thickness=14),
        hovertemplate="row %{y}, col %{x}<br>%{z} of " + str(k) + " components above their train p99<extra></extra>"))
    fig.update_layout(title=dict(text=title, font=dict(size=14)), height=height,
                      margin=dict(l=10, r=10, t=70, b=10), plot_bgcolor="white")
    fig.update_xaxes(range=[-0.5, s - 0.5], showgrid=False, zeroline=False, constrain="domain")
    fig.update_yaxes(range=[s - 0.5, -0.5], showgrid=False, zeroline=False, scaleanchor="x", constrain="domain")
    return fig


_CURVE_AXES = {"image_roc": ("FPR", "TPR"), "roc": ("FPR", "TPR"), "pr": ("recall", "precision"),
               "pro": ("FPR", "PRO")}


def _metric(metrics: Mapping[str, Any], key: str) -> str:
    v = metrics.get(key)
    return "n/a" if v is None else f"{v:.3f}"


def _curve_panels(panels, series, titles, *, height: int, legend: bool) -> "go.Figure":
    """Curves side by side: ``panels`` lists the curve keys of each subplot (``"roc"``,
    ``"image_roc"``, ``"pr"``, ``"pro"``), ``series`` the models, each ``(name, curves, line)``
    with ``curves`` as :attr:`mvgviz.results.LayerModel.curves` and ``line`` plotly line
    properties; an image ROC drawn beside a pixel ROC is dotted; FPR 0.3 is marked on the PRO
    panel. One legend entry per model when ``legend``."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots
    fig = make_subplots(rows=1, cols=len(panels), horizontal_spacing=0.07, subplot_titles=titles)
    shown = set()
    for col, keys in enumerate(panels, 1):
        for key in keys:
            for name, curves, line in series:
                c = (curves or {}).get(key)
                if not c:
                    continue
                dotted = key == "image_roc" and len(keys) > 1
                fig.add_trace(go.Scatter(
                    x=c["x"], y=c["y"], mode="lines", name=name if legend else f"{key} ({name})",
                    legendgroup=name, showlegend=legend and name not in shown,
                    line={**line, **({"dash": "dot"} if dotted else {})},
                    hovertemplate=f"{name}<br>{key}: " + "%{x:.3f}, %{y:.3f}<extra></extra>"), row=1, col=col)
                shown.add(name)
            xt, yt = _CURVE_AXES[key]
            fig.update_xaxes(title_text=xt, range=[0, 1], row=1, col=col)
            fig.update_yaxes(title_text=yt, range=[0, 1.02], row=1, col=col)
        if "pro" in keys:
            fig.add_vline(x=0.3, line_dash="dash", line_color="#adb5bd", row=1, col=col)
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10), showlegend=legend,
                      legend=dict(orientation="h", yanchor="top", y=-0.22, x=0))
    return fig


def curves_figure(curves: Mapping[str, Mapping[str, list]], metrics: Mapping[str, Any], *,
                  height: int = 320) -> "go.Figure":
    """The layer's curves side by side: pixel ROC (with the image ROC), PR and PRO (FPR up to 0.3
    marked), from :attr:`mvgviz.results.LayerModel.curves`; the exact metrics in the titles.
    :func:`variant_curves_figure` draws several models' curves."""
    titles = (f"ROC: pixel {_metric(metrics, 'pixel_auroc')}, image {_metric(metrics, 'image_auroc')}",
              f"PR: AUPR {_metric(metrics, 'pixel_aupr')}", f"PRO: AUPRO {_metric(metrics, 'aupro')} (to FPR 0.3)")
    return _curve_panels((("roc", "image_roc"), ("pr",), ("pro",)), [("pixel", curves, {})], titles,
                         height=height, legend=False)


VARIANT_COLOURS = ("#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#bcbd22")


def variant_name(row: Mapping[str, Any]) -> str:
    """A variant's name in legends and tables: ``"full model (112)"``, ``"npca:5 (7)"``,
    ``"oracle_best:11 (11, oracle)"``: the rule, its number of components, the oracle said."""
    n = int(row["n_components"])
    if row["rule"] == "full":
        return f"full model ({n})"
    return f"{row['rule']} ({n}{', oracle' if row.get('oracle') else ''})"


def variant_curves_figure(rows: "list[Mapping[str, Any]]", *, height: int = 400) -> "go.Figure":
    """The curves of :func:`mvgviz.variants.variants` rows (``curves=True``): image ROC, pixel ROC,
    PR and PRO side by side, one line per model: the full model black and thick, each subset model
    in its own colour, an oracle dashed (it reads test labels: an upper bound, not a model). The
    legend names each model with its pixel AUROC and AUPRO."""
    series = []
    k = 0
    for r in rows:
        name = (f"{variant_name(r)}: pixel AUROC {_metric(r, 'pixel_auroc')}, AUPRO {_metric(r, 'aupro')}")
        if r["rule"] == "full":
            line = {"color": "#212529", "width": 3}
        else:
            line = {"color": VARIANT_COLOURS[k % len(VARIANT_COLOURS)], "width": 1.6,
                    "dash": "dash" if r.get("oracle") else "solid"}
            k += 1
        series.append((name, r.get("curves") or {}, line))
    titles = ("image ROC", "pixel ROC", "PR (pixels)", "PRO (to FPR 0.3)")
    fig = _curve_panels((("image_roc",), ("roc",), ("pr",), ("pro",)), series, titles, height=height, legend=True)
    fig.update_layout(margin=dict(l=10, r=10, t=40, b=10 + 22 * len(series)))
    return fig


def histogram_figure(hist: Mapping[str, Any], *, height: int = 300) -> "go.Figure":
    """Image-score histograms per defect type (:func:`mvgviz.evaluation.score_histograms`), overlaid,
    on a log x-axis when the edges are log-spaced."""
    import plotly.graph_objects as go
    edges = np.asarray(hist["edges"], dtype=np.float64)
    log = bool(edges[0] > 0 and np.allclose(np.diff(np.log(edges)), np.log(edges[1] / edges[0])))
    centres = np.sqrt(edges[:-1] * edges[1:]) if log else (edges[:-1] + edges[1:]) / 2
    fig = go.Figure()
    for t, counts in hist["counts"].items():
        fig.add_trace(go.Bar(x=centres, y=counts, name=t, opacity=0.6))
    fig.update_layout(barmode="overlay", height=height, margin=dict(l=10, r=10, t=40, b=10),
                      title=dict(text="Image scores (max of the upsampled M2 map) by type", font=dict(size=14)),
                      xaxis_title="image score" + (" (log)" if log else ""), yaxis_title="images")
    if log:
        fig.update_xaxes(type="log")
    return fig
