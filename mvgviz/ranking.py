"""Ranking of whitened components by their single-component pixel AUROC.

:func:`component_aurocs` ranks every whitened component ``y2_c = y_c**2`` by the pixel AUROC of its
upsampled map, with histograms and a guaranteed error bound (exact recomputation where the bound
exceeds ``tol``, and for the contenders for the best component). It works on the input's device
(CUDA when given CUDA tensors); on the CPU a numba kernel (:mod:`mvgviz._histkernel`) does the
upsampling and binning. The exact metrics and :func:`~mvgviz.metrics.upsample` are in
:mod:`mvgviz.metrics`.
"""

from __future__ import annotations

import math
import numbers
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from .metrics import (_as_tensor, _auroc_from, _check_both_classes, _check_out_size, _check_positive_int,
                      _labels_1d, _np_scores, _thresholds, upsample)

__all__ = ["ComponentAUROC", "component_aurocs"]

# component_aurocs binning (see _bin_params): values below the _FLOOR_QUANTILE quantile of a
# component's feature-resolution values share the lowest bin, and the binned range never spans more
# than _MAX_OCTAVES octaves below the component's maximum.
_FLOOR_QUANTILE = 1e-3
_FLOOR_SAMPLE = 1 << 16
_MAX_OCTAVES = 32
# Default chunk size of component_aurocs, in upsampled values per step: a few MB of working memory on
# the CPU (the chunk stays in cache), a few hundred MB on a GPU.
_TARGET_CHUNK = {"cpu": 1 << 21, "cuda": 1 << 25}
# Histogram entries per step (components in a chunk * n_bins): cache-sized on the CPU, 64 MB per
# histogram on a GPU.
_TARGET_HIST = {"cpu": 1 << 18, "cuda": 1 << 23}
_MAX_BINS = 1 << 24
_MAX_HIST = (1 << 31) - 1  # bin indices of a chunk are int32
# The numba CPU kernels (mvgviz._histkernel), loaded on first use; False when numba is missing.
_KERNEL = None
# float dtype -> (int dtype of the same width, mantissa bits, NumPy int dtype)
_BITS = {torch.float32: (torch.int32, 23, np.int32), torch.float64: (torch.int64, 52, np.int64)}

