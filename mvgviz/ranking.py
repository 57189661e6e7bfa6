"""Ranking of whitened components by their single-component pixel AUROC, streamed over images.

:func:`component_aurocs_streamed` ranks every whitened component ``y2_c = y_c**2`` by the pixel
AUROC of its upsampled map, reading the test images chunk by chunk (memory follows the chunk, not
the split): histograms with a guaranteed error bound, and an exact recomputation where the bound
exceeds ``tol`` and for the contenders for the best component. :func:`component_aurocs` is the
same with the whole split as one chunk. Work happens on the input's device (CUDA when given CUDA
tensors); on the CPU a numba kernel (:mod:`mvgviz._histkernel`) upsamples and bins. The exact
metrics and :func:`~mvgviz.metrics.upsample` are in :mod:`mvgviz.metrics`.
"""

from __future__ import annotations

import math
import numbers
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from .metrics import (ArrayLike, _as_tensor, _auroc_from, _check_both_classes, _check_chunks, _check_out_size,
                      _check_positive_int, _labels_1d, _np_scores, _pairs, _ThresholdCounts, upsample)

__all__ = ["ComponentAUROC", "component_aurocs", "component_aurocs_streamed"]

# Binning (see _bin_params): values below the _FLOOR_QUANTILE quantile of a component's
# feature-resolution values share the lowest bin, and the binned range never spans more than
# _MAX_OCTAVES octaves below the component's maximum. The quantile is read from a sample of between
# _FLOOR_SAMPLE and 2 * _FLOOR_SAMPLE values per component (all values when there are fewer).
_FLOOR_QUANTILE = 1e-3
_FLOOR_SAMPLE = 1 << 16
_MAX_OCTAVES = 32
# Default step of the torch path, in upsampled values per step: a few MB of working memory on the CPU
# (the step stays in cache), a few hundred MB on a GPU.
_TARGET_CHUNK = {"cpu": 1 << 21, "cuda": 1 << 25}
# Histogram entries per step (components in a step * n_bins): cache-sized on the CPU, 64 MB per
# histogram on a GPU.
_TARGET_HIST = {"cpu": 1 << 18, "cuda": 1 << 23}
# Histogram entries kept over a whole pass through the images (components of a group * n_bins): the
# components are ranked in groups, one pass over the image chunks each; 64 MB per int64 histogram
# on the CPU (128 components at the default n_bins), 128 MB on a GPU.
_GROUP_HIST = {"cpu": 1 << 23, "cuda": 1 << 24}
# The exact recomputation keeps the values of the positive pixels of at most this many
# (components * positive pixels) at once (256 MB of float64).
_EXACT_VALUES = 1 << 25
_MAX_BINS = 1 << 24
_MAX_HIST = (1 << 31) - 1  # bin indices of a step are int32
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


# --------------------------------------------------------------------------------------------------
# Chunks
# --------------------------------------------------------------------------------------------------
@dataclass
class _Layout:
    """What the first chunk fixed: components, feature size, dtype and device of ``y``."""

    n_comp: int
    hw: tuple[int, int]
    dtype: torch.dtype
    device: torch.device
    n_images: int | None = None  # images of the first pass; every later pass must see as many


