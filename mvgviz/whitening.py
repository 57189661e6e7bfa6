"""Whitened features Y, squared components y2 = Y**2, M2 maps and colour-scale statistics.

``Y = whiten(X - mu)`` with SciPy's ``Covariance.from_eigendecomposition((w, V)).whiten``,
i.e. ``(X - mu) @ V diag(w^-1/2)`` (PCA whitening). The matrix is taken from SciPy once
(:meth:`mvgviz.gaussian.Gaussian.whitener`) and applied to large batches with torch, in
float64, on the features' device. Component c is the projection on the eigenvector of
the c-th smallest eigenvalue (0-based), the paper's indexing.

``M2[h, w] = sum_c Y[c, h, w]**2`` is the squared Mahalanobis distance of the pixel's
feature vector. Batched Gaussians (one per position, PaDiM) whiten channels-last rows with
:meth:`Whitener.whiten_rows`.

Colour-scale statistics (:class:`ScaleStats`) stream over image chunks
(:func:`scale_stats_streamed`, exact radix selection of the percentiles, no split in memory);
:func:`percentile_streamed` is the same selection for any one stream of values (a subset model's M2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used: reading stats needs no torch
    import torch

    from .gaussian import Gaussian

PERCENTILE = 99.0


class Whitener:
    """Applies the whitening of one Gaussian, or of a batch of them, on a torch device.

    The matrix ``W`` (*B, C, C) is :meth:`mvgviz.gaussian.Gaussian.whitener`, taken once, in float64.
    """

    def __init__(self, gaussian: "Gaussian", device: "torch.device | str" = "cpu"):
        import torch
        self.device = torch.device(device)
        self.batch_shape = tuple(gaussian.batch_shape)
        self.mean = torch.as_tensor(gaussian.mean, dtype=torch.float64, device=self.device)  # (*B, C)
        self.matrix = torch.as_tensor(gaussian.whitener(), dtype=torch.float64, device=self.device)  # (*B, C, C)

    def __call__(self, feats: "torch.Tensor") -> "torch.Tensor":
        """feats (N, C, H, W) -> Y (N, C, H, W) float32 on the whitener's device (one Gaussian)."""
        import torch
        with torch.no_grad():
            return self._apply(feats)

    def with_m2(self, feats: "torch.Tensor") -> "tuple[torch.Tensor, torch.Tensor]":
        """feats (N, C, H, W) -> (Y (N, C, H, W), M2 (N, H, W)), both float32, M2 summed in float64.

        One Gaussian for all positions (the layer's pooled Gaussian).
        """
        import torch
        with torch.no_grad():
            return self._apply(feats, with_m2=True)

    def whiten_rows(self, x, *, with_m2: bool = False):
        """Channels-last samples x (..., M, C) -> Y (..., M, C) float64 on the whitener's device.

        ``Y = (x - mean) @ W`` per Gaussian: the whitener's batch shape ``*B`` broadcasts against
        x's leading dimensions, so (P, M, C) samples meet (P,) Gaussians one to one. With
        ``with_m2``, also returns M2 (..., M) = sum_c Y**2, float64.
        """
        import torch
        x = torch.as_tensor(x)
        if x.ndim < 2 or x.shape[-1] != self.mean.shape[-1]:
            raise ValueError(f"x must be (..., M, C) with C={self.mean.shape[-1]} channels last, "
                             f"got shape {tuple(x.shape)}")
        with torch.no_grad():
            y = (x.to(self.device, torch.float64) - self.mean.unsqueeze(-2)) @ self.matrix
            return (y, y.square().sum(-1)) if with_m2 else y

    def _apply(self, feats, with_m2: bool = False):
        import torch
        if self.batch_shape:
            raise ValueError(f"feature maps need one Gaussian, this whitener has batch shape {self.batch_shape}:"
                             " use whiten_rows")
        n, c, h, w = feats.shape
        x = feats.to(self.device, torch.float64).permute(0, 2, 3, 1).reshape(-1, c)  # (N*H*W, C)
        y = (x - self.mean) @ self.matrix  # (N*H*W, C)
        y32 = y.reshape(n, h, w, c).permute(0, 3, 1, 2).float().contiguous()  # (N, C, H, W)
        if not with_m2:
            return y32
        return y32, y.square().sum(1).reshape(n, h, w).float()  # (N, H, W)


