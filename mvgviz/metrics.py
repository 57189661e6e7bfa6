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
* :func:`pixel_metrics_streamed` computes the pixel metrics over image chunks in two passes, equal
  to the last bit to :func:`pixel_metrics` on the whole split, holding only the anomalous pixels
  and one chunk.
* The ranking of whitened components by their single-component pixel AUROC lives in
  :mod:`mvgviz.ranking` (``component_aurocs`` is still importable from here).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Callable, Iterable, Union

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
    "pixel_metrics_streamed",
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
    Built by :class:`_ThresholdCounts` in two passes over the scores (one pass when they are a
    single array): a sort of the P positives, then, for each of the U distinct positive scores,
    the number of all scores below and at most it.

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


class _ThresholdCounts:
    """Builds :class:`_Thresholds` from scores seen in chunks, in two passes.

    Pass 1, :meth:`add_positives` for every chunk: keeps the positives' scores (P values, in the
    order seen) and counts all scores. :meth:`levels` then sorts the positives once. Pass 2,
    :meth:`count` for every chunk of the same scores: adds, for each distinct positive score u,
    the chunk's number of scores ``< u`` and ``<= u``. These are integer sums, so any chunking
    of the same scores in the same order gives exactly the thresholds of one array. Memory:
    O(P + U) plus one chunk.
    """

    def __init__(self) -> None:
        self._pos: list[np.ndarray] = []
        self.n = 0  # scores seen in pass 1
        self._n_counted = 0  # scores seen in pass 2
        self.u = self._order = self._start = self._pos_eq = self._lt = self._le = None

    def add_positives(self, s: np.ndarray, positive: np.ndarray) -> None:
        """Pass 1. s: (n,) float scores; positive: (n,) bool, or int indices of the positives in s."""
        self._pos.append(s[positive])
        self.n += s.size

    def levels(self) -> np.ndarray:
        """End of pass 1: the (U,) ascending distinct positive scores (at least one positive)."""
        pos = np.concatenate(self._pos) if len(self._pos) != 1 else self._pos[0]  # (P,) in data order
        self._pos = [pos]
        self._order = np.argsort(pos, kind="stable")  # (P,)
        self.u, self._start, self._pos_eq = np.unique(pos[self._order], return_index=True,
                                                      return_counts=True)  # (U,) ascending
        self._lt = np.zeros(self.u.size, np.int64)
        self._le = np.zeros(self.u.size, np.int64)
        return self.u

    def count(self, s: np.ndarray) -> None:
        """Pass 2. s: (n,) float scores of the next chunk."""
        u = self.u
        if u.size <= s.size:  # sort the chunk, find each level in it: O(n log n + U log n)
            s_sorted = np.sort(s)
            self._lt += np.searchsorted(s_sorted, u, side="left")
            self._le += np.searchsorted(s_sorted, u, side="right")
        else:  # a small chunk: find each score among the levels, O(n log U + U)
            # s < u_k iff #{levels <= s} <= k; s <= u_k iff #{levels < s} <= k
            self._lt += np.cumsum(np.bincount(np.searchsorted(u, s, side="right"), minlength=u.size + 1)[:-1])
            self._le += np.cumsum(np.bincount(np.searchsorted(u, s, side="left"), minlength=u.size + 1)[:-1])
        self._n_counted += s.size

    def thresholds(self) -> _Thresholds:
        """End of pass 2."""
        if self._n_counted != self.n:
            raise ValueError(f"`chunks` must yield the same scores on every call: the first pass saw "
                             f"{self.n} scores, the second {self._n_counted}")
        n, pos_eq = self.n, self._pos_eq
        n_pos = int(self._order.size)
        pos_lt = np.cumsum(pos_eq) - pos_eq  # (U,) positives below u
        rev = slice(None, None, -1)  # highest threshold first
        return _Thresholds(pos_eq=pos_eq[rev].astype(np.int64), pos_ge=(n_pos - pos_lt)[rev].astype(np.int64),
                           all_ge=(n - self._lt)[rev].astype(np.int64), all_gt=(n - self._le)[rev].astype(np.int64),
                           pos_idx_start=self._start[rev].astype(np.int64), order=self._order,
                           n_pos=n_pos, n_neg=int(n - n_pos))


def _thresholds(s: np.ndarray, lab: np.ndarray) -> _Thresholds:
    """One array: s: (n,) float scores (no NaN), lab: (n,) bool with at least one positive."""
    tc = _ThresholdCounts()
    tc.add_positives(s, lab)
    tc.levels()
    tc.count(s)
    return tc.thresholds()


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


