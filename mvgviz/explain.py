"""Explanations of the Gaussian methods: which whitened components make a score.

Every Gaussian method scores with a squared Mahalanobis distance, the squared norm of a whitened
vector, so a score splits exactly into the squares of its components. Which split a method offers
is read from its results (:class:`mvgviz.results.MethodResult`'s flags), never from its name:

- **per-position components** (``has_components``: the paper's ``mvg``, ``mvg-concat``, PaDiM). The
  map stored at feature resolution is ``M2[i, j] = sum_c y_c[i, j]**2``. :func:`decompose_cell`
  splits it at the feature cell holding an input pixel: ``y_c**2`` of every component, largest
  first, with its share of M2. :func:`component_maps` gives the ``y_c**2`` maps of an image.
  Where one Gaussian is fitted per position (``components_per_position``: PaDiM), each position
  whitens with its own Gaussian. With PCA whitening (``component_basis == "pca"``) component ``c``
  is the ``c``-th direction of that position's own spectrum: the same index means a different
  direction at each position, so a component map mixes unrelated directions. With Cholesky
  whitening (``"cholesky"``, PaDiM's) component ``c`` is the ``c``-th channel of the kept embedding
  subset (in embedding order, finest layer first; ``state_channels`` in the cache maps it to the
  embedding's channel), standardised given the channels before it: the same channel everywhere,
  conditioned by each position's own covariance. Either way the split of one cell is exact.
- **image-level components** (``has_image_components``: Gaussian-AD, OPCA). Each image has one
  whitened vector per group (level), concatenated (``image_components``, (N, K)); the squares of
  a group's block add up to that group's squared distance ``M_l**2``. :func:`decompose_image`
  lists the components driving an image's score (``y_k**2`` with its group), :func:`top_images`
  the images scoring highest on one component.

The pixel a person points at is an input pixel (row, col) of the S x S network input; its feature
cell is ``(row * h // S, col * w // S)`` (cell = S/h input pixels a side). The method's map as
scored at that pixel (``pixel_value``: upsampled and, for PaDiM, square-rooted and blurred by
``to_pixels``) mixes neighbouring cells; the exact split is the cell's.

Plotly figures for the viewer (:func:`cell_figure`, :func:`image_figure`, :func:`top_images_figure`)
come last. Nothing here imports streamlit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .conventions import ParamError, check_split
from .inspect import ComponentShares

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from .results import MethodResult

__all__ = ["CellDecomposition", "ImageDecomposition", "TopImages", "basis_note", "cell_figure", "component_maps", "component_scale",
           "component_names", "decompose_cell", "decompose_image", "image_figure", "top_images",
           "top_images_figure"]


# ---------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------

def _int(v, name: str, lo: int, hi: int, what: str) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
        raise ParamError(name, f"must be {what} in {lo}..{hi}, got {v!r}")
    return int(v)


def _image(result: "MethodResult", split: str, image) -> int:
    n = result.n_images(split)
    return _int(image, "image", 0, n - 1, f"an index of the {split} split")


def _top(top, n: int) -> int:
    if isinstance(top, (bool, np.bool_)) or not isinstance(top, (int, np.integer)) or top < 1:
        raise ParamError("top", f"must be an integer >= 1, got {top!r}")
    return min(int(top), n)


def _largest(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest values, largest first (ties: lower index first)."""
    return np.lexsort((np.arange(len(values)), -values))[:k]


def _need(result: "MethodResult", flag: str, what: str) -> None:
    if not getattr(result, flag):
        raise ParamError("method", f"{result.name!r} has no {what}")


