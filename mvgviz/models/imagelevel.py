"""Image-level Gaussians, one per level on globally pooled features (shared by Gaussian-AD and OPCA).

Rippel et al. (Gaussian-AD, seed ``003``) and Wang et al. (OPCA, seed ``001``) describe an image by one
vector per backbone level: the level's feature map averaged over its positions (global average
pooling, :func:`pool`), and fit one Gaussian per level to the train images' vectors. Both optionally
keep only part of the principal components first (PCA: the largest; NPCA/OPCA: the smallest), then fit
the Gaussian in that subspace. This module holds what both need, once:

- :func:`pool`: ``(n, C, h, w) -> (n, C)`` float64 means over positions.
- :func:`kept_components`: which principal components explain a given fraction of the variance.
- :func:`fit_level`: the streamed fit of one level (:func:`mvgviz.gaussian.fit_gaussian`, no second
  covariance code): PCA of the empirical covariance, selection, then the regularised Gaussian
  (Ledoit-Wolf by default) of the projected vectors. Without selection, the regularised Gaussian of
  the vectors themselves.
- :func:`levels_state` / :class:`PooledScorer`: the fitted levels as named arrays, and their batched
  whitening on a torch device.

Conventions (METHOD.md, "Whitening"): a level's Gaussian is kept as its mean ``mu`` (C,), its
eigenvalues ``w`` (k,) ascending and orthonormal eigenvectors ``V`` (C, k) in feature space (``k = C``
without selection; ``k`` the kept components otherwise). The whitened components are
``y = (x - mu) @ V diag(w^-1/2)``, component ``c`` the one with the c-th smallest eigenvalue of the
Gaussian; eigenvalues at or below :mod:`mvgviz.gaussian`'s floor are 0 and their components are 0
(pseudo-inverse). ``||y||^2`` is the squared Mahalanobis distance in the kept subspace:
``(x - mu)^T V diag(1/w) V^T (x - mu)``.

Covariance normalisation: the PCA step uses METHOD.md's unbiased covariance (``/(N-1)``); only the
variance *fractions* matter there, which do not depend on the normalisation. Ledoit-Wolf is
scikit-learn's ``ledoit_wolf`` exactly (its biased empirical covariance ``/N`` shrunk towards
``mean(diag) * I``), as :mod:`mvgviz.gaussian` computes it and as Rippel et al.'s code calls it.

Memory (fit): one batch of one level's maps on ``device``, plus float64 sums of ``C x C`` per level
(one level at a time). The train split is read once per pass, one level at a time: a Ledoit-Wolf fit
makes two passes, a PCA selection one more (so 2 or 3 passes per level). The state holds per level
``mu`` (C,), ``w`` (k,), ``V`` (C, k) and, with a selection, the PCA eigenvalues (C,), float64: at most
``8 C (C + 3)`` bytes (WideResNet-50-2's three levels, 256 + 512 + 1024 channels: 11 MB).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from ..conventions import ParamError
from .base import State

if TYPE_CHECKING:
    import torch

# Tolerance of "the kept components explain at least ``fraction`` of the variance", as a share of the
# total variance: the eigenvalues carry rounding of order C * eps64 * max(w), so a boundary that the
# data hit exactly (e.g. 1/14 of the variance in one component) must not flip on rounding.
FRACTION_TOL = 1e-9

KEEP = ("largest", "smallest")


def pool(feats: "torch.Tensor") -> "torch.Tensor":
    """Global average pooling: feature maps (n, C, h, w) -> (n, C) float64, the mean over the h*w positions."""
    import torch
    if feats.ndim != 4:
        raise ValueError(f"feats must be feature maps (n, C, h, w), got shape {tuple(feats.shape)}")
    return feats.to(torch.float64).mean(dim=(-2, -1))  # (n, C)


def layers_option(spec, layers) -> tuple[str, ...]:
    """A ``layers`` option against a backbone: ``None`` or ``"all"`` -> every layer; ``"a+b"``,
    ``"a,b"`` or a list -> those, in backbone order (ParamError ``layers`` for an unknown name)."""
    from .base import layer_list
    if layers is None or layers == "all":
        return tuple(l.name for l in spec.layers)
    chosen = {l.name for l in layer_list(spec, layers, finest_first=False)}
    return tuple(l.name for l in spec.layers if l.name in chosen)


def reject_unknown(method: str, unknown: dict, known) -> None:
    """A ParamError naming the first of ``unknown`` options (``for_backbone``'s extra keywords)."""
    if unknown:
        name = next(iter(unknown))
        raise ParamError(name, f"is not an option of {method} (its options: {', '.join(known)})")


def check_fraction(value, param: str) -> float:
    """``value`` as a float in (0, 1], else a ParamError naming ``param``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not 0.0 < float(value) <= 1.0:
        raise ParamError(param, f"must be a fraction of the variance in (0, 1], got {value!r}")
    return float(value)


def check_layer_names(layers, param: str = "layers") -> tuple[str, ...]:
    """A non-empty sequence of distinct layer names as a tuple (a list from JSON options too)."""
    if isinstance(layers, str) or not isinstance(layers, (tuple, list)) or not layers \
            or not all(isinstance(l, str) and l for l in layers):
        raise ParamError(param, f"must be a non-empty list of layer names, got {layers!r}")
    if len(set(layers)) != len(layers):
        raise ParamError(param, f"names a layer twice: {list(layers)}")
    return tuple(layers)


def kept_components(eigvals: np.ndarray, fraction: float, *, keep: str) -> np.ndarray:
    """Indices (ascending) of the principal components that explain ``fraction`` of the variance.

    Parameters
    ----------
    eigvals
        (C,) the covariance's eigenvalues, ascending, 0 at or below the floor.
    fraction
        In (0, 1]: the kept components' share of the total variance ``sum(eigvals)``.
    keep
        ``"largest"`` (PCA: the components with the most variance) or ``"smallest"`` (NPCA, OPCA: the
        least).

    Returns
    -------
    (k,) int array, ascending: the fewest components, taken from the ``keep`` end of the spectrum,
    whose eigenvalues add up to at least ``fraction`` of the total (short of it by at most
    :data:`FRACTION_TOL` of the total, so a boundary hit exactly counts as reached). Components with eigenvalue 0
    are never kept: they carry no variance (as scikit-learn's PCA, which gives at most min(N, C)
    components). Empty only when every eigenvalue is 0.
    """
    if keep not in KEEP:
        raise ValueError(f"keep must be one of {KEEP}, got {keep!r}")
    w = np.asarray(eigvals, dtype=np.float64)
    positive = np.flatnonzero(w > 0)  # ascending eigenvalues
    if positive.size == 0:
        return positive
    order = positive if keep == "smallest" else positive[::-1]
    total = w[positive].sum()
    cum = np.cumsum(w[order])
    k = int(np.searchsorted(cum >= (fraction - FRACTION_TOL) * total, True)) + 1  # first reaching it
    return np.sort(order[:min(k, order.size)])


@dataclass(frozen=True)
class LevelGaussian:
    """One level's fitted Gaussian (NumPy, float64).

    mean: (C,) the empirical mean of the pooled vectors; eigvals: (k,) ascending, 0 at or below the
    floor; eigvecs: (C, k) orthonormal columns, column c = component c; pca_eigvals: (C,) the
    unbiased empirical covariance's eigenvalues (ascending) the selection used, or None without
    selection; explained: the kept components' share of the empirical variance (1.0 without
    selection); n_samples: train images; reg, shrinkage, floor: of the Gaussian's fit.
    """

    mean: np.ndarray
    eigvals: np.ndarray
    eigvecs: np.ndarray
    pca_eigvals: np.ndarray | None
    explained: float
    n_samples: int
    reg: str
    shrinkage: float
    floor: float

    @property
    def n_kept(self) -> int:
        return int(self.eigvals.shape[0])

    def whitener(self) -> np.ndarray:
        """(C, k) ``V diag(w^-1/2)``, zero columns where ``w == 0``: ``y = (x - mean) @ whitener``."""
        return whitening_matrix(self.eigvals, self.eigvecs)


def whitening_matrix(eigvals: np.ndarray, eigvecs: np.ndarray) -> np.ndarray:
    """(C, k) ``V diag(w^-1/2)`` with zero columns where ``w <= 0`` (SciPy's ``Covariance.whiten`` of
    ``from_eigendecomposition((w, V))`` when ``V`` is square; tested to agree)."""
    w = np.asarray(eigvals, dtype=np.float64)
    inv_sqrt = np.where(w > 0, 1.0 / np.sqrt(np.where(w > 0, w, 1.0)), 0.0)
    return np.asarray(eigvecs, dtype=np.float64) * inv_sqrt[None, :]


def fit_levels(features, layers, *, batch_size: int, device=None, **kw) -> list:
    """:func:`fit_level` on each layer's globally pooled features (``pool``), streamed over the
    train split of a :class:`~mvgviz.models.base.FeatureSource` (a fresh pass each time one is
    asked for); ``kw``: ``reg``, ``keep``, ``fraction``."""
    levels = []
    for layer in layers:
        def rows(layer=layer):  # (n, C) pooled vectors of one batch
            for b in features.batches("train", (layer,), batch_size=batch_size, device=device):
                yield pool(b[layer])
        levels.append(fit_level(rows, device=device, name=layer, **kw))
    return levels


def fit_level(rows: Callable[[], Iterable["torch.Tensor"]], *, reg: str, keep: str | None = None,
              fraction: float | None = None, device=None, name: str = "") -> LevelGaussian:
    """Fit one level's Gaussian to pooled vectors, streamed.

    Parameters
    ----------
    rows
        Zero-argument callable returning a fresh iterable of (m, C) pooled vectors (it is called once
        per pass: 2 for Ledoit-Wolf, one more with ``keep``).
    reg
        The Gaussian's regulariser (:func:`mvgviz.gaussian.parse_reg`), e.g. ``"ledoit-wolf"``.
    keep, fraction
        ``None``: the Gaussian of the vectors (all C components). ``"largest"``/``"smallest"``: PCA
        first (eigendecomposition of the unbiased empirical covariance), keep
        :func:`kept_components` at ``fraction``, then fit the ``reg`` Gaussian of the projected
        vectors ``x @ V_k`` (k dimensions): the order of Rippel et al.'s code (PCA, then
        Ledoit-Wolf on the reduced features) and of Wang et al. ("reduce dimensionality based on
        PCA, then build the distribution of normal features via the MVG").
    name
        The level's name, for the error raised when it has no variance at all.
    """
    import torch

    from ..gaussian import fit_gaussian
    if keep is None:
        g = fit_gaussian(rows, reg=reg, device=device)
        return LevelGaussian(mean=g.mean, eigvals=g.eigvals, eigvecs=g.eigvecs, pca_eigvals=None, explained=1.0,
                             n_samples=g.n_samples, reg=g.reg, shrinkage=float(g.shrinkage), floor=float(g.floor))
    pca = fit_gaussian(rows, reg="none", device=device)
    idx = kept_components(pca.eigvals, fraction, keep=keep)
    if idx.size == 0:
        raise ParamError("layers", f"layer {name!r} has constant pooled features on the train split: "
                                   "its PCA keeps no component (drop the layer)")
    basis = pca.eigvecs[:, idx]  # (C, k) orthonormal
    b = torch.as_tensor(basis, dtype=torch.float64, device=device)

    def projected():  # (m, k): the pooled vectors in the kept components' coordinates
        for x in rows():
            yield torch.as_tensor(x).to(b.device, torch.float64) @ b

    sub = fit_gaussian(projected, reg=reg, device=device)
    w = pca.eigvals
    return LevelGaussian(mean=pca.mean, eigvals=sub.eigvals, eigvecs=basis @ sub.eigvecs, pca_eigvals=w,
                         explained=float(w[idx].sum() / w[w > 0].sum()), n_samples=sub.n_samples, reg=sub.reg,
                         shrinkage=float(sub.shrinkage), floor=float(sub.floor))


def levels_state(layers: tuple[str, ...], levels: list[LevelGaussian], meta: dict) -> State:
    """The fitted levels as a :class:`State`.

    Arrays, for level ``i`` (in ``layers`` order): ``mean_i`` (C,), ``eigvals_i`` (k,), ``eigvecs_i``
    (C, k) and, where PCA selected the components, ``pca_eigvals_i`` (C,). Meta: ``meta`` plus
    ``layers``, ``component_groups`` ``[[layer, k], ...]`` (the groups of ``image_components``),
    ``n_samples``, ``reg`` and ``levels``: per level its channels, kept count, explained share,
    shrinkage, floor and number of zero eigenvalues.
    """
    arrays: dict[str, np.ndarray] = {}
    info = []
    for i, (layer, g) in enumerate(zip(layers, levels)):
        arrays[f"mean_{i}"] = g.mean
        arrays[f"eigvals_{i}"] = g.eigvals
        arrays[f"eigvecs_{i}"] = g.eigvecs
        if g.pca_eigvals is not None:
            arrays[f"pca_eigvals_{i}"] = g.pca_eigvals
        info.append({"layer": layer, "channels": int(g.mean.shape[0]), "kept": g.n_kept,
                     "explained": float(g.explained), "shrinkage": float(g.shrinkage), "floor": float(g.floor),
                     "n_zero_eigvals": int((g.eigvals == 0).sum())})
    return State(arrays=arrays, meta={**meta, "layers": list(layers),
                                      "component_groups": [[l, g.n_kept] for l, g in zip(layers, levels)],
                                      "n_samples": int(levels[0].n_samples), "reg": levels[0].reg,
                                      "levels": info})


class PooledScorer:
    """The fitted levels on a torch device: pooled distances and whitened components of a batch.

    ``means[i]`` (C_i,) and ``whiteners[i]`` (C_i, k_i) float64, for level ``layers[i]``.
    """

    def __init__(self, state: State, device):
        import torch
        self.device = torch.device(device)
        self.layers = tuple(state.meta["layers"])
        self.means = [torch.as_tensor(np.asarray(state.arrays[f"mean_{i}"]), dtype=torch.float64, device=self.device)
                      for i in range(len(self.layers))]
        self.whiteners = [torch.as_tensor(whitening_matrix(state.arrays[f"eigvals_{i}"], state.arrays[f"eigvecs_{i}"]),
                                          dtype=torch.float64, device=self.device)
                          for i in range(len(self.layers))]

    def __call__(self, feats: dict) -> "tuple[torch.Tensor, torch.Tensor]":
        """{layer: (n, C, h, w)} -> (distances (n, L), components (n, K)), float64 on the scorer's device.

        ``distances[:, i]`` is level i's Mahalanobis distance (in its kept subspace) of the image's
        pooled vector; ``components`` its whitened components, levels concatenated in ``layers`` order,
        so that ``sum of squares of level i's block == distances[:, i]**2``.
        """
        import torch
        with torch.no_grad():
            comps = [(pool(feats[l].to(self.device)) - mu) @ wm  # (n, k_i)
                     for l, mu, wm in zip(self.layers, self.means, self.whiteners)]
            dist = torch.stack([c.square().sum(1).sqrt() for c in comps], dim=1)  # (n, L)
            return dist, torch.cat(comps, dim=1)


__all__ = ["FRACTION_TOL", "LevelGaussian", "PooledScorer", "check_fraction", "check_layer_names", "fit_level",
           "kept_components", "layers_option", "levels_state", "pool", "reject_unknown",
           "whitening_matrix"]