def _chunk_pass(chunks, out_hw: tuple[int, int], prefix: Callable[[int], str], layout: list,
                *, validate: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One pass over ``chunks()``: yields (y (n, C, h, w) tensor, labels (n, H*W) bool on y's device).

    Chunks without images are skipped. ``layout`` is a one-element list holding the :class:`_Layout`
    once the first chunk was seen. ``validate``: check finiteness and binary masks (first pass).
    """
    n_seen = 0
    for i, y, m in _pairs(chunks, "(`y`, `masks`)", prefix):
        y = y.detach() if isinstance(y, torch.Tensor) else _as_tensor(y, "y")
        if y.ndim != 4 or y.dtype not in _BITS:
            raise ValueError(f"{prefix(i)}`y` must be a (N, C, h, w) float32 or float64 tensor, got shape "
                             f"{tuple(y.shape)}, dtype {y.dtype}")
        if not layout:
            if y.shape[1] == 0:
                raise ValueError(f"{prefix(i)}`y` must have at least one component, got shape {tuple(y.shape)}")
            layout.append(_Layout(y.shape[1], tuple(y.shape[2:]), y.dtype, y.device))
        lay = layout[0]
        if (y.shape[1], tuple(y.shape[2:]), y.dtype, y.device) != (lay.n_comp, lay.hw, lay.dtype, lay.device):
            raise ValueError(f"{prefix(i)}`y` must be (n, {lay.n_comp}, {lay.hw[0]}, {lay.hw[1]}) {lay.dtype} on "
                             f"{lay.device} like the first chunk, got shape {tuple(y.shape)}, {y.dtype} on {y.device}")
        m = _as_tensor(m, "masks")
        n = y.shape[0]
        if tuple(m.shape) != (n, *out_hw):
            raise ValueError(f"{prefix(i)}`masks` must be (N, H, W) = {(n, *out_hw)} to match `y` and `out_size`, "
                             f"got {tuple(m.shape)}")
        if n == 0:
            continue
        if validate and not torch.isfinite(y).all():
            raise ValueError(f"{prefix(i)}`y` contains NaN or infinite values")
        if validate or m.dtype != torch.bool:
            try:
                labels = _labels_1d(m, m.numel(), y.device, "masks", "masks")
            except ValueError as e:
                raise ValueError(f"{prefix(i)}{e}") from None
        else:
            labels = m.to(y.device)
        yield y, labels.reshape(n, -1)
        n_seen += n
    if layout and layout[0].n_images is None:
        layout[0].n_images = n_seen
    elif layout and n_seen != layout[0].n_images:
        raise ValueError(f"`chunks` must yield the same images on every call: the first pass saw "
                         f"{layout[0].n_images} images, a later one {n_seen}")


# --------------------------------------------------------------------------------------------------
# Binning
# --------------------------------------------------------------------------------------------------
class _FloorSample:
    """Per-component maximum and a strided sample of feature-resolution ``y2`` values, streamed.

    Component c's values are taken in the order of a (C, N*h*w) view (image by image, row-major);
    the sample keeps those whose flat index is a multiple of a power-of-two stride, the smallest
    that leaves at most ``2 * _FLOOR_SAMPLE`` values. So the sample depends on the data only,
    never on how the images are chunked. Memory: K * 2 * _FLOOR_SAMPLE values plus a chunk.
    """

    def __init__(self) -> None:
        self.vmax: torch.Tensor | None = None  # (K,)
        self.pieces: list[tuple[int, torch.Tensor]] = []  # (flat index of the first value, (K, m) values)
        self.stride = 1
        self.seen = 0
        self.size = 0

    def add(self, y2: torch.Tensor) -> None:
        """y2: (n, K, h, w) squared features of the next images."""
        if y2.shape[0] == 0:
            return
        flat = y2.transpose(0, 1).reshape(y2.shape[1], -1)  # (K, n*h*w)
        vmax = flat.amax(1)  # (K,)
        self.vmax = vmax if self.vmax is None else torch.maximum(self.vmax, vmax)
        first = (-self.seen) % self.stride  # first value of the chunk on the stride
        piece = flat[:, first::self.stride].contiguous()
        self.pieces.append((self.seen + first, piece))
        self.seen += flat.shape[1]
        self.size += piece.shape[1]
        while self.size > 2 * _FLOOR_SAMPLE:  # double the stride: keep every other sampled value
            half, self.stride = self.stride, 2 * self.stride
            kept = []
            for start, p in self.pieces:
                off = (start // half) % 2  # the piece's first value on the new stride
                kept.append((start + off * half, p[:, off::2].contiguous()))
            self.pieces = kept
            self.size = sum(p.shape[1] for _, p in kept)

    def floor_quantile(self) -> torch.Tensor:
        """(K,) the ``_FLOOR_QUANTILE`` quantile of the sample (the k-th smallest value)."""
        sample = torch.cat([p for _, p in self.pieces], 1)  # (K, S)
        return sample.kthvalue(max(1, math.ceil(_FLOOR_QUANTILE * sample.shape[1])), dim=1).values


def _bin_params(vmax: torch.Tensor, q: torch.Tensor, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-component bit shift and bin range of the log-like histogram binning.

    A non-negative float's bit pattern, read as an integer, increases with the value; dropping its
    ``shift`` lowest bits groups 2**shift consecutive floats, i.e. bins of constant relative width
    (at most 2**(shift - mantissa bits)) -- log-spaced bins at the cost of one integer shift. For
    component c the binned range is [floor_c, max_c] where max_c is the largest feature-resolution
    value (no upsampled value exceeds it, up to rounding) and floor_c its ``_FLOOR_QUANTILE``
    quantile, estimated from a strided sample (:class:`_FloorSample`; but at most ``_MAX_OCTAVES``
    octaves below max_c); the smallest shift that fits that range in ``n_bins`` bins is used.
    Values outside the range are clamped into the end bins, which keeps the binning monotone, so
    the error bound stays valid whatever the data. The floor only places the bins: any floor keeps
    the bound valid.

    Parameters
    ----------
    vmax, q : (K,) float tensors, per-component maximum and floor quantile of ``y2``
    n_bins : int

    Returns
    -------
    shift, lo, hi : (K,) int64 NumPy arrays; bin = clamp(bits >> shift, lo, hi) - lo, hi - lo < n_bins
    """
    vmax_np, q_np = vmax.cpu().numpy(), q.cpu().numpy()
    floor = np.maximum(q_np, vmax_np * np.asarray(2.0 ** -_MAX_OCTAVES, dtype=vmax_np.dtype))
    np_int = _BITS[vmax.dtype][2]
    b_max = vmax_np.view(np_int).astype(np.int64)[None]  # (1, K)
    b_min = np.minimum(floor, vmax_np).view(np_int).astype(np.int64)[None]
    shifts = np.arange(8 * vmax.element_size())[:, None]  # (S, 1); the largest keeps only the sign bit
    fits = (b_max >> shifts) - (b_min >> shifts) <= n_bins - 1  # (S, K)
    shift = fits.argmax(0)  # (K,) smallest shift that fits
    lo = b_min[0] >> shift
    return shift, lo, np.minimum(lo + (n_bins - 1), np.iinfo(np_int).max)


# --------------------------------------------------------------------------------------------------
# Histograms: the numba kernel and torch ops
# --------------------------------------------------------------------------------------------------
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
    components (of the first chunk) decide.
    """
    n = min(2, y.shape[0])
    for c in sorted({0, y.shape[1] - 1}):
        ref = upsample(y[:n, c:c + 1].square(), out_hw)[:, 0].numpy()
        if not np.array_equal(kernel.upsample_component(y_np[:n], c, *out_hw), ref):
            return False
    return True


def _run(pool: ThreadPoolExecutor | None, fn, starts) -> None:
    """fn(start) for every start, on the pool when there is one and more than one start."""
    if pool is None or len(starts) == 1:
        for s in starts:
            fn(s)
    else:
        list(pool.map(fn, starts))


def _kernel_histograms(kernel, y: torch.Tensor, labels: torch.Tensor, g0: int, g1: int, shift, lo, hi,
                       out_hw: tuple[int, int], step: int, pool, hist_all: np.ndarray, hist_pos: np.ndarray) -> None:
    """Add one chunk's histograms of components g0..g1-1 with the fused numba kernel (CPU, float32).

    Steps of ``step`` components run on the pool's threads at once: the kernel is compiled
    ``nogil``, and each step adds into its own rows of ``hist_all``/``hist_pos`` ((g1 - g0, n_bins)).
    """
    n = y.shape[0]
    y_np = np.ascontiguousarray(y.numpy())  # (n, C, h, w) float32; no copy when contiguous
    m_np = np.ascontiguousarray(labels.reshape(n, *out_hw).numpy())  # (n, H, W) bool
    rows_pos = m_np.any(axis=2)  # (n, H)

    def one_step(c0: int) -> None:
        c1 = min(g1, c0 + step)
        kernel.component_histograms(y_np, c0, c1, shift, lo, hi, m_np, rows_pos,
                                    hist_all[c0 - g0:c1 - g0], hist_pos[c0 - g0:c1 - g0])

    _run(pool, one_step, range(g0, g1, step))


def _torch_histograms(y: torch.Tensor, labels: torch.Tensor, g0: int, g1: int, shift, lo, hi, n_bins: int,
                      out_hw: tuple[int, int], step: int, batch_images: int, pool,
                      hist_all: torch.Tensor, hist_pos: torch.Tensor) -> None:
    """Add one chunk's histograms of components g0..g1-1 with torch ops on y's device.

    Steps of ``step`` components by ``batch_images`` images: upsample with :func:`upsample`, bin,
    ``torch.bincount`` into the step's rows of ``hist_all``/``hist_pos`` ((g1 - g0) * n_bins,).
    """
    n, dev = y.shape[0], y.device
    int_dtype = _BITS[y.dtype][0]
    batches = []  # (i0, i1, flat indices of the positive pixels of images i0..i1-1)
    for i0 in range(0, n, batch_images):
        i1 = min(n, i0 + batch_images)
        batches.append((i0, i1, torch.nonzero(labels[i0:i1].reshape(-1)).squeeze(1)))

    def one_step(c0: int) -> None:
        c1 = min(g1, c0 + step)
        k = c1 - c0
        shift_t, lo_t, hi_t = (torch.as_tensor(p[c0 - g0:c1 - g0], dtype=int_dtype, device=dev).view(k, 1)
                               for p in (shift, lo, hi))  # (k, 1) each
        off_t = torch.arange(k, dtype=int_dtype, device=dev).view(k, 1) * n_bins - lo_t  # bin -> row of (k, n_bins)
        rows = slice((c0 - g0) * n_bins, (c1 - g0) * n_bins)
        for i0, i1, pos_idx in batches:
            y2 = y[i0:i1, c0:c1].square().transpose(0, 1).contiguous()  # (k, b, h, w)
            s = upsample(y2, out_hw).contiguous()  # (k, b, H, W), exactly F.interpolate(y[:, c:c+1]**2)
            bins = s.view(int_dtype).view(k, -1)  # (k, b*H*W) bit patterns, reused in place
            bins.bitwise_right_shift_(shift_t).clamp_(min=lo_t, max=hi_t).add_(off_t)  # flat (k, n_bins) index
            hist_all[rows] += torch.bincount(bins.view(-1), minlength=k * n_bins)
            if pos_idx.numel():
                hist_pos[rows] += torch.bincount(bins.index_select(1, pos_idx).view(-1), minlength=k * n_bins)

    if pool is None or dev.type == "cuda":
        for c0 in range(g0, g1, step):
            one_step(c0)
    else:
        # torch.bincount runs on one thread: steps go to a pool of threads (torch releases the GIL)
        # that each run single-threaded ops, which keeps every core busy.
        with _single_threaded_torch():
            _run(pool, one_step, range(g0, g1, step))


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------
def component_aurocs_streamed(chunks: Callable[[], Iterable[tuple[ArrayLike, ArrayLike]]], *, out_size,
                              n_bins: int = 1 << 16, tol: float = 1e-3, chunk_components: int | None = None,
                              batch_images: int | None = None) -> ComponentAUROC:
    """Pixel AUROC of every component's upsampled ``y2_c`` map, streamed over image chunks.

    For component c the score map is ``upsample(y[:, c:c+1]**2, out_size)`` and its AUROC is taken
    over all pixels of all images against the masks. Exact sorting of ~10M pixels for each of up to
    1024 components is too slow, so each component's upsampled values are counted into a histogram
    of positives and negatives and the AUROC is read from it, counting pairs that share a bin as one
    half. The error of that estimate is at most ``0.5 * sum_b pos_b * neg_b / (P * N)``, computed
    exactly per component and returned. Every component whose bound exceeds ``tol`` is recomputed
    exactly (bound 0). When several components' intervals ``[auroc - bound, auroc + bound]`` reach
    the best lower bound, each of them is recomputed exactly too: the best component of the ranking
    never depends on the binning (a lone contender is the best whatever its exact value, and keeps
    its bound).

    Passes over ``chunks()``: one at feature resolution per group of components for the binning
    (the first also validates and counts the classes), one per group for the histograms (integer
    counts: independent of the chunking), and two per group of exactly recomputed components (the
    exact AUROC of :mod:`mvgviz.metrics`, streamed in the same way as
    :func:`~mvgviz.metrics.pixel_metrics_streamed`). Groups keep the histograms of up to 128
    components (64 MB each on the CPU at the default ``n_bins``); most layers need one or a few.
    Memory: the group's histograms, a sample of at most 2 * 65536 values per component of the group,
    one chunk, and the positive pixels' values of the components being recomputed exactly; none of
    it grows with the number of images except the last.

    Binning: per component, bin = a right shift of the float's bit pattern, clamped to the
    ``n_bins`` bins that cover [floor_c, max_c], with max_c the largest feature-resolution value and
    floor_c the 0.1% quantile of a strided sample of its values taken by global position (the same
    sample for any chunking); bilinear upsampling is a convex combination so no upsampled value
    leaves [min, max]. A bin spans a constant relative width of at most 2**(shift - 23) for float32:
    with the default ``n_bins`` and the at most 32 octaves binned, at least 1024 bins per octave
    (relative width <= 0.1%). So any chunking gives the same histograms, estimates, bounds and exact
    values as one chunk.

    Where it runs: for float32 on the CPU, a numba kernel (:mod:`mvgviz._histkernel`) upsamples one
    image of one component at a time and bins it while it is in cache, steps of components on
    ``torch.get_num_threads()`` threads. It is used only after its values were checked to be
    bit-identical to :func:`~mvgviz.metrics.upsample`'s for these sizes (on the first chunk), so
    both paths rank the same numbers. Otherwise (CUDA, float64, numba missing, or a size where
    torch rounds differently) the maps are upsampled with :func:`~mvgviz.metrics.upsample` and
    counted with ``torch.bincount`` on ``y``'s device.

    Parameters
    ----------
    chunks : callable, ``chunks() -> iterable of (y, masks)``
        Called several times; each call must yield the same images in the same order. ``y``:
        (n, C, h, w) float32 or float64 tensor of whitened test features at feature resolution, all
        chunks with the same C, h, w, dtype and device (all work happens on that device). A view
        of a memory-mapped file (``torch.from_numpy(np.load(path, mmap_mode="c")[i:j])``) lets
        each pass read only the components it needs. ``masks``: (n, H, W) bool tensor (or 0/1),
        ground truth at the input resolution. Chunks may hold any number of images, including none.
    out_size : (H, W) pair of ints, keyword-only, must equal the masks' (H, W)
    n_bins : int, keyword-only, default 65536, in [2, 2**24]
        Histogram bins per component; more bins give smaller error bounds and larger histograms.
    tol : float, keyword-only, default 1e-3
        Components whose error bound exceeds it are recomputed exactly.
    chunk_components, batch_images : int or None, keyword-only
        Components and images handled per step within a chunk. They only change memory use and
        speed, never the result. None picks sizes that keep a step at ~2M upsampled values on the
        CPU (~32M on a GPU). The numba kernel always takes whole chunks (``batch_images`` does not
        apply to it).

    Returns
    -------
    ComponentAUROC
        ``auroc`` (C,), ``error_bound`` (C,) and ``n_exact``.

    Raises
    ------
    ValueError
        On bad shapes or options, chunks that differ in C, h, w, dtype or device, non-finite ``y``,
        masks with a single class, or calls of ``chunks`` that yield different images.
    """
    return _component_aurocs(chunks, out_size=out_size, n_bins=n_bins, tol=tol, chunk_components=chunk_components,
                             batch_images=batch_images, prefix=lambda i: f"chunk {i} of `chunks`: ")


def component_aurocs(y: torch.Tensor, masks: torch.Tensor, *, out_size, n_bins: int = 1 << 16,
                     tol: float = 1e-3, chunk_components: int | None = None,
                     batch_images: int | None = None) -> ComponentAUROC:
    """Pixel AUROC of every component's upsampled ``y2_c`` map, for a whole split in memory.

    :func:`component_aurocs_streamed` with one chunk: see there for the method, the error bound and
    where it runs. The result is the same as streaming the same images in any chunks.

    Parameters
    ----------
    y : (N, C, h, w) float32 or float64 tensor
        Whitened test features at feature resolution; all work happens on ``y.device``.
    masks : (N, H, W) bool tensor (or 0/1), ground truth at the input resolution
    out_size : (H, W) pair of ints, keyword-only, must equal ``masks.shape[1:]``
    n_bins, tol, chunk_components, batch_images : keyword-only, as in :func:`component_aurocs_streamed`

    Returns
    -------
    ComponentAUROC
        ``auroc`` (C,), ``error_bound`` (C,) and ``n_exact``.

    Raises
    ------
    ValueError
        On bad shapes or options, non-finite ``y``, or masks with a single class.
    """
    return _component_aurocs(lambda: ((y, masks),), out_size=out_size, n_bins=n_bins, tol=tol,
                             chunk_components=chunk_components, batch_images=batch_images, prefix=lambda i: "")


def _component_aurocs(chunks, *, out_size, n_bins, tol, chunk_components, batch_images, prefix) -> ComponentAUROC:
    out_hw = _check_out_size(out_size)
    n_bins = _check_positive_int(n_bins, "n_bins", minimum=2)
    if n_bins > _MAX_BINS:
        raise ValueError(f"`n_bins` must be an int in [2, {_MAX_BINS}], got {n_bins!r}")
    if isinstance(tol, bool) or not (isinstance(tol, numbers.Real) and 0.0 <= tol < math.inf):
        raise ValueError(f"`tol` must be a finite float >= 0, got {tol!r}")
    chunk_components = _check_positive_int(chunk_components, "chunk_components", allow_none=True)
    batch_images = _check_positive_int(batch_images, "batch_images", allow_none=True)
    _check_chunks(chunks)

    layout: list[_Layout] = []  # filled by the first chunk
    n_pos = n_all = 0
    kernel = None  # the numba kernels, when they reproduce upsample for these sizes

    def passes(validate: bool = False):
        return _chunk_pass(chunks, out_hw, prefix, layout, validate=validate)

    def sample(g0: int, g1: int, first: bool) -> _FloorSample:
        """A pass for the binning of components g0..g1-1; the first pass also validates and counts."""
        nonlocal n_pos, n_all, kernel, g1_first
        sampler = _FloorSample()
        for y, labels in passes(validate=first):
            if first:
                if sampler.vmax is None:  # the first chunk fixed the layout: size the first group
                    g1 = g1_first = min(layout[0].n_comp, g0 + group_size())
                    kernel = _pick_kernel(y, out_hw)
                n_pos += int(labels.sum())
                n_all += labels.numel()
            sampler.add(y[:, g0:g1].square())
        return sampler

    def group_size() -> int:
        kind = "cuda" if layout[0].device.type == "cuda" else "cpu"
        return max(1, _GROUP_HIST[kind] // n_bins)

    g1_first = None
    sampler = sample(0, None, first=True)
    if not layout or not layout[0].n_images:
        raise ValueError("`y` must have at least one image, got none")
    _check_both_classes(n_pos, n_all, "masks")
    n_comp, dev, dtype = layout[0].n_comp, layout[0].device, layout[0].dtype
    kind = "cuda" if dev.type == "cuda" else "cpu"
    hw = out_hw[0] * out_hw[1]
    threads = max(1, torch.get_num_threads())
    est = np.empty(n_comp)
    bound = np.empty(n_comp)
    denom = 2.0 * n_pos * (n_all - n_pos)

    def estimate(c0: int, hist_all: torch.Tensor, pos: torch.Tensor) -> None:
        """AUROC estimate and its error bound from (K, n_bins) histograms of components c0.."""
        step = max(1, _TARGET_HIST["cpu"] // n_bins)  # rows at once: bounded temporaries
        for r0 in range(0, pos.shape[0], step):
            p = pos[r0:r0 + step]
            neg = hist_all[r0:r0 + step] - p
            pos_above = n_pos - torch.cumsum(p, 1)  # (k, n_bins) positives in higher bins
            twice_won = (neg * (2 * pos_above + p)).sum(1)  # (k,) exact int64
            same_bin = (p * neg).sum(1)  # (k,) pairs whose order the histogram cannot see
            est[c0 + r0:c0 + r0 + p.shape[0]] = twice_won.cpu().numpy() / denom
            bound[c0 + r0:c0 + r0 + p.shape[0]] = same_bin.cpu().numpy() / denom

    workers = 1 if dev.type == "cuda" else threads
    with (ThreadPoolExecutor(max_workers=workers) if workers > 1 else nullcontext()) as pool:
        g0, g1 = 0, g1_first
        while g0 < n_comp:
            if g0 > 0:
                sampler = sample(g0, g1, first=False)
            shift, lo, hi = _bin_params(sampler.vmax, sampler.floor_quantile(), n_bins)  # (k,) each
            del sampler
            k = g1 - g0
            if kernel is not None:
                step = chunk_components or max(1, min(_TARGET_HIST["cpu"] // n_bins, -(-k // (2 * threads))))
                shift_all, lo_all, hi_all = (np.zeros(n_comp, np.int64) for _ in range(3))  # indexed by component
                shift_all[g0:g1], lo_all[g0:g1], hi_all[g0:g1] = shift, lo, hi
                hist_all = np.zeros((k, n_bins), np.int64)
                hist_pos = np.zeros((k, n_bins), np.int64)
                for y, labels in passes():
                    _kernel_histograms(kernel, y, labels, g0, g1, shift_all, lo_all, hi_all, out_hw, step, pool,
                                       hist_all, hist_pos)
                estimate(g0, torch.from_numpy(hist_all), torch.from_numpy(hist_pos))
            else:
                step = chunk_components or max(1, min(k, _TARGET_HIST[kind] // n_bins,
                                                      _TARGET_CHUNK[kind] // hw))
                step = min(step, _MAX_HIST // n_bins)  # int32 bin indices
                hist_all = torch.zeros(k * n_bins, dtype=torch.int64, device=dev)
                hist_pos = torch.zeros(k * n_bins, dtype=torch.int64, device=dev)
                for y, labels in passes():
                    bi = batch_images or max(1, min(y.shape[0], _TARGET_CHUNK[kind] // (step * hw)))
                    _torch_histograms(y, labels, g0, g1, shift, lo, hi, n_bins, out_hw, step, bi, pool,
                                      hist_all, hist_pos)
                estimate(g0, hist_all.view(k, n_bins), hist_pos.view(k, n_bins))
            del hist_all, hist_pos
            g0, g1 = g1, min(n_comp, g1 + group_size())

    # Exact where the bound exceeds tol, and for every contender for the best component (its
    # interval overlaps the best lower bound) when there are several, so the top of the ranking
    # never depends on binning. A lone contender is the best whatever its exact value.
    contenders = est + bound >= np.max(est - bound)
    exact = np.flatnonzero((bound > tol) | (contenders & (bound > 0) & (contenders.sum() > 1)))
    per_group = max(1, _EXACT_VALUES // n_pos)
    for e0 in range(0, exact.size, per_group):
        comps = exact[e0:e0 + per_group].tolist()
        counts = {c: _ThresholdCounts() for c in comps}
        for y, labels in passes():  # pass 1: the positive pixels' values
            pos_idx = np.flatnonzero(labels.reshape(-1).cpu().numpy())
            values = _exact_values(kernel, y, out_hw, dtype)
            for c in comps:
                counts[c].add_positives(values(c), pos_idx)
        for c in comps:
            counts[c].levels()
        for y, _ in passes():  # pass 2: all values below / at most each positive level
            values = _exact_values(kernel, y, out_hw, dtype)
            for c in comps:
                counts[c].count(values(c))
        for c in comps:
            est[c] = _auroc_from(counts[c].thresholds())
            bound[c] = 0.0
    return ComponentAUROC(auroc=est, error_bound=bound, n_exact=exact.size)


def _pick_kernel(y: torch.Tensor, out_hw: tuple[int, int]):
    """The numba kernels when they apply to ``y`` (CPU, float32) and reproduce :func:`upsample` here."""
    if y.device.type != "cpu" or y.dtype != torch.float32:
        return None
    kernel = _cpu_kernel()
    if kernel is None or not _kernel_matches_torch(kernel, y, np.ascontiguousarray(y.numpy()), out_hw):
        return None
    return kernel


def _exact_values(kernel, y: torch.Tensor, out_hw: tuple[int, int], dtype) -> Callable[[int], np.ndarray]:
    """c -> (n*H*W,) upsampled y2 values of component c for this chunk, exactly as histogrammed."""
    if kernel is not None:
        y_np = np.ascontiguousarray(y.numpy())
        return lambda c: kernel.upsample_component(y_np, c, *out_hw).reshape(-1)
    return lambda c: _np_scores(upsample(y[:, c:c + 1].square(), out_hw).reshape(-1))
