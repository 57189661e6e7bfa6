"""CPU kernels of :func:`mvgviz.ranking.component_aurocs` (compiled with numba).

The ranking histograms every upsampled ``y2_c`` value of every component: ~4e9 values for 496
components over 160 images at 224x224. Materialising each upsampled map and binning it with
array operations moves every value through memory several times (~1.7 ns per value on two cores);
these kernels upsample one image of one component into a row buffer and bin it while it is in
cache (~0.4 ns per value on two cores). They are serial and release the GIL (``nogil``): the caller
runs chunks of components on a thread pool (``parallel=True`` compiled twice as slowly and brings a
second OpenMP runtime next to torch's).

Upsampling is bilinear with ``align_corners=False`` (half-pixel centres, edge values clamped),
as :func:`mvgviz.metrics.upsample`, and reproduces torch's CPU ``F.interpolate`` arithmetic
operation for operation, fused multiply-adds included: first along the width at every feature
row, ``fma(w0, a, w1 * b)``, then along the height, ``fma(h0, r0, h1 * r1)``. The caller checks
that the result is bit-identical to ``F.interpolate`` on the data at hand before trusting the
kernel (``ranking._kernel_matches_torch``); where it is not (small outputs, e.g. 7x7 -> 56x56,
take another torch code path that rounds differently), the torch path runs instead.
:func:`upsample_component` gives the very values the histograms count. The histograms are
added into arrays the caller owns, so the caller can stream images through them chunk by chunk.

Imported lazily by :mod:`mvgviz.ranking` (importing numba takes ~0.3 s); compiled code is cached on
disk (``cache=True``: next to this file when writable, else numba's user cache directory).
"""

from __future__ import annotations

import numba as nb
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

__all__ = ["component_histograms", "upsample_component"]

_OPTS = dict(cache=True, nogil=True, error_model="numpy")


@intrinsic
def _fma(typingctx, a, b, c):
    """float32 a * b + c with a single rounding (LLVM's llvm.fma: the hardware FMA, or exact libm)."""
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        f32 = ir.FloatType()
        fn = builder.module.declare_intrinsic("llvm.fma", [f32], ir.FunctionType(f32, [f32, f32, f32]))
        return builder.call(fn, args)
    return sig, codegen


@nb.njit(**_OPTS)
def _geometry(n_out, n_in):
    """Source indices i0, i1 and weights w0, w1 of every output position (align_corners=False),
    computed as torch's ``compute_source_index_and_lambda`` does in float32."""
    i0 = np.empty(n_out, np.int64)
    i1 = np.empty(n_out, np.int64)
    w0 = np.empty(n_out, np.float32)
    w1 = np.empty(n_out, np.float32)
    scale = np.float32(n_in) / np.float32(n_out)
    for i in range(n_out):
        s = max(_fma(scale, np.float32(i) + np.float32(0.5), np.float32(-0.5)), np.float32(0.0))
        a = min(int(np.floor(s)), n_in - 1)
        t = min(max(s - np.float32(a), np.float32(0.0)), np.float32(1.0))
        i0[i] = a
        i1[i] = a + 1 if a < n_in - 1 else a
        w1[i] = t
        w0[i] = np.float32(1.0) - t
    return i0, i1, w0, w1


@nb.njit(**_OPTS)
def _width_pass(yc, x0, x1, w0, w1, u):
    """u[r, j]: y_c**2 interpolated along the width at feature row r. yc: (h, w)."""
    for r in range(yc.shape[0]):
        row = yc[r]
        ur = u[r]
        for j in range(u.shape[1]):
            a = row[x0[j]]
            b = row[x1[j]]
            ur[j] = _fma(w0[j], a * a, w1[j] * (b * b))


@nb.njit(**_OPTS)
def _height_row(u, i0, i1, h0, h1, out):
    """One output row: interpolation between the width-interpolated feature rows i0 and i1."""
    ua = u[i0]
    ub = u[i1]
    for j in range(out.shape[0]):
        out[j] = _fma(h0, ua[j], h1 * ub[j])


@nb.njit(**_OPTS)
def component_histograms(y, c0, c1, shift, lo, hi, masks, rows_pos, hist_all, hist_pos):
    """Add the upsampled y2 maps of components c0..c1-1 to all-pixel and positive-pixel histograms.

    Parameters
    ----------
    y : (N, C, h, w) float32, C-contiguous; N images of a chunk
    c0, c1 : component range
    shift, lo, hi : (C,) int64 binning of every component (``ranking._bin_params``):
        bin = clamp(bits >> shift, lo, hi) - lo for the float32 bit pattern ``bits``
    masks : (N, H, W) bool ground truth at the output size
    rows_pos : (N, H) bool, rows of ``masks`` with a positive pixel
    hist_all, hist_pos : (c1 - c0, n_bins) int64, counts added in place (row c - c0 for component c)
    """
    n_img, _, h, w = y.shape
    out_h, out_w = masks.shape[1], masks.shape[2]
    y0, y1, h0, h1 = _geometry(out_h, h)
    x0, x1, w0, w1 = _geometry(out_w, w)
    for ci in range(c1 - c0):
        c = c0 + ci
        ha = hist_all[ci]
        hp = hist_pos[ci]
        sh = shift[c]
        first = lo[c]
        last = hi[c]
        u = np.empty((h, out_w), np.float32)
        out = np.empty(out_w, np.float32)
        bits = out.view(np.int32)  # the same buffer read as bit patterns
        kb = np.empty(out_w, np.int64)
        for n in range(n_img):
            _width_pass(y[n, c], x0, x1, w0, w1, u)
            for i in range(out_h):
                _height_row(u, y0[i], y1[i], h0[i], h1[i], out)
                for j in range(out_w):
                    kb[j] = min(max(np.int64(bits[j] >> sh), first), last) - first
                for j in range(out_w):
                    ha[kb[j]] += 1
                if rows_pos[n, i]:
                    m = masks[n, i]
                    for j in range(out_w):
                        if m[j]:
                            hp[kb[j]] += 1


@nb.njit(**_OPTS)
def upsample_component(y, c, out_h, out_w):
    """(N, out_h, out_w) float32: the upsampled y2 map of component c, exactly as histogrammed."""
    n_img, _, h, w = y.shape
    y0, y1, h0, h1 = _geometry(out_h, h)
    x0, x1, w0, w1 = _geometry(out_w, w)
    res = np.empty((n_img, out_h, out_w), np.float32)
    u = np.empty((h, out_w), np.float32)
    for n in range(n_img):
        _width_pass(y[n, c], x0, x1, w0, w1, u)
        for i in range(out_h):
            _height_row(u, y0[i], y1[i], h0[i], h1[i], res[n, i])
    return res