def _pro_curve(t: _Thresholds, pos_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The exact PRO curve (fpr, pro), each (2U+2,), from the thresholds and each positive pixel's
    PRO weight (in the positives' order).

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
    return fpr, pro


def _aupro_from(t: _Thresholds, pos_weights: np.ndarray, fpr_limit: float) -> float:
    """AUPRO: the exact PRO curve (:func:`_pro_curve`) integrated to ``fpr_limit``."""
    return _integrate_to(*_pro_curve(t, pos_weights), fpr_limit)


def _thin(x: np.ndarray, y: np.ndarray, n: int) -> dict:
    """At most ``n`` points of a curve (first and last kept), as lists: for plots, not for metrics."""
    idx = np.unique(np.linspace(0, x.size - 1, min(n, x.size)).round().astype(np.int64))
    return {"x": x[idx].tolist(), "y": y[idx].tolist()}


def _roc_points(t: _Thresholds) -> tuple[np.ndarray, np.ndarray]:
    """The exact ROC polyline (fpr, tpr): (0, 0), then at each distinct anomalous score u, highest
    first, (FPR(> u), TPR(> u)) and (FPR(>= u), TPR(>= u)), then (1, 1); its area is the AUROC."""
    fpr = np.concatenate([[0.0], np.column_stack([t.neg_gt, t.neg_ge]).ravel() / t.n_neg, [1.0]])
    tpr = np.concatenate([[0.0], np.column_stack([t.pos_ge - t.pos_eq, t.pos_ge]).ravel() / t.n_pos, [1.0]])
    return fpr, tpr


def _curves_from(t: _Thresholds, pos_weights: np.ndarray, n_points: int) -> dict:
    """ROC (x = FPR, y = TPR), PR (x = recall, y = precision) and PRO (x = FPR, y = PRO) curves at
    every distinct anomalous score, thinned to ``n_points`` each."""
    fpr, tpr = _roc_points(t)
    recall, precision = t.pos_ge / t.n_pos, t.pos_ge / t.all_ge
    return {"roc": _thin(fpr, tpr, n_points), "pr": _thin(recall, precision, n_points),
            "pro": _thin(*_pro_curve(t, pos_weights), n_points)}


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
def _region_weights(region_ids: np.ndarray, n_regions: int) -> np.ndarray:
    """PRO weight ``1 / (|region| * n_regions)`` of every anomalous pixel.

    Parameters
    ----------
    region_ids : (P,) int64, the 8-connected region (1..n_regions) of every anomalous pixel
    n_regions : int, number of regions over all images

    Returns
    -------
    (P,) float64, summing to 1
    """
    sizes = np.bincount(region_ids, minlength=n_regions + 1)  # (n_regions + 1,)
    per_region = np.zeros(n_regions + 1)
    per_region[1:] = 1.0 / (sizes[1:].astype(np.float64) * n_regions)
    return per_region[region_ids]


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


def _check_fpr_limit(fpr_limit) -> float:
    if isinstance(fpr_limit, bool) or not (isinstance(fpr_limit, numbers.Real) and 0.0 < fpr_limit <= 1.0):
        raise ValueError(f"`fpr_limit` must be a float in (0, 1], got {fpr_limit!r}")
    return float(fpr_limit)


def _check_chunks(chunks) -> None:
    if not callable(chunks):
        raise ValueError("`chunks` must be a callable returning a fresh iterable of chunks, "
                         f"got {type(chunks).__name__}")


def _pairs(chunks, what: str, prefix):
    """Iterate ``chunks()``, checking that every item is a pair; yields (i, first, second)."""
    for i, item in enumerate(chunks()):
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise ValueError(f"{prefix(i)}must be a {what} pair, got {type(item).__name__}")
        yield i, item[0], item[1]


def _pixel_metrics(chunks, fpr_limit, *, names: tuple[str, str], prefix, curves: int = 0) -> dict:
    """Pixel AUROC, AUPR and AUPRO of the score maps of ``chunks()``, in two passes.

    ``names`` are the names of the score maps and masks in error messages, ``prefix(i)`` the
    words before an error of chunk i (empty for a single array).
    """
    fpr_limit = _check_fpr_limit(fpr_limit)
    _check_chunks(chunks)
    s_name, m_name = names
    tc = _ThresholdCounts()
    region_ids = []  # (P_i,) int64 region of each anomalous pixel, chunk by chunk
    n_regions = n_images = 0
    # Pass 1: the anomalous pixels' scores and regions; regions never cross images, so labelling
    # each chunk's images and numbering on from the previous chunks gives one global labelling.
    for i, s, m in _pairs(chunks, f"(`{s_name}`, `{m_name}`)", prefix):
        s, m = _as_tensor(s, s_name), _as_tensor(m, m_name)
        if s.ndim != 3:
            raise ValueError(f"{prefix(i)}`{s_name}` must be (N, H, W), got shape {tuple(s.shape)}")
        if tuple(m.shape) != tuple(s.shape):
            raise ValueError(f"{prefix(i)}`{m_name}` must have the shape of `{s_name}` {tuple(s.shape)}, "
                             f"got {tuple(m.shape)}")
        if s.numel() == 0:
            continue
        try:
            lab = _labels_1d(m, m.numel(), torch.device("cpu"), m_name, s_name).numpy()  # (n*H*W,) bool
            s_np = _np_scores(_scores_1d(s, s_name))  # (n*H*W,)
        except ValueError as e:
            raise ValueError(f"{prefix(i)}{e}") from None
        tc.add_positives(s_np, lab)
        n_images += s.shape[0]
        if lab.any():
            regions, k = ndimage.label(lab.reshape(s.shape), structure=_REGION_STRUCTURE)  # (n, H, W)
            region_ids.append(regions.reshape(-1)[lab].astype(np.int64) + n_regions)
            n_regions += k
    n_pos = sum(r.size for r in region_ids)
    if n_images == 0:
        raise ValueError(f"`{s_name}` must contain at least one image, got none")
    if n_pos == 0:
        raise ValueError(f"`{m_name}` contains no anomalous region: the PRO is undefined")
    if n_pos == tc.n:
        raise ValueError(f"`{m_name}` contains no anomaly-free pixel: the FPR is undefined")
    # Pass 2: the number of all scores below / at most each distinct anomalous score.
    tc.levels()
    for _, s, _ in _pairs(chunks, f"(`{s_name}`, `{m_name}`)", prefix):
        s = _as_tensor(s, s_name)
        if s.numel():
            tc.count(_np_scores(_scores_1d(s, s_name)))
    t = tc.thresholds()
    weights = _region_weights(np.concatenate(region_ids), n_regions)  # (P,) in data order
    out = {"pixel_auroc": _auroc_from(t), "pixel_aupr": _ap_from(t), "aupro": _aupro_from(t, weights, fpr_limit)}
    if curves:
        out["curves"] = _curves_from(t, weights, curves)
    return out


def aupro(score_maps: ArrayLike, masks: ArrayLike, *, fpr_limit: float = 0.3) -> float:
    """Normalised area under the per-region-overlap curve up to a false positive rate.

    Ground-truth regions are the 8-connected components of each image's mask. The FPR counts all
    anomaly-free pixels of all N images; PRO(t) is the mean over all regions of the fraction of the
    region's pixels scoring >= t. The exact curve (every distinct score a threshold, from (0, 0);
    between two scores of anomalous pixels it is straight, so it is built at those, see
    ``_aupro_from``) comes from one sort and is integrated with the trapezoid rule from 0 to
    ``fpr_limit`` (the curve is linearly interpolated at ``fpr_limit``) and divided by
    ``fpr_limit``: a perfect detector gets 1.0, one that ranks every normal pixel above every
    anomalous one gets 0. Equal to ``pixel_metrics(score_maps, masks)["aupro"]``.

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
    return pixel_metrics(score_maps, masks, fpr_limit=fpr_limit)["aupro"]


def pixel_metrics(score_maps: ArrayLike, masks: ArrayLike, *, fpr_limit: float = 0.3) -> dict:
    """Pixel AUROC, pixel AUPR (average precision) and AUPRO from one shared sort.

    The same computation as :func:`pixel_metrics_streamed` with the whole split as one chunk.

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

    Raises
    ------
    ValueError
        On shape mismatch, NaN scores, an ``fpr_limit`` outside (0, 1], no region, or no normal pixel.
    """
    return _pixel_metrics(lambda: ((score_maps, masks),), fpr_limit, names=("score_maps", "masks"),
                          prefix=lambda i: "")


def pixel_metrics_streamed(chunks: Callable[[], Iterable[tuple[ArrayLike, ArrayLike]]], *,
                           fpr_limit: float = 0.3, curves: int = 0) -> dict:
    """:func:`pixel_metrics` over image chunks, never holding more than one chunk's maps.

    Equal, to the last bit, to :func:`pixel_metrics` on the concatenation of the chunks (any
    chunking, chunks of different sizes, float32 or float64). Two passes over ``chunks()``: the
    first keeps the scores of the anomalous pixels and their 8-connected regions (labelled chunk
    by chunk: regions never cross images) and counts the others; the second counts, for each
    distinct anomalous score u, all scores below u and at most u (integer sums, independent of
    the chunking). Memory: O(anomalous pixels) plus one chunk.

    Parameters
    ----------
    chunks : callable, ``chunks() -> iterable of (scores, masks)``
        Called twice; each call must yield the same chunks in the same order. ``scores``: (n, H, W)
        float array or tensor, already upsampled to the masks' resolution (on any device; it is
        copied to the CPU); ``masks``: (n, H, W) bool or 0/1. Chunks may hold any number of images,
        including none.
    fpr_limit : float, keyword-only, in (0, 1], default 0.3, passed to the AUPRO
    curves : int, keyword-only, default 0
        When positive, also return the ROC, PR and PRO curves thinned to at most this many points
        each (for plots; the metrics come from the exact curves).

    Returns
    -------
    dict
        ``{"pixel_auroc": float, "pixel_aupr": float, "aupro": float}``, as :func:`pixel_metrics`,
        plus ``"curves": {"roc" | "pr" | "pro": {"x": [...], "y": [...]}}`` when asked.

    Raises
    ------
    ValueError
        If ``chunks`` is not callable or yields something other than pairs, on a shape mismatch,
        NaN scores, non-binary masks, an ``fpr_limit`` outside (0, 1], no anomalous or no normal
        pixel, or when the second call yields other scores than the first.
    """
    return _pixel_metrics(chunks, fpr_limit, names=("scores", "masks"), prefix=lambda i: f"chunk {i} of `chunks`: ",
                          curves=int(curves))


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