# ---------------------------------------------------------------------------------------
# Per-position components: one feature cell's M2 split into components
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CellDecomposition(ComponentShares):
    """The map value of one feature cell and its split into whitened components.

    Attributes
    ----------
    method
        The method's name.
    split, image, row, col
        Where: split, image index, the input pixel (row, col) asked for (S x S input).
    cell, grid, cell_pixels
        The feature cell (i, j) holding the pixel, the map's (h, w), input pixels per cell side.
    m2
        The stored map at the cell (feature resolution): the squared Mahalanobis distance.
    y2
        (C,) float64: ``y_c**2`` at the cell for every component; ``y2.sum() == m2`` up to float32
        rounding.
    top
        The ``top`` largest contributions' component indices, largest first (ties: lower first).
    per_position
        Whether each position has its own Gaussian (PaDiM): see :func:`basis_note`.
    basis
        ``"pca"``, ``"cholesky"`` or None (:attr:`mvgviz.results.MethodResult.component_basis`).
    pixel_value
        The method's map as scored at the pixel (upsampled by its ``to_pixels``).
    """

    method: str
    split: str
    image: int
    row: int
    col: int
    cell: tuple[int, int]
    grid: tuple[int, int]
    cell_pixels: int
    m2: float
    y2: np.ndarray
    top: tuple[int, ...]
    per_position: bool
    pixel_value: float
    basis: str | None = None

    def to_dict(self) -> dict:
        return {"method": self.method, "split": self.split, "image": self.image, "row": self.row, "col": self.col,
                "cell": list(self.cell), "grid": list(self.grid), "cell_pixels": self.cell_pixels, "m2": self.m2,
                "top": list(self.top), "top_values": self.top_values.tolist(), "top_share": self.top_share,
                "per_position": self.per_position, "basis": self.basis, "pixel_value": self.pixel_value}