def m2_from_y(y):
    """Y (..., C, H, W) -> M2 (..., H, W) = sum_c Y**2 (accumulated in float64)."""
    if isinstance(y, np.ndarray):
        return np.square(y, dtype=np.float64).sum(axis=-3).astype(np.float32)
    return y.double().pow(2).sum(-3).float()


@dataclass(frozen=True)
class ScaleStats:
    """Colour-scale statistics of one split (METHOD.md, Visualisation), at feature resolution.

    per_component_p99: (C,) 99th percentile of y2_c over the split;
    cross_component_p99: 99th percentile of all y2 values of the layer over the split;
    m2_p99: 99th percentile of all M2 values of the split;
    y_min, y_max: (C,) range of Y per component; y2_mean: (C,) mean of y2_c (1 on train
    by construction, for components with a non-zero eigenvalue).
    """

    per_component_p99: np.ndarray
    cross_component_p99: float
    m2_p99: float
    y_min: np.ndarray
    y_max: np.ndarray
    y2_mean: np.ndarray

    def to_dict(self) -> dict:
        return {"per_component_p99": self.per_component_p99.tolist(),
                "cross_component_p99": self.cross_component_p99, "m2_p99": self.m2_p99,
                "y_min": self.y_min.tolist(), "y_max": self.y_max.tolist(),
                "y2_mean": self.y2_mean.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "ScaleStats":
        return cls(per_component_p99=np.asarray(d["per_component_p99"]),
                   cross_component_p99=float(d["cross_component_p99"]), m2_p99=float(d["m2_p99"]),
                   y_min=np.asarray(d["y_min"]), y_max=np.asarray(d["y_max"]),
                   y2_mean=np.asarray(d["y2_mean"]))


def scale_stats(y: np.ndarray, m2: np.ndarray) -> ScaleStats:
    """Statistics of a split held in memory: Y (N, C, H, W) and M2 (N, H, W), float32 or float64.

    :func:`scale_stats_streamed` over views of about 2M values (the result does not depend on the
    chunking); equal to NumPy on the whole split (``np.percentile``, linear interpolation;
    ``y2 = y**2`` in y's dtype).
    """
    y, m2 = np.asarray(y), np.asarray(m2)
    step = max(1, (1 << 21) // max(1, y[:1].size))
    return scale_stats_streamed(lambda: ((y[i:i + step], m2[i:i + step]) for i in range(0, max(len(y), 1), step)))


def scale_stats_streamed(chunks: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]], *,
                         q: float = PERCENTILE) -> ScaleStats:
    """Exact colour-scale statistics of a split streamed chunk by chunk (e.g. from memory maps).

    Parameters
    ----------
    chunks
        Zero-argument callable returning a fresh iterable of ``(y (n, C, h, w), m2 (n, h, w))``
        chunks, float32 or float64, finite; it is called one to three times (passes; up to 6 for float64).
    q
        The percentile (99).

    Returns
    -------
    ScaleStats
        Equal to NumPy on the concatenated split for any chunking: ``np.percentile`` (linear
        interpolation) of ``y2_c = y_c**2`` per component, of all ``y2`` and of ``m2``; ``y_min``,
        ``y_max``; ``y2_mean`` (float64 sums).

    Notes
    -----
    A percentile needs the two order statistics around the virtual index ``q/100 * (n-1)``. They
    are found by radix selection on integer keys that sort like the values (the bits of a
    non-negative float; a sign-folded version for M2). Pass 1 takes min/max/sums and, for every
    component, M2 and all y2 together, a histogram of the keys' top 12 bits (one ``np.bincount``
    over ``component * 4096 + bin``). Each further pass either collects the values in the bin that
    holds a target order statistic, if few enough (4M values in all at most), or histograms that
    bin's next 12 bits. A bin narrowed to one key, or a constant component, needs no pass.
    Usually two passes; at most 3 for float32 (6 for float64).
    Memory: one chunk, ``C * 4096`` counts and the collected values.
    """
    sel: dict[str, _RadixSelect] = {}
    n_y = 0
    c = None
    y_min = y_max = s2 = None
    for y, m2 in chunks():  # pass 1
        y, m2 = _check_chunk(y, m2, c, sel)
        if y.shape[0] == 0:
            continue
        if c is None:
            c = y.shape[1]
            y_min = np.full(c, np.inf)
            y_max = np.full(c, -np.inf)
            s2 = np.zeros(c)
            sel = {"comp": _RadixSelect(c, y.dtype, signed=False), "all": _RadixSelect(1, y.dtype, signed=False),
                   "m2": _RadixSelect(1, m2.dtype, signed=True)}
        y2 = np.square(y).reshape(y.shape[0], c, -1)  # (n, C, h*w), y's dtype as np.percentile(y**2)
        lo = y.min(axis=(0, 2, 3))
        hi = y.max(axis=(0, 2, 3))
        y_min = np.minimum(y_min, lo)
        y_max = np.maximum(y_max, hi)
        s2 += y2.sum(axis=(0, 2), dtype=np.float64)
        n_y += y2.shape[0] * y2.shape[2]
        keys = sel["comp"].keys(y2)
        hist = sel["comp"].first_histogram(keys)  # (C, 4096)
        sel["all"].hist += hist.sum(0, keepdims=True)
        # y2 = y**2 is monotone in |y|: key bounds per component from y's range
        big = np.maximum(np.square(lo), np.square(hi))
        small = np.where(lo > 0, np.square(lo), np.where(hi < 0, np.square(hi), 0))
        sel["comp"].bound(sel["comp"].keys(small.astype(y.dtype)), sel["comp"].keys(big.astype(y.dtype)))
        km = sel["m2"].keys(m2.reshape(1, 1, -1))
        sel["m2"].first_histogram(km)
        sel["m2"].bound(km.min(axis=(0, 2)), km.max(axis=(0, 2)))
    if c is None or n_y == 0:
        raise ValueError("scale statistics need at least one image: chunks() gave none")
    if not (np.isfinite(y_min).all() and np.isfinite(y_max).all()):
        raise ValueError("y contains NaN or inf")
    comp, every, msel = sel["comp"], sel["all"], sel["m2"]
    every.bound(comp.kmin.min(keepdims=True), comp.kmax.max(keepdims=True))
    n_m = int(msel.hist.sum())
    if not np.isfinite(msel.value(msel.kmin)).all() or not np.isfinite(msel.value(msel.kmax)).all():
        raise ValueError("m2 contains NaN or inf")
    comp.start(np.full(c, n_y), q)
    every.start(np.array([n_y * c]), q)
    msel.start(np.array([n_m]), q)
    while _plan([comp, every, msel], _COLLECT_BUDGET):
        for y, m2 in chunks():  # passes 2, ...
            y, m2 = _check_chunk(y, m2, c, sel)
            if y.shape[0] == 0:
                continue
            ky = comp.keys(np.square(y).reshape(y.shape[0], c, -1))
            comp.scan(ky)
            every.scan(ky.reshape(1, 1, -1))
            msel.scan(msel.keys(m2.reshape(1, 1, -1)))
        for s in (comp, every, msel):
            s.finish_pass()
    return ScaleStats(per_component_p99=comp.result(), cross_component_p99=float(every.result()[0]),
                      m2_p99=float(msel.result()[0]), y_min=y_min.astype(np.float64),
                      y_max=y_max.astype(np.float64), y2_mean=s2 / n_y)


