"""Exact evaluation metrics: image/pixel AUROC, average precision, AUPRO, and the upsampling.

All scores are used raw (no sigmoid, no normalisation): Mahalanobis values are large and a sigmoid
in float32 saturates them, which silently ruins the ranking (see METHOD.md, "Metrics").

Conventions
-----------
* ``auroc`` and ``average_precision`` are exact and equal ``sklearn.metrics.roc_auc_score`` and
  ``sklearn.metrics.average_precision_score``: tied scores count as half a correctly ordered pair,
  and the AUPR is the step-wise *average precision*, not a trapezoid under the PR curve.
* The exact metrics sort on the CPU with NumPy (float32 scores stay float32: their order is
  exact).
* Pixel metrics take score maps already upsampled to the input resolution; :func:`upsample` is the
  one definition of that upsampling (bilinear, ``align_corners=False``, the same as OpenCV's
  ``INTER_LINEAR``) shared by the whole package.
* The ranking of whitened components by their single-component pixel AUROC lives in
  :mod:`mvgviz.ranking`.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

__all__ = [
    "aupro",
    "auroc",
    "average_precision",
    "image_auroc",
    "pixel_metrics",
    "upsample",
]

ArrayLike = Union[np.ndarray, torch.Tensor]

# Ground-truth regions are 8-connected within one image and never connected across images: a
# (3, 3, 3) structure whose only non-zero plane is the middle one labels a (N, H, W) stack in one call.
_REGION_STRUCTURE = np.zeros((3, 3, 3), dtype=bool)
_REGION_STRUCTURE[1] = True

# --------------------------------------------------------------------------------------------------
# Input conversion and validation
# --------------------------------------------------------------------------------------------------
def _as_tensor(x, name: str) -> torch.Tensor:
    """NumPy array, tensor or nested sequence -> tensor (NumPy and sequences land on the CPU)."""
    if isinstance(x, torch.Tensor):
        return x.detach()
    arr = np.asarray(x)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ValueError(f"`{name}` must be a numeric array or tensor, got dtype {arr.dtype}")
    return torch.from_numpy(np.ascontiguousarray(arr))


def _scores_1d(scores, name: str = "scores") -> torch.Tensor:
    """Scores of any shape -> (n,) float32 or float64 on their device (other dtypes -> float64);
    rejects empty, complex and NaN input. float32 stays float32: sorting it is exact and faster."""
    s = _as_tensor(scores, name)
    if s.is_complex():
        raise ValueError(f"`{name}` must be real, got dtype {s.dtype}")
    s = s.reshape(-1)  # (n,)
    if s.dtype not in (torch.float32, torch.float64):
        s = s.to(torch.float64)
    if s.numel() == 0:
        raise ValueError(f"`{name}` must not be empty, got shape {tuple(_as_tensor(scores, name).shape)}")
    if torch.isnan(s).any():
        raise ValueError(f"`{name}` contains NaN ({int(torch.isnan(s).sum())} of {s.numel()} values)")
    return s


def _labels_1d(labels, n: int, device: torch.device, name: str = "labels",
               like: str = "scores") -> torch.Tensor:
    """Binary labels of any shape -> (n,) bool on ``device``; rejects values other than 0/1."""
    lab = _as_tensor(labels, name).reshape(-1)
    if lab.numel() != n:
        raise ValueError(f"`{name}` must have as many elements as `{like}` ({n}), got {lab.numel()}")
    if lab.dtype != torch.bool:
        if lab.is_complex() or not ((lab == 0) | (lab == 1)).all():
            vals = torch.unique(lab)[:6].tolist()
            raise ValueError(f"`{name}` must be binary (bool or 0/1), got values {vals}")
        lab = lab != 0
    return lab.to(device)


def _check_both_classes(n_pos: int, n_total: int, name: str) -> None:
    if n_pos == 0 or n_pos == n_total:
        only = "positives" if n_pos else "negatives"
        raise ValueError(f"`{name}` must contain both classes, got only {only} ({n_total} values): "
                         "the AUROC is undefined")


def _check_out_size(out_size) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in out_size)
        ok = all(isinstance(v, numbers.Integral) for v in out_size) and h > 0 and w > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"`out_size` must be a pair of positive ints (H, W), got {out_size!r}")
    return h, w


def _check_positive_int(value, name: str, *, allow_none: bool = False, minimum: int = 1):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        what = f"an int >= {minimum}" + (" or None" if allow_none else "")
        raise ValueError(f"`{name}` must be {what}, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------------------------------
# Sort-based exact metrics
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Thresholds:
    """Exact counts at every distinct score of a positive, highest score first.

    Every metric here only changes at those thresholds: the ROC and PR curves between two of
    them are straight (or flat) segments, so evaluating at them is exact, ties included.
    Built from one ascending sort of all n scores (NumPy's vectorised sort, ~30 ms for 8M
    float32 on this CPU) and a sort of the P positives, with ``searchsorted`` in between:
    O(n log n) once, then O(P log n).

    Attributes (all (U,) arrays, U distinct positive scores, descending)
    ----------
    pos_eq : int64, positives scoring exactly u
    pos_ge, all_ge, all_gt : int64, positives / all scores >= u, all scores > u
    pos_idx_start : int64, start of u's run in ``order`` (ascending positives)
    order : (P,) int64, argsort of the positives' scores (ascending)
    n_pos, n_neg : int
    """

    pos_eq: np.ndarray
    pos_ge: np.ndarray
    all_ge: np.ndarray
    all_gt: np.ndarray
    pos_idx_start: np.ndarray
    order: np.ndarray
    n_pos: int
    n_neg: int

    @property
    def neg_ge(self) -> np.ndarray:
        return self.all_ge - self.pos_ge

    @property
    def neg_gt(self) -> np.ndarray:
        return self.all_gt - (self.pos_ge - self.pos_eq)


def _thresholds(s: np.ndarray, lab: np.ndarray) -> _Thresholds:
    """s: (n,) float scores (no NaN), lab: (n,) bool with at least one positive."""
    n = s.size
    all_sorted = np.sort(s)  # (n,) ascending
    pos = s[lab]  # (P,)
    order = np.argsort(pos, kind="stable")  # (P,)
    u, start, pos_eq = np.unique(pos[order], return_index=True, return_counts=True)  # (U,) ascending
    pos_lt = np.cumsum(pos_eq) - pos_eq  # (U,) positives below u
    all_lt = np.searchsorted(all_sorted, u, side="left")  # (U,)
    all_le = np.searchsorted(all_sorted, u, side="right")
    rev = slice(None, None, -1)  # highest threshold first
    return _Thresholds(pos_eq=pos_eq[rev].astype(np.int64), pos_ge=(pos.size - pos_lt)[rev].astype(np.int64),
                       all_ge=(n - all_lt)[rev].astype(np.int64), all_gt=(n - all_le)[rev].astype(np.int64),
                       pos_idx_start=start[rev].astype(np.int64), order=order,
                       n_pos=int(pos.size), n_neg=int(n - pos.size))


def _auroc_from(t: _Thresholds) -> float:
    """Exact AUROC; each tied positive/negative pair counts one half.

    The ``pos_eq`` positives at threshold u beat the negatives below u (``n_neg - neg_ge``) and
    tie with those at u (``neg_ge - neg_gt``): twice the won pairs is an exact int64 sum.
    """
    below = t.n_neg - t.neg_ge  # (U,)
    tied = t.neg_ge - t.neg_gt
    twice_won = int(np.sum(t.pos_eq * (2 * below + tied)))
    return twice_won / (2 * t.n_pos * t.n_neg)


def _ap_from(t: _Thresholds) -> float:
    """Step-wise average precision ``sum_k (R_k - R_{k-1}) P_k`` (sklearn's definition)."""
    precision = t.pos_ge / t.all_ge  # (U,) at each threshold where the recall changes
    return float(np.sum(t.pos_eq * precision) / t.n_pos)


def _aupro_from(t: _Thresholds, pos_weights: np.ndarray, fpr_limit: float) -> float:
    """AUPRO from the thresholds and each positive pixel's PRO weight (in the positives' order).

    Between two positive thresholds the PRO is constant, so the exact curve is the polyline
    through (0, 0), then for each threshold u, highest first, (FPR(> u), PRO(> u)) and
    (FPR(>= u), PRO(>= u)), then (1, PRO total).
    """
    w_sorted = pos_weights[t.order]  # (P,) ascending score
    w_at = np.add.reduceat(w_sorted, t.pos_idx_start[::-1])[::-1]  # (U,) weight at each u, descending
    w_total = float(w_sorted.sum())
    pro_ge = np.cumsum(w_at)  # (U,) weight of positives >= u
    pro_gt = pro_ge - w_at
    fpr_ge, fpr_gt = t.neg_ge / t.n_neg, t.neg_gt / t.n_neg
    fpr = np.concatenate([[0.0], np.column_stack([fpr_gt, fpr_ge]).ravel(), [1.0]])  # (2U+2,)
    pro = np.concatenate([[0.0], np.column_stack([pro_gt, pro_ge]).ravel(), [w_total]])
    return _integrate_to(fpr, pro, fpr_limit)


def _np_scores(s: torch.Tensor) -> np.ndarray:
    """(n,) scores -> NumPy on the CPU, float32 kept as float32 (its order is exact), else float64."""
    s = s.detach().cpu()
    return s.numpy() if s.dtype in (torch.float32, torch.float64) else s.to(torch.float64).numpy()


def auroc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Exact area under the ROC curve, equal to ``sklearn.metrics.roc_auc_score``.

    O(n log n): one sort of all scores, then ``searchsorted`` at the positives' distinct scores;
    every tied positive/negative pair counts one half.

    Parameters
    ----------
    scores : array or tensor, any shape (flattened), real
        Higher means more anomalous. Used raw: no sigmoid, no normalisation. Torch tensors are
        copied to the CPU; float32 stays float32, other dtypes become float64.
    labels : array or tensor, same number of elements as ``scores``
        Bool or 0/1; True / 1 is the positive (anomalous) class.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If the sizes differ, labels are not binary, scores contain NaN, or only one class is present.
    """
    s = _scores_1d(scores)
    lab = _labels_1d(labels, s.numel(), s.device)
    _check_both_classes(int(lab.sum()), lab.numel(), "labels")
    return _auroc_from(_thresholds(_np_scores(s), lab.cpu().numpy()))


def average_precision(scores: ArrayLike, labels: ArrayLike) -> float:
    """Exact average precision, equal to ``sklearn.metrics.average_precision_score``.

    ``AP = sum_k (R_k - R_{k-1}) P_k`` over the distinct thresholds (step-wise, not a trapezoid).

    Parameters
    ----------
    scores : array or tensor, any shape (flattened), real
    labels : array or tensor, same number of elements as ``scores``, bool or 0/1

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If the sizes differ, labels are not binary, scores contain NaN, or there is no positive.
    """
    s = _scores_1d(scores)
    lab = _labels_1d(labels, s.numel(), s.device)
    if not bool(lab.any()):
        raise ValueError(f"`labels` must contain at least one positive, got none ({lab.numel()} values): "
                         "the average precision is undefined")
    return _ap_from(_thresholds(_np_scores(s), lab.cpu().numpy()))


def image_auroc(image_scores: ArrayLike, image_labels: ArrayLike) -> float:
    """Image-level AUROC.

    Parameters
    ----------
    image_scores : (N,) array or tensor, one score per image (e.g. the maximum of its M2 map)
    image_labels : (N,) array or tensor, bool or 0/1 (1 = defective image)

    Returns
    -------
    float
    """
    for name, v in (("image_scores", image_scores), ("image_labels", image_labels)):
        if _as_tensor(v, name).ndim != 1:
            raise ValueError(f"`{name}` must be 1-D (N,), got shape {tuple(_as_tensor(v, name).shape)}")
    return auroc(image_scores, image_labels)


# --------------------------------------------------------------------------------------------------
# AUPRO
# --------------------------------------------------------------------------------------------------
def _region_weights(masks: np.ndarray) -> tuple[np.ndarray, int]:
    """PRO weight of every pixel: ``1 / (|region| * n_regions)`` inside a region, 0 outside.

    Parameters
    ----------
    masks : (N, H, W) bool

    Returns
    -------
    weights : (N*H*W,) float64, summing to 1
    n_regions : int, number of 8-connected regions over all images
    """
    regions, n_regions = ndimage.label(masks, structure=_REGION_STRUCTURE)  # (N, H, W) int, 0 = normal
    sizes = np.bincount(regions.ravel())  # (n_regions + 1,)
    per_region = np.zeros(n_regions + 1)
    per_region[1:] = 1.0 / (sizes[1:].astype(np.float64) * n_regions)
    return per_region[regions.ravel()], int(n_regions)


def _integrate_to(fpr: np.ndarray, pro: np.ndarray, fpr_limit: float) -> float:
    """Trapezoid area under (fpr, pro) from 0 to ``fpr_limit``, interpolated there, over fpr_limit.

    ``fpr`` is non-decreasing and starts at 0.
    """
    i = int(np.searchsorted(fpr, fpr_limit, side="right"))  # fpr[:i] <= fpr_limit
    x, y = fpr[:i], pro[:i]
    if i < fpr.size:  # the segment (i-1, i) crosses fpr_limit: interpolate the curve there
        x0, x1, y0, y1 = fpr[i - 1], fpr[i], pro[i - 1], pro[i]
        x = np.append(x, fpr_limit)
        y = np.append(y, y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0))
    area = float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))
    return area / fpr_limit


def _check_aupro_inputs(score_maps, masks, fpr_limit) -> tuple[torch.Tensor, np.ndarray]:
    s = _as_tensor(score_maps, "score_maps")
    if s.ndim != 3:
        raise ValueError(f"`score_maps` must be (N, H, W), got shape {tuple(s.shape)}")
    m = _as_tensor(masks, "masks")
    if tuple(m.shape) != tuple(s.shape):
        raise ValueError(f"`masks` must have the shape of `score_maps` {tuple(s.shape)}, got {tuple(m.shape)}")
    m = _labels_1d(m, m.numel(), torch.device("cpu"), "masks", "score_maps").reshape(s.shape).numpy()
    if not (isinstance(fpr_limit, numbers.Real) and 0.0 < fpr_limit <= 1.0):
        raise ValueError(f"`fpr_limit` must be a float in (0, 1], got {fpr_limit!r}")
    if not m.any():
        raise ValueError("`masks` contains no anomalous region: the PRO is undefined")
    if m.all():
        raise ValueError("`masks` contains no anomaly-free pixel: the FPR is undefined")
    return s, m


def aupro(score_maps: ArrayLike, masks: ArrayLike, *, fpr_limit: float = 0.3) -> float:
    """Normalised area under the per-region-overlap curve up to a false positive rate.

    Ground-truth regions are the 8-connected components of each image's mask. The FPR counts all
    anomaly-free pixels of all N images; PRO(t) is the mean over all regions of the fraction of the
    region's pixels scoring >= t. The exact curve (every distinct score a threshold, from (0, 0);
    between two scores of anomalous pixels it is straight, so it is built at those, see
    ``_aupro_from``) comes from one sort and is integrated with the trapezoid rule from 0 to ``fpr_limit`` (the curve
    is linearly interpolated at ``fpr_limit``) and divided by ``fpr_limit``: a perfect detector gets
    1.0, one that ranks every normal pixel above every anomalous one gets 0.

    Parameters
    ----------
    score_maps : (N, H, W) array or tensor, float
        Anomaly maps at the masks' resolution (see :func:`upsample`).
    masks : (N, H, W) array or tensor, bool or 0/1
    fpr_limit : float, keyword-only, in (0, 1], default 0.3

    Returns
    -------
    float

    Raises
    ------
    ValueError
        On shape mismatch, NaN scores, an ``fpr_limit`` outside (0, 1], no region, or no normal pixel.
    """
    s, m = _check_aupro_inputs(score_maps, masks, fpr_limit)
    lab = m.reshape(-1)  # (n,) bool
    weights, _ = _region_weights(m)  # (n,)
    return _aupro_from(_thresholds(_np_scores(_scores_1d(s, "score_maps")), lab), weights[lab], float(fpr_limit))


def pixel_metrics(score_maps: ArrayLike, masks: ArrayLike, *, fpr_limit: float = 0.3) -> dict:
    """Pixel AUROC, pixel AUPR (average precision) and AUPRO from one shared sort.

    Parameters
    ----------
    score_maps : (N, H, W) array or tensor, float, already upsampled to the masks' resolution
    masks : (N, H, W) array or tensor, bool or 0/1
    fpr_limit : float, keyword-only, default 0.3, passed to the AUPRO

    Returns
    -------
    dict
        ``{"pixel_auroc": float, "pixel_aupr": float, "aupro": float}``; ``pixel_aupr`` is the
        step-wise average precision (as :func:`average_precision`), not a trapezoid.
    """
    s, m = _check_aupro_inputs(score_maps, masks, fpr_limit)
    lab = m.reshape(-1)  # (N*H*W,) bool
    t = _thresholds(_np_scores(_scores_1d(s, "score_maps")), lab)
    weights, _ = _region_weights(m)  # (N*H*W,)
    return {"pixel_auroc": _auroc_from(t), "pixel_aupr": _ap_from(t),
            "aupro": _aupro_from(t, weights[lab], float(fpr_limit))}


# --------------------------------------------------------------------------------------------------
# Upsampling and per-component AUROC
# --------------------------------------------------------------------------------------------------
def upsample(maps: torch.Tensor, out_size) -> torch.Tensor:
    """Bilinear resize of feature-resolution maps to the input resolution.

    ``align_corners=False`` (half-pixel centres, edge values clamped): the same as OpenCV's
    ``cv2.resize(..., interpolation=cv2.INTER_LINEAR)`` on float maps. Every output value is a convex
    combination of input values, so it lies within [min, max] of its map (up to rounding).

    Parameters
    ----------
    maps : (N, K, h, w) float tensor
    out_size : (H, W) pair of ints

    Returns
    -------
    (N, K, H, W) tensor, same dtype and device as ``maps``
    """
    if not isinstance(maps, torch.Tensor) or maps.ndim != 4 or not maps.is_floating_point():
        is_t = isinstance(maps, torch.Tensor)
        got = f"shape {tuple(maps.shape)}, dtype {maps.dtype}" if is_t else type(maps).__name__
        raise ValueError(f"`maps` must be a (N, K, h, w) floating-point tensor, got {got}")
    return F.interpolate(maps, size=_check_out_size(out_size), mode="bilinear", align_corners=False)


def __getattr__(name: str):
    """``ComponentAUROC`` and ``component_aurocs`` moved to :mod:`mvgviz.ranking`; still importable
    from here (lazily: :mod:`mvgviz.ranking` imports this module)."""
    if name in ("ComponentAUROC", "component_aurocs"):
        from . import ranking
        return getattr(ranking, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