@contextmanager
def _single_threaded_torch():
    """torch intra-op threads = 1 for the duration (the caller parallelises over threads)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@dataclass(frozen=True)
class ComponentAUROC:
    """Pixel AUROC of every whitened component of one layer.

    Attributes
    ----------
    auroc : (C,) float64, read-only
        AUROC of the upsampled ``y2_c`` map of each component against the pixel masks.
    error_bound : (C,) float64, read-only
        Guaranteed ``|auroc - exact AUROC|`` bound; 0 where the component was computed exactly.
    n_exact : int
        How many components were recomputed exactly (bound above ``tol``, or a contender for
        the best component).
    """

    auroc: np.ndarray
    error_bound: np.ndarray
    n_exact: int

    def __post_init__(self) -> None:
        for name in ("auroc", "error_bound"):
            a = np.array(getattr(self, name), dtype=np.float64)  # own copy, then frozen
            a.setflags(write=False)
            object.__setattr__(self, name, a)
        object.__setattr__(self, "n_exact", int(self.n_exact))


def _bin_params(y2: torch.Tensor, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-component bit shift and lowest bin index of the log-like histogram binning.

    A non-negative float's bit pattern, read as an integer, increases with the value; dropping its
    ``shift`` lowest bits groups 2**shift consecutive floats, i.e. bins of constant relative width
    (at most 2**(shift - mantissa bits)) -- log-spaced bins at the cost of one integer shift. For
    component c the binned range is [floor_c, max_c] where max_c is the largest feature-resolution
    value (no upsampled value exceeds it, up to rounding) and floor_c its ``_FLOOR_QUANTILE``
    quantile, estimated from a strided sample of at most ``_FLOOR_SAMPLE`` values (but at most
    ``_MAX_OCTAVES`` octaves below max_c); the smallest shift that fits that
    range in ``n_bins`` bins is used. Values outside the range are clamped into the end bins, which
    keeps the binning monotone, so the error bound stays valid whatever the data.

    Parameters
    ----------
    y2 : (N, K, h, w) float tensor, squared whitened features at feature resolution
    n_bins : int

    Returns
    -------
    shift, lo, hi : (K,) int64 NumPy arrays; bin = clamp(bits >> shift, lo, hi) - lo, hi - lo < n_bins
    """
    k = y2.shape[1]
    flat = y2.transpose(0, 1).reshape(k, -1)  # (K, N*h*w)
    vmax = flat.amax(1)  # (K,)
    # The floor only places the bins (any floor keeps the bound valid): a strided sample of at most
    # _FLOOR_SAMPLE values per component estimates the quantile well enough, deterministically.
    sample = flat[:, ::max(1, flat.shape[1] // _FLOOR_SAMPLE)]
    q = sample.kthvalue(max(1, math.ceil(_FLOOR_QUANTILE * sample.shape[1])), dim=1).values  # (K,)
    vmax_np, q_np = vmax.cpu().numpy(), q.cpu().numpy()
    floor = np.maximum(q_np, vmax_np * np.asarray(2.0 ** -_MAX_OCTAVES, dtype=vmax_np.dtype))
    np_int = _BITS[y2.dtype][2]
    b_max = vmax_np.view(np_int).astype(np.int64)[None]  # (1, K)
    b_min = np.minimum(floor, vmax_np).view(np_int).astype(np.int64)[None]
    shifts = np.arange(8 * y2.element_size())[:, None]  # (S, 1); the largest keeps only the sign bit
    fits = (b_max >> shifts) - (b_min >> shifts) <= n_bins - 1  # (S, K)
    shift = fits.argmax(0)  # (K,) smallest shift that fits
    lo = b_min[0] >> shift
    return shift, lo, np.minimum(lo + (n_bins - 1), np.iinfo(np_int).max)


def _component_histograms(y: torch.Tensor, c0: int, c1: int, n_bins: int, out_size: tuple[int, int],
                          batches: list[tuple[int, int, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """All-pixel and positive-pixel histograms of components c0..c1-1.

    Returns
    -------
    hist_all, hist_pos : (K, n_bins) int64 tensors on y's device, K = c1 - c0
    """
    k, dev = c1 - c0, y.device
    int_dtype = _BITS[y.dtype][0]
    shift_t, lo_t, hi_t = (torch.as_tensor(p, dtype=int_dtype, device=dev).view(k, 1)
                           for p in _bin_params(y[:, c0:c1].square(), n_bins))  # (K, 1) each
    off_t = torch.arange(k, dtype=int_dtype, device=dev).view(k, 1) * n_bins - lo_t  # bin -> row c of (K, n_bins)
    hist_all = torch.zeros(k * n_bins, dtype=torch.int64, device=dev)
    hist_pos = torch.zeros(k * n_bins, dtype=torch.int64, device=dev)
    for i0, i1, pos_idx in batches:
        y2 = y[i0:i1, c0:c1].square().transpose(0, 1).contiguous()  # (K, n, h, w)
        s = upsample(y2, out_size).contiguous()  # (K, n, H, W), exactly F.interpolate(y[:, c:c+1]**2)
        bins = s.view(int_dtype).view(k, -1)  # (K, n*H*W) bit patterns, reused in place
        bins.bitwise_right_shift_(shift_t).clamp_(min=lo_t, max=hi_t).add_(off_t)  # flat (K, n_bins) index
        hist_all += torch.bincount(bins.view(-1), minlength=k * n_bins)
        if pos_idx.numel():
            hist_pos += torch.bincount(bins.index_select(1, pos_idx).view(-1), minlength=k * n_bins)
    return hist_all.view(k, n_bins), hist_pos.view(k, n_bins)


def _cpu_kernel():
    """The numba kernels of the CPU ranking (:mod:`mvgviz._histkernel`), or None without numba."""
    global _KERNEL
    if _KERNEL is None:
        try:
            from . import _histkernel
        except ImportError:  # numba is a requirement; without it the torch path still works
            _KERNEL = False
        except Exception as e:  # e.g. numba finds no writable cache directory (NUMBA_CACHE_DIR fixes it)
            warnings.warn(f"mvgviz: the numba ranking kernel is unavailable ({type(e).__name__}: {e}); "
                          "ranking with torch ops instead (same results, slower)", RuntimeWarning, stacklevel=2)
            _KERNEL = False
        else:
            _KERNEL = _histkernel
    return _KERNEL or None


def _kernel_matches_torch(kernel, y: torch.Tensor, y_np: np.ndarray, out_hw: tuple[int, int]) -> bool:
    """Whether the kernel's upsampling is bit-identical to :func:`upsample` for this geometry.

    The kernel reproduces torch's CPU arithmetic for the sizes the pipeline uses (e.g. 7, 14, 28,
    56 -> 224); torch rounds small outputs (e.g. 7 -> 56) through another code path. Which
    arithmetic runs depends on the sizes only, so the first images of the first and last
    components decide.
    """
    n = min(2, y.shape[0])
    for c in sorted({0, y.shape[1] - 1}):
        ref = upsample(y[:n, c:c + 1].square(), out_hw)[:, 0].numpy()
        if not np.array_equal(kernel.upsample_component(y_np[:n], c, *out_hw), ref):
            return False
    return True


def _kernel_ranking(kernel, y: torch.Tensor, y_np: np.ndarray, m_np: np.ndarray, n_bins: int,
                    chunk_components: int | None, estimate) -> None:
    """Histograms with the fused numba kernel (CPU, float32), chunks of components on a thread pool.

    The kernel is compiled ``nogil``: ``torch.get_num_threads()`` Python threads run it on separate
    chunks at once (each writes its own histograms and its own slice of the estimates).
    """
    n_comp = y.shape[1]
    shift, lo, hi = _bin_params(y.square(), n_bins)  # (C,) each
    rows_pos = m_np.any(axis=2)  # (N, H)
    threads = max(1, torch.get_num_threads())
    if chunk_components is None:  # ~1 MB of histograms per component; a few chunks per thread
        chunk_components = max(1, min(_TARGET_HIST["cpu"] // n_bins, -(-n_comp // (2 * threads))))

    def one_chunk(c0: int) -> None:
        c1 = min(n_comp, c0 + chunk_components)
        hist_all, hist_pos = kernel.component_histograms(y_np, c0, c1, shift, lo, hi, m_np, rows_pos, n_bins)
        estimate(c0, torch.from_numpy(hist_all), torch.from_numpy(hist_pos))

    starts = range(0, n_comp, chunk_components)
    if threads == 1 or len(starts) == 1:
        for c0 in starts:
            one_chunk(c0)
    else:
        with ThreadPoolExecutor(max_workers=min(threads, len(starts))) as pool:
            list(pool.map(one_chunk, starts))


def _torch_ranking(y: torch.Tensor, labels: torch.Tensor, out_hw: tuple[int, int], n_bins: int,
                   chunk_components: int | None, batch_images: int | None, estimate) -> None:
    """Histograms with torch ops on y's device (CUDA, float64, or CPU without numba)."""
    n_img, n_comp = y.shape[:2]
    dev = y.device
    # Step sizes: memory/speed only; the histograms are integer sums, identical for any split.
    hw = out_hw[0] * out_hw[1]
    kind = "cuda" if dev.type == "cuda" else "cpu"
    target = _TARGET_CHUNK[kind]
    if chunk_components is None:
        chunk_components = max(1, min(n_comp, _TARGET_HIST[kind] // n_bins, target // hw))
    chunk_components = min(chunk_components, _MAX_HIST // n_bins)  # int32 bin indices
    if batch_images is None:
        batch_images = max(1, min(n_img, target // (chunk_components * hw)))
    batches = []  # (i0, i1, flat indices of the positive pixels of images i0..i1-1)
    for i0 in range(0, n_img, batch_images):
        i1 = min(n_img, i0 + batch_images)
        batches.append((i0, i1, torch.nonzero(labels[i0:i1].reshape(-1)).squeeze(1)))

    def one_chunk(c0: int) -> None:
        c1 = min(n_comp, c0 + chunk_components)
        estimate(c0, *_component_histograms(y, c0, c1, n_bins, out_hw, batches))

    starts = range(0, n_comp, chunk_components)
    workers = 1 if dev.type == "cuda" else min(len(starts), max(1, torch.get_num_threads()))
    if workers == 1:
        for c0 in starts:
            one_chunk(c0)
    else:
        # On the CPU, torch.bincount runs on one thread: chunks go to a pool of threads (torch
        # releases the GIL) that each run single-threaded ops, which keeps every core busy.
        # Speed only: every chunk writes its own slice of est/bound.
        with _single_threaded_torch(), ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one_chunk, starts))


def component_aurocs(y: torch.Tensor, masks: torch.Tensor, *, out_size, n_bins: int = 1 << 16,
                     tol: float = 1e-3, chunk_components: int | None = None,
                     batch_images: int | None = None) -> ComponentAUROC:
    """Pixel AUROC of every component's upsampled ``y2_c`` map, vectorised over components.

    For component c the score map is ``upsample(y[:, c:c+1]**2, out_size)`` and its AUROC is taken
    over all N*H*W pixels against ``masks``. Exact sorting of ~10M pixels for each of up to 1024
    components is too slow, so each component's upsampled values are counted into a histogram of
    positives and negatives and the AUROC is read from it, counting pairs that share a bin as one
    half. The error of that estimate is at most ``0.5 * sum_b pos_b * neg_b / (P * N)``, computed
    exactly per component and returned. Every component whose bound exceeds ``tol`` is recomputed
    exactly (bound 0). When several components' intervals ``[auroc - bound, auroc + bound]`` reach
    the best lower bound, each of them is recomputed exactly too: the best component of the ranking
    never depends on the binning (a lone contender is the best whatever its exact value, and keeps
    its bound).

    Where it runs: for float32 on the CPU, a numba kernel (:mod:`mvgviz._histkernel`) upsamples one
    image of one component at a time and bins it while it is in cache, chunks of components on
    ``torch.get_num_threads()`` threads. It is used only after its values were checked to be
    bit-identical to :func:`upsample`'s for these sizes, so both paths rank the same numbers.
    Otherwise (CUDA, float64, numba missing, or a size where torch rounds differently) the maps
    are upsampled with :func:`upsample` in chunks and counted with ``torch.bincount`` on ``y``'s
    device.

    Bins are log-spaced: per component, bin = a right shift of the float's bit pattern (see
    ``_bin_params``), clamped to the ``n_bins`` bins that cover [floor_c, max_c], with max_c the
    largest feature-resolution value and floor_c its 0.1% quantile; bilinear upsampling is a convex
    combination so no upsampled value leaves [min, max]. A bin spans a constant relative width
    of at most 2**(shift - 23) for float32: with the default ``n_bins`` and the at most 32 octaves
    binned, at least 1024 bins per octave (relative width <= 0.1%). On Magnetic-Tile and the demo
    data every bound stayed below 1e-4, so the exact fallback (~0.4 s per component at 8M pixels)
    is rare.

    Parameters
    ----------
    y : (N, C, h, w) float32 or float64 tensor
        Whitened test features at feature resolution; all work happens on ``y.device``.
    masks : (N, H, W) bool tensor (or 0/1), ground truth at the input resolution
    out_size : (H, W) pair of ints, keyword-only, must equal ``masks.shape[1:]``
    n_bins : int, keyword-only, default 65536, in [2, 2**24]
        Histogram bins per component; more bins give smaller error bounds and a larger histogram.
    tol : float, keyword-only, default 1e-3
        Components whose error bound exceeds it are recomputed exactly.
    chunk_components, batch_images : int or None, keyword-only
        Components and images handled per step. They only change memory use and speed, never the
        result. None picks sizes that keep a step at ~2M upsampled values on the CPU (~32M on a GPU).
        The numba kernel always takes whole images (``batch_images`` does not apply to it).

    Returns
    -------
    ComponentAUROC
        ``auroc`` (C,), ``error_bound`` (C,) and ``n_exact``.

    Raises
    ------
    ValueError
        On bad shapes or options, non-finite ``y``, or masks with a single class.
    """
    if not isinstance(y, torch.Tensor):
        y = _as_tensor(y, "y")
    if y.ndim != 4 or y.dtype not in _BITS:
        raise ValueError(f"`y` must be a (N, C, h, w) float32 or float64 tensor, got shape "
                         f"{tuple(y.shape)}, dtype {y.dtype}")
    y = y.detach()
    n_img, n_comp = y.shape[:2]
    out_hw = _check_out_size(out_size)
    m = _as_tensor(masks, "masks")
    if tuple(m.shape) != (n_img, *out_hw):
        raise ValueError(f"`masks` must be (N, H, W) = {(n_img, *out_hw)} to match `y` and `out_size`, "
                         f"got {tuple(m.shape)}")
    n_bins = _check_positive_int(n_bins, "n_bins", minimum=2)
    if n_bins > _MAX_BINS:
        raise ValueError(f"`n_bins` must be an int in [2, {_MAX_BINS}], got {n_bins!r}")
    if not (isinstance(tol, numbers.Real) and 0.0 <= tol < math.inf):
        raise ValueError(f"`tol` must be a finite float >= 0, got {tol!r}")
    chunk_components = _check_positive_int(chunk_components, "chunk_components", allow_none=True)
    batch_images = _check_positive_int(batch_images, "batch_images", allow_none=True)
    if n_comp == 0 or n_img == 0:
        raise ValueError(f"`y` must have at least one image and one component, got shape {tuple(y.shape)}")
    if not torch.isfinite(y).all():
        raise ValueError("`y` contains NaN or infinite values")
    dev = y.device
    labels = _labels_1d(m, m.numel(), dev, "masks", "masks").view(n_img, -1)  # (N, H*W) bool
    n_pos = int(labels.sum())
    n_neg = labels.numel() - n_pos
    _check_both_classes(n_pos, labels.numel(), "masks")

    est = np.empty(n_comp)
    bound = np.empty(n_comp)
    denom = 2.0 * n_pos * n_neg

    def estimate(c0: int, hist_all: torch.Tensor, pos: torch.Tensor) -> None:
        """AUROC estimate and its error bound from (K, n_bins) histograms of components c0.."""
        neg = hist_all - pos
        pos_above = n_pos - torch.cumsum(pos, 1)  # (K, n_bins) positives in higher bins
        twice_won = (neg * (2 * pos_above + pos)).sum(1)  # (K,) exact int64
        same_bin = (pos * neg).sum(1)  # (K,) pairs whose order the histogram cannot see
        est[c0:c0 + pos.shape[0]] = twice_won.cpu().numpy() / denom
        bound[c0:c0 + pos.shape[0]] = same_bin.cpu().numpy() / denom

    kernel = _cpu_kernel() if dev.type == "cpu" and y.dtype == torch.float32 else None
    y_np = np.ascontiguousarray(y.numpy()) if kernel is not None else None
    if kernel is not None and _kernel_matches_torch(kernel, y, y_np, out_hw):
        m_np = np.ascontiguousarray(labels.view(n_img, *out_hw).numpy())
        exact_values = lambda c: kernel.upsample_component(y_np, c, *out_hw).reshape(-1)  # noqa: E731
        _kernel_ranking(kernel, y, y_np, m_np, n_bins, chunk_components, estimate)
    else:
        exact_values = lambda c: _np_scores(upsample(y[:, c:c + 1].square(), out_hw).reshape(-1))  # noqa: E731
        _torch_ranking(y, labels, out_hw, n_bins, chunk_components, batch_images, estimate)

    # Exact where the bound exceeds tol, and for every contender for the best component (its
    # interval overlaps the best lower bound) when there are several, so the top of the ranking
    # never depends on binning. A lone contender is the best whatever its exact value.
    contenders = est + bound >= np.max(est - bound)
    exact = np.flatnonzero((bound > tol) | (contenders & (bound > 0) & (contenders.sum() > 1)))
    lab_np = labels.reshape(-1).cpu().numpy() if exact.size else None
    for c in exact.tolist():
        est[c] = _auroc_from(_thresholds(exact_values(c), lab_np))
        bound[c] = 0.0
    return ComponentAUROC(auroc=est, error_bound=bound, n_exact=exact.size)