def percentile_streamed(chunks: Callable[[], Iterable[np.ndarray]], *, q: float = PERCENTILE) -> float:
    """Exact percentile of all values of arrays streamed chunk by chunk (e.g. the M2 maps of a
    subset model, :meth:`mvgviz.results.LayerModel.m2_subset_p99`).

    Parameters
    ----------
    chunks
        Zero-argument callable returning a fresh iterable of arrays of any shape, all float32 or
        all float64, finite; called one to three times (passes; up to 6 for float64).
    q
        The percentile (99).

    Returns
    -------
    float
        ``np.percentile`` (linear interpolation) of the concatenated values, whatever the chunking:
        the radix selection of :func:`scale_stats_streamed` on one population.
    """
    sel: _RadixSelect | None = None
    n = 0
    for a in chunks():  # pass 1
        a = _check_values(a, sel)
        if a.size == 0:
            continue
        if sel is None:
            sel = _RadixSelect(1, a.dtype, signed=True)
        keys = sel.keys(a.reshape(1, 1, -1))
        sel.first_histogram(keys)
        sel.bound(keys.min(axis=(0, 2)), keys.max(axis=(0, 2)))
        n += a.size
    if sel is None:
        raise ValueError("a percentile needs at least one value: chunks() gave none")
    if not np.isfinite(sel.value(sel.kmin)).all() or not np.isfinite(sel.value(sel.kmax)).all():
        raise ValueError("the values contain NaN or inf")
    sel.start(np.array([n]), q)
    while _plan([sel], _COLLECT_BUDGET):
        for a in chunks():  # passes 2, ...
            a = _check_values(a, sel)
            if a.size:
                sel.scan(sel.keys(a.reshape(1, 1, -1)))
        sel.finish_pass()
    return float(sel.result()[0])