def decompose_cell(result: "MethodResult", split: str, image: int, row: int, col: int, *,
                   top: int = 8) -> CellDecomposition:
    """Split the map of the feature cell under input pixel ``(row, col)`` into its components.

    Parameters
    ----------
    result
        A method with per-position components (``result.has_components``).
    split, image
        Which image (index in the split's sorted order).
    row, col
        Input pixel, 0..S-1.
    top
        How many of the largest contributions to list (capped at the number of components).

    Reads one image's components and map only.
    """
    _need(result, "has_components", "per-position components (it is not explained pixel by pixel)")
    split = check_split(split)
    image = _image(result, split, image)
    s = int(result.image_size)
    row = _int(row, "row", 0, s - 1, "a pixel row")
    col = _int(col, "col", 0, s - 1, "a pixel column")
    y = result.components(split, [image])[0]                            # (C, h, w)
    c, h, w = y.shape
    i, j = min(row * h // s, h - 1), min(col * w // s, w - 1)
    y2 = np.square(y[:, i, j].astype(np.float64))                        # (C,)
    m2 = float(result.maps(split, [image], upsampled=False)[0, i, j])   # the stored map at the cell
    pixel = float(result.maps(split, [image])[0, row, col])            # the map as scored
    return CellDecomposition(method=result.name, split=split, image=image, row=row, col=col, cell=(int(i), int(j)),
                             grid=(int(h), int(w)), cell_pixels=s // max(h, 1), m2=m2, y2=y2,
                             top=tuple(int(k) for k in _largest(y2, _top(top, c))),
                             per_position=bool(result.components_per_position), pixel_value=pixel,
                             basis=result.component_basis)


def basis_note(per_position: bool, basis: str | None) -> str:
    """What a component index means, in one sentence for the page."""
    if not per_position:
        what = {"pca": "the direction with the c-th smallest variance of the one Gaussian",
                "cholesky": "the c-th kept channel's standardised residual given the channels before it"}
        return f"Component c is {what.get(basis, 'one whitened direction')}, the same at every position."
    if basis == "cholesky":
        return ("One Gaussian per position, Cholesky whitening: component c is the c-th channel of the kept "
                "embedding subset (in embedding order, finest layer first), as its standardised residual given "
                "the channels before it: the same channel at every position, conditioned by that position's own "
                "covariance.")
    return ("One Gaussian per position: component c is the c-th whitened direction of that position's own "
            "Gaussian, so the same index means a different direction at each position; a component's map mixes "
            "unrelated directions.")


def component_maps(result: "MethodResult", split: str, images, components, *, upsampled: bool = True) -> np.ndarray:
    """(n, k, S, S) float32 maps ``y_c**2`` of ``components`` (indices) for ``images``, brought to
    the input's pixels by bilinear upsampling (:func:`mvgviz.metrics.upsample`; ``upsampled=False``:
    (n, k, h, w) at feature resolution). Upsampling is linear: over all components these maps add
    up to the bilinearly upsampled M2 map. (A method whose own ``to_pixels`` is not linear, e.g.
    PaDiM's square root and blur, scores another map; these are its components' squares.)"""
    _need(result, "has_components", "per-position components")
    split = check_split(split)
    n = result.n_images(split)
    imgs = [_int(i, "images", 0, n - 1, f"an index of the {split} split") for i in np.atleast_1d(images).tolist()]
    y = result.components(split, imgs)                                  # (n, C, h, w)
    comps = [_int(c, "components", 0, y.shape[1] - 1, "a component index") for c in
             np.atleast_1d(components).tolist()]
    y2 = np.square(y[:, comps])                                         # (n, k, h, w)
    if not upsampled:
        return y2
    import torch

    from .metrics import upsample
    s = int(result.image_size)
    return upsample(torch.from_numpy(np.ascontiguousarray(y2)), (s, s)).numpy()


def component_scale(result: "MethodResult", split: str, component: int, *, batch: int = 64) -> float:
    """The 99th percentile of ``y_c**2`` of one component over all cells of all images of ``split``
    (feature resolution, as the Grid's per-component scale): the maximum of its map's colour scale."""
    _need(result, "has_components", "per-position components")
    split = check_split(split)
    n = result.n_images(split)
    n_comp = result.components(split, [0]).shape[1]
    c = _int(component, "component", 0, n_comp - 1, "a component index")
    parts = [np.square(result.components(split, slice(a, min(a + batch, n)), [c])).ravel() for a in range(0, n, batch)]
    return float(np.percentile(np.concatenate(parts), 99))


# ---------------------------------------------------------------------------------------
# Image-level components
# ---------------------------------------------------------------------------------------

def component_names(result: "MethodResult") -> list[str]:
    """(K,) names of the image-level components: ``"<group> #<index in the group>"``, in
    ``image_components`` order (e.g. ``"_blocks[10] #3"``)."""
    _need(result, "has_image_components", "image-level components")
    out = []
    for group, count in result.component_groups:
        out += [f"{group} #{j}" for j in range(count)]
    return out


def _group_index(result: "MethodResult", k: int) -> np.ndarray:
    """(K,) group number of each image-level component; checks the groups cover the K components."""
    groups = result.component_groups
    counts = [n for _, n in groups]
    if sum(counts) != k:
        raise ValueError(f"method {result.name!r}: its component groups ({groups}) hold {sum(counts)} components, "
                         f"its image components {k}")
    return np.repeat(np.arange(len(groups)), counts)


@dataclass(frozen=True)
class ImageDecomposition:
    """An image's score split into its image-level components.

    Attributes
    ----------
    method, split, image
        Which method and image.
    score
        The image score as evaluated (e.g. the sum of the groups' distances).
    y2
        (K,) float64 ``y_k**2`` of every component, in ``image_components`` order.
    group
        (K,) group number of each component (index into ``groups``).
    groups
        The group (level) names.
    names
        (K,) component names (:func:`component_names`).
    top
        The ``top`` largest contributions, largest first (ties: lower index first).
    """

    method: str
    split: str
    image: int
    score: float
    y2: np.ndarray
    group: np.ndarray
    groups: tuple[str, ...]
    names: tuple[str, ...]
    top: tuple[int, ...]

    @property
    def group_m2(self) -> np.ndarray:
        """(G,) squared Mahalanobis distance of each group: the sum of its components' ``y_k**2``."""
        return np.bincount(self.group, weights=self.y2, minlength=len(self.groups))

    @property
    def group_distance(self) -> np.ndarray:
        """(G,) Mahalanobis distance of each group (its square root)."""
        return np.sqrt(self.group_m2)

    @property
    def shares(self) -> np.ndarray:
        """(K,) share of each component in the sum of all ``y_k**2`` (the groups' squared distances
        added up); zeros where that sum is 0."""
        t = float(self.y2.sum())
        return self.y2 / t if t > 0 else np.zeros_like(self.y2)

    @property
    def group_shares(self) -> np.ndarray:
        """(K,) share of each component in its own group's squared distance."""
        g = self.group_m2[self.group]
        return np.divide(self.y2, g, out=np.zeros_like(self.y2), where=g > 0)

    @property
    def top_share(self) -> float:
        return float(self.shares[list(self.top)].sum())

    def to_dict(self) -> dict:
        return {"method": self.method, "split": self.split, "image": self.image, "score": self.score,
                "groups": [{"name": g, "m2": float(m), "distance": float(d)}
                           for g, m, d in zip(self.groups, self.group_m2, self.group_distance)],
                "top": [{"index": int(k), "name": self.names[k], "y2": float(self.y2[k]),
                         "share": float(self.shares[k])} for k in self.top]}


def decompose_image(result: "MethodResult", split: str, image: int, *, top: int = 10) -> ImageDecomposition:
    """The components driving one image's score (a method with ``has_image_components``)."""
    _need(result, "has_image_components", "image-level components")
    split = check_split(split)
    image = _image(result, split, image)
    y = result.image_components(split, [image])[0].astype(np.float64)  # (K,)
    y2 = np.square(y)
    group = _group_index(result, len(y2))
    return ImageDecomposition(method=result.name, split=split, image=image,
                              score=float(result.image_scores(split)[image]), y2=y2, group=group,
                              groups=tuple(g for g, _ in result.component_groups),
                              names=tuple(component_names(result)),
                              top=tuple(int(k) for k in _largest(y2, _top(top, len(y2)))))


@dataclass(frozen=True)
class TopImages:
    """The images of a split scoring highest on one image-level component.

    ``images`` (n,) indices, highest first (ties: lower index first); ``y2`` (n,) their ``y_k**2``;
    ``scores`` (n,) their image scores; ``ranks`` (n,) 1-based rank of each by image score (1 =
    the highest score of the split)."""

    method: str
    split: str
    component: int
    name: str
    images: np.ndarray
    y2: np.ndarray
    scores: np.ndarray
    ranks: np.ndarray


def top_images(result: "MethodResult", split: str, component: int, *, n: int = 5) -> TopImages:
    """The ``n`` images with the largest ``y_k**2`` on image-level component ``component``."""
    _need(result, "has_image_components", "image-level components")
    split = check_split(split)
    y = result.image_components(split)                                   # (N, K)
    k = _int(component, "component", 0, y.shape[1] - 1, "an image-level component index")
    y2 = np.square(y[:, k].astype(np.float64))                           # (N,)
    idx = _largest(y2, _top(n, len(y2)))
    scores = result.image_scores(split)
    rank = np.empty(len(scores), dtype=np.int64)
    rank[_largest(np.asarray(scores, dtype=np.float64), len(scores))] = np.arange(1, len(scores) + 1)
    return TopImages(method=result.name, split=split, component=k, name=component_names(result)[k],
                     images=idx, y2=y2[idx], scores=np.asarray(scores)[idx], ranks=rank[idx])


# ---------------------------------------------------------------------------------------
# Figures (plotly)
# ---------------------------------------------------------------------------------------

_BAR = "#d9480f"
_GROUP_COLOURS = ("#d9480f", "#1c7ed6", "#2b8a3e", "#9c36b5", "#e67700", "#0b7285", "#c2255c", "#5c940d")


def _bars(labels, values, shares, colours, *, title: str, ytitle: str, height: int, hover: str) -> "go.Figure":
    import plotly.graph_objects as go
    fig = go.Figure(go.Bar(
        x=labels, y=values, marker_color=colours, customdata=np.asarray(shares) * 100,
        text=[f"{p * 100:.1f}%" for p in shares], textposition="outside", cliponaxis=False,
        hovertemplate=hover))
    fig.update_layout(title=dict(text=title, font=dict(size=14)), height=height,
                      margin=dict(l=10, r=10, t=100, b=10), yaxis_title=ytitle,
                      xaxis=dict(type="category"), showlegend=False)
    return fig


def cell_figure(d: CellDecomposition, *, label: str | None = None, height: int = 380) -> "go.Figure":
    """Bar chart of the ``top`` contributions ``y_c**2`` at the cell, each with its share of M2."""
    top = list(d.top)
    n_rest = len(d.y2) - len(top)
    rest = f", the other {n_rest} = {max(1.0 - d.top_share, 0.0) * 100:.1f}%" if n_rest else ""
    where = ("per position, Cholesky: c = the c-th kept embedding channel" if d.per_position and d.basis == "cholesky" else
             "per position: c is a different direction at each position" if d.per_position else
             "one Gaussian: c is the same direction everywhere")
    title = (f"{label or d.method}: cell ({d.cell[0]}, {d.cell[1]}) of {d.grid[0]}x{d.grid[1]}, M2 = {d.m2:.4g}<br>"
             f"<span style='font-size:12px'>{d.split} image {d.image}, pixel ({d.row}, {d.col}): top {len(top)} = "
             f"{d.top_share * 100:.1f}%{rest}<br>components {where}</span>")
    return _bars([f"c {c}" for c in top], d.top_values, d.shares[top], _BAR, title=title,
                 ytitle="y_c² at the cell", height=height,
                 hover="%{x}<br>y² = %{y:.4g}<br>%{customdata:.1f}% of the cell's M2<extra></extra>")


def image_figure(d: ImageDecomposition, *, label: str | None = None, height: int = 400) -> "go.Figure":
    """Bar chart of the components driving an image's score, largest first, one colour (and legend
    entry) per group (level); each bar labelled with its share of the summed squared distances."""
    import plotly.graph_objects as go
    top = list(d.top)
    order = [d.names[k] for k in top]
    fig = go.Figure()
    for g, name in enumerate(d.groups):
        ks = [k for k in top if int(d.group[k]) == g]
        if not ks:
            continue
        shares = d.shares[ks]
        fig.add_trace(go.Bar(
            x=[d.names[k] for k in ks], y=d.y2[ks], name=f"{name} (distance {d.group_distance[g]:.3g})",
            marker_color=_GROUP_COLOURS[g % len(_GROUP_COLOURS)], customdata=shares * 100,
            text=[f"{v * 100:.1f}%" for v in shares], textposition="outside", cliponaxis=False,
            hovertemplate="%{x}<br>y² = %{y:.4g}<br>%{customdata:.1f}% of all y²<extra></extra>"))
    fig.update_layout(
        title=dict(text=(f"{label or d.method}: {d.split} image {d.image}, score {d.score:.4g}<br>"
                         f"<span style='font-size:12px'>the top {len(top)} components make {d.top_share * 100:.1f}% "
                         "of the levels' squared distances added up; colour: level</span>"), font=dict(size=14)),
        height=height, margin=dict(l=10, r=10, t=80, b=10), yaxis_title="y_k² (image-level component)",
        xaxis=dict(type="category", categoryorder="array", categoryarray=order), barmode="overlay",
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0, font=dict(size=11)))
    return fig


def top_images_figure(t: TopImages, defect_types, *, label: str | None = None, height: int = 320) -> "go.Figure":
    """Bar chart of the images scoring highest on one component (bars coloured good / defect)."""
    from .conventions import is_defect
    labels = [f"img {int(i)} | {defect_types[int(i)]}" for i in t.images]
    colours = ["#c92a2a" if is_defect(defect_types[int(i)]) else "#868e96" for i in t.images]
    import plotly.graph_objects as go
    fig = go.Figure(go.Bar(x=labels, y=t.y2, marker_color=colours, customdata=np.stack([t.scores, t.ranks], 1),
                           hovertemplate="%{x}<br>y² = %{y:.4g}<br>image score %{customdata[0]:.4g} "
                                         "(rank %{customdata[1]})<extra></extra>"))
    fig.update_layout(title=dict(text=(f"{label or t.method}: {t.split} images highest on {t.name}<br>"
                                       "<span style='font-size:12px'>red: defective, grey: good</span>"),
                                 font=dict(size=14)),
                      height=height, margin=dict(l=10, r=10, t=70, b=10), yaxis_title="y_k²",
                      xaxis=dict(type="category"), showlegend=False)
    return fig