def _check_values(a, sel: "_RadixSelect | None") -> np.ndarray:
    a = np.asarray(a)
    if a.dtype not in (np.float32, np.float64):
        raise ValueError(f"values must be float32 or float64, got {a.dtype}")
    if sel is not None and a.dtype != sel.fdtype:
        raise ValueError(f"every chunk must have the dtype of the first ({sel.fdtype}), got {a.dtype}")
    return a


def _check_chunk(y, m2, c: int | None, sel: dict) -> tuple[np.ndarray, np.ndarray]:
    y, m2 = np.asarray(y), np.asarray(m2)
    if y.ndim != 4 or (c is not None and y.shape[1] != c):
        raise ValueError(f"y must be (n, C, h, w){'' if c is None else f' with C={c}'}, got shape {y.shape}")
    if m2.shape != (y.shape[0], *y.shape[2:]):
        raise ValueError(f"m2 must be (n, h, w) = {(y.shape[0], *y.shape[2:])} for y of shape {y.shape}, "
                         f"got {m2.shape}")
    for name, a in (("y", y), ("m2", m2)):
        if a.dtype not in (np.float32, np.float64):
            raise ValueError(f"{name} must be float32 or float64, got {a.dtype}")
    if sel and (y.dtype != sel["comp"].fdtype or m2.dtype != sel["m2"].fdtype):
        raise ValueError(f"every chunk must have the dtypes of the first (y {sel['comp'].fdtype}, "
                         f"m2 {sel['m2'].fdtype}), got y {y.dtype}, m2 {m2.dtype}")
    return y, m2


_DIGIT = 12  # key bits resolved per histogram pass
_COLLECT_BUDGET = 1 << 22  # values kept at most in one pass for exact selection (16 MiB of float32 keys)
_NBINS = 1 << _DIGIT


class _RadixSelect:
    """Exact order statistics of G populations of floats, streamed, by radix selection on keys.

    Keys are unsigned integers that sort like the values: a non-negative float's bits, or (``signed``)
    the bits with the sign folded. Each population has two target ranks (slot 0: ``floor`` of the
    virtual index, slot 1: the next). A target's state is a key range ``[lo, hi]`` that holds its
    rank, the number ``below`` of the population's keys under ``lo``, the count ``cnt`` in the range,
    and a mode for the next pass: ``"done"`` (``key`` known), ``"collect"`` (keep the keys in the
    range, select exactly) or ``"hist"`` (histogram the range in 4096 bins of ``2**shift`` keys).
    """

    def __init__(self, groups: int, dtype, *, signed: bool):
        self.g = groups
        self.fdtype = np.dtype(dtype)
        self.udtype = np.dtype(f"u{self.fdtype.itemsize}")
        self.bits = 8 * self.fdtype.itemsize
        self.signed = signed
        self.sign = self.udtype.type(1 << (self.bits - 1))
        self.hist = np.zeros((groups, _NBINS), np.int64)  # pass 1: top 12 bits
        self.kmin = np.full(groups, np.iinfo(self.udtype).max, self.udtype)
        self.kmax = np.zeros(groups, self.udtype)

    def keys(self, v: np.ndarray) -> np.ndarray:
        """Floats -> keys, same shape (a view for non-negative floats)."""
        bits = np.ascontiguousarray(v, dtype=self.fdtype).view(self.udtype)
        if not self.signed:
            return bits
        return np.where(bits & self.sign, ~bits, bits | self.sign)

    def value(self, k) -> np.ndarray:
        """Keys -> floats."""
        k = np.asarray(k, self.udtype)
        if self.signed:
            k = np.where(k & self.sign, k ^ self.sign, ~k)
        return np.ascontiguousarray(k).view(self.fdtype)

    # --- pass 1
    def first_histogram(self, keys: np.ndarray) -> np.ndarray:
        """keys (n, G, L): adds the histogram of the keys' top 12 bits per population; returns it."""
        top = keys >> self.udtype.type(self.bits - _DIGIT)  # < 4096
        if self.g > 1:
            top += (np.arange(self.g, dtype=self.udtype) * _NBINS)[None, :, None]
        h = np.bincount(top.reshape(-1).astype(np.intp, copy=False),
                        minlength=self.g * _NBINS).reshape(self.g, _NBINS)
        self.hist += h
        return h

    def bound(self, kmin, kmax) -> None:
        """The keys of each population lie in [kmin, kmax] (bounds, not necessarily attained)."""
        self.kmin = np.minimum(self.kmin, np.asarray(kmin, self.udtype))
        self.kmax = np.maximum(self.kmax, np.asarray(kmax, self.udtype))

    def start(self, counts, q: float) -> None:
        """counts (G,): targets as ``np.percentile(..., q)`` (method "linear") takes them; refine pass 1."""
        counts = np.asarray(counts, np.int64)
        virtual = (counts - 1) * (np.float64(q) / 100)
        prev = np.floor(virtual).astype(np.int64)
        above = virtual >= counts - 1
        self.gamma = virtual - prev
        prev = np.where(above, counts - 1, prev)
        self.rank = np.stack([prev, np.where(above, counts - 1, prev + 1)], axis=1)  # (G, 2)
        g = self.g
        self.lo = np.zeros((g, 2), object)  # python ints: exact for 64-bit keys
        self.hi = np.full((g, 2), (1 << self.bits) - 1, object)
        self.below = np.zeros((g, 2), np.int64)
        self.cnt = np.zeros((g, 2), np.int64)
        self.key = np.zeros((g, 2), object)
        self.mode = np.full((g, 2), "hist", object)
        self.shift = np.full((g, 2), self.bits - _DIGIT, np.int64)
        self._refine(np.repeat(self.hist[:, None], 2, axis=1))

    def _refine(self, hist: np.ndarray) -> None:
        """hist (G, 2, 4096): each target in mode "hist" narrows to the bin that holds its rank."""
        for p, j in zip(*np.nonzero(self.mode == "hist")):
            cum = np.cumsum(hist[p, j])
            b = int(np.searchsorted(cum, self.rank[p, j] - self.below[p, j], side="right"))
            s = int(self.shift[p, j])
            lo = self.lo[p, j] + (b << s)
            self.below[p, j] += int(cum[b - 1]) if b else 0
            self.cnt[p, j] = hist[p, j, b]
            self.lo[p, j] = max(lo, int(self.kmin[p]))
            self.hi[p, j] = min(lo + (1 << s) - 1, self.hi[p, j], int(self.kmax[p]))
            if self.lo[p, j] >= self.hi[p, j]:  # one key left: the answer, no values needed
                self.mode[p, j], self.key[p, j] = "done", self.lo[p, j]
            else:
                self.mode[p, j] = "pending"

    def pending(self) -> list[tuple["_RadixSelect", int, int, int]]:
        """(self, population, slot, count) of the targets the next pass must work on."""
        self._shared = np.array([self.mode[p, 0] == self.mode[p, 1] == "pending"
                                 and (self.lo[p, 0], self.hi[p, 0]) == (self.lo[p, 1], self.hi[p, 1])
                                 for p in range(self.g)], bool)  # slot 1 rides on slot 0
        return [(self, p, j, int(self.cnt[p, j])) for p, j in zip(*np.nonzero(self.mode == "pending"))
                if not (j == 1 and self._shared[p])]

    def assign(self, p: int, j: int, collect: bool) -> None:
        """The next pass collects target (p, j), or histograms its range."""
        modes = [j, 1] if j == 0 and self._shared[p] else [j]
        for jj in modes:
            self.mode[p, jj] = "collect" if collect else "hist"
            self.shift[p, jj] = max(0, (self.hi[p, jj] - self.lo[p, jj]).bit_length() - _DIGIT)

    def begin_pass(self) -> None:
        self._scan = []
        for j in range(2):
            active = np.isin(self.mode[:, j], ("collect", "hist"))
            if j == 1:
                active &= ~self._shared
            top = (1 << self.bits) - 1  # inactive: match only the largest key, a NaN's (finite inputs)
            lo = np.array([self.lo[p, j] if active[p] else top for p in range(self.g)], self.udtype)
            width = np.array([self.hi[p, j] - self.lo[p, j] if active[p] else 0 for p in range(self.g)], self.udtype)
            self._scan.append((active, lo, width, self.mode[:, j] == "collect", self.shift[:, j].astype(self.udtype)))
        self._hist = np.zeros((self.g, 2, _NBINS), np.int64)
        self._found: list[list[tuple[np.ndarray, np.ndarray]]] = [[], []]

    def scan(self, keys: np.ndarray) -> None:
        """keys (n, G, L) of one chunk: collect, or histogram, the keys in each active target's range."""
        n, g, l = keys.shape
        for j, (active, lo, width, collect_p, shift) in enumerate(self._scan):
            if not active.any():
                continue
            # lo <= key <= lo + width as one unsigned comparison (keys below lo wrap around)
            idx = np.flatnonzero((keys - lo[None, :, None]) <= width[None, :, None])
            if idx.size == 0:
                continue
            vals = keys.reshape(-1)[idx]
            pop = (idx // l) % g if g > 1 else np.zeros(idx.size, np.intp)
            keep = active[pop]
            pop, vals = pop[keep], vals[keep]
            c = collect_p[pop]
            if c.any():
                self._found[j].append((pop[c], vals[c]))
            if not c.all():
                pr, vr = pop[~c], vals[~c]
                sub = ((vr - lo[pr]) >> shift[pr]).astype(np.intp)
                self._hist[:, j] += np.bincount(pr * _NBINS + sub, minlength=g * _NBINS).reshape(g, _NBINS)

    def finish_pass(self) -> None:
        for j in range(2):
            if self._found[j]:
                pops = np.concatenate([p for p, _ in self._found[j]])
                vals = np.concatenate([v for _, v in self._found[j]])
                order = np.argsort(pops, kind="stable")
                pops, vals = pops[order], vals[order]
                bounds = np.searchsorted(pops, np.arange(self.g + 1))
                for p in np.unique(pops):
                    mine = vals[bounds[p]:bounds[p + 1]]
                    slots = [0, 1] if j == 0 and self._shared[p] else [j]
                    ks = sorted({int(self.rank[p, jj] - self.below[p, jj]) for jj in slots})
                    part = np.partition(mine, ks)
                    for jj in slots:
                        self.key[p, jj] = int(part[self.rank[p, jj] - self.below[p, jj]])
                        self.mode[p, jj] = "done"
        self._hist[:, 1][self._shared] = self._hist[:, 0][self._shared]
        self._refine(self._hist)
        del self._hist, self._found, self._scan

    def result(self) -> np.ndarray:
        """(G,) float64: the percentile per population, NumPy's linear interpolation in the values' dtype."""
        if (self.mode != "done").any():
            raise RuntimeError("radix selection unfinished")
        a = self.value(np.array([int(k) for k in self.key[:, 0]], self.udtype))
        b = self.value(np.array([int(k) for k in self.key[:, 1]], self.udtype))
        return np.array([float(_lerp(a[p], b[p], float(self.gamma[p]))) for p in range(self.g)])


def _lerp(a, b, t: float):
    """NumPy's ``_lerp`` for one pair (``np.percentile``'s interpolation, in the dtype of a and b)."""
    d = b - a
    return b - d * (1 - t) if t >= 0.5 else a + d * t


def _plan(selects: list[_RadixSelect], budget: int) -> bool:
    """Decide the next pass: collect the smallest pending targets while their total fits ``budget``,
    histogram the others. False when every target is resolved."""
    pending = sorted((t for s in selects for t in s.pending()), key=lambda t: t[3])
    total = 0
    for s, p, j, cnt in pending:
        total += cnt
        s.assign(p, j, collect=total <= budget)
    for s in selects:
        s.begin_pass()
    return bool(pending)
