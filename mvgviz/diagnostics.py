"""What is wrong with a model, measured per component from the train split only.

The paper (section IV) found its model's weaknesses by looking at thousands of heatmaps: border
and corner strips from padding, whitened values far outside the [0, 9] a Gaussian gives, coarse
deep layers. These measures make each one a number per component, computed from the whitened
train features ``Y`` (n, C, h, w) streamed in chunks (never a whole split), so they read no test
label and no test image.

With ``y2 = Y**2`` and ``P[c, i, j] = mean over train images of y2[c, i, j]`` (the component's
*input-independent pattern*: what it shows whatever the input is):

- ``pattern_mean`` (C, h, w) = P and ``pattern_std`` (C, h, w) = the standard deviation of
  ``y2[c, i, j]`` over the train images;
- ``border_score[c] = mean(P[c] on the outer ring of cells) / mean(P[c] on the interior)`` (rows 0
  and h-1 and columns 0 and w-1 form the ring; > 1 means the component lights up the border);
- ``corner_score[c] = mean(P[c] on the 4 corner cells) / mean(P[c] on the interior)``;
- ``position_score[c] = sum_ij (P[c,i,j] - m_c)**2 / (h*w) / var(y2[c])``, with ``m_c`` the mean of
  ``y2[c]`` and ``var`` its variance over all train images and positions: the share of the variance
  of ``y2_c`` explained by position alone (between-position variance over total variance, in
  [0, 1]; 1 = the map is the same for every input);
- ``above_chi2_99[c]``: the share of train values ``y2_c > 6.635`` (the chi-square(1) 99th
  percentile): 0.01 for a Gaussian component;
- per layer, ``excess_kurtosis`` (C,) of ``Y_c`` on train, ``E[y**4] / E[y**2]**2 - 3`` (0 for a
  Gaussian), and ``non_gaussianity``: its mean absolute value over the live components.

Scores whose denominator is zero (a dead component, no interior cell in a 1- or 2-cell map) are NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

CHI2_1_P99 = 6.6348966010212145  # scipy.stats.chi2(1).ppf(0.99)


@dataclass(frozen=True)
class Diagnostics:
    """Per-component measures of one layer (see the module docstring for the definitions)."""

    pattern_mean: np.ndarray     # (C, h, w) float64
    pattern_std: np.ndarray      # (C, h, w) float64
    border_score: np.ndarray     # (C,)
    corner_score: np.ndarray     # (C,)
    position_score: np.ndarray   # (C,)
    above_chi2_99: np.ndarray    # (C,)
    excess_kurtosis: np.ndarray  # (C,)
    n_images: int

    @property
    def non_gaussianity(self) -> float:
        """Mean |excess kurtosis| of the live components (NaN when none is live)."""
        k = self.excess_kurtosis[np.isfinite(self.excess_kurtosis)]
        return float(np.mean(np.abs(k))) if k.size else float("nan")

    def per_component(self, c: int) -> dict:
        """JSON-able scores of component c (None for NaN)."""
        def v(x):
            x = float(x)
            return x if np.isfinite(x) else None
        return {"border_score": v(self.border_score[c]), "corner_score": v(self.corner_score[c]),
                "position_score": v(self.position_score[c]), "above_chi2_99": v(self.above_chi2_99[c]),
                "excess_kurtosis": v(self.excess_kurtosis[c])}

    def to_meta(self) -> dict:
        """The per-component scores as lists (NaN -> None), for a cache entry's JSON."""
        def lst(a):
            return [float(x) if np.isfinite(x) else None for x in a]
        return {"border_score": lst(self.border_score), "corner_score": lst(self.corner_score),
                "position_score": lst(self.position_score), "above_chi2_99": lst(self.above_chi2_99),
                "excess_kurtosis": lst(self.excess_kurtosis), "non_gaussianity": self.non_gaussianity,
                "n_images": self.n_images}

    @classmethod
    def from_cache(cls, pattern_mean: np.ndarray, pattern_std: np.ndarray, meta: dict) -> "Diagnostics":
        def arr(k):
            return np.array([np.nan if x is None else x for x in meta[k]], dtype=np.float64)
        return cls(pattern_mean=np.asarray(pattern_mean, dtype=np.float64),
                   pattern_std=np.asarray(pattern_std, dtype=np.float64),
                   border_score=arr("border_score"), corner_score=arr("corner_score"),
                   position_score=arr("position_score"), above_chi2_99=arr("above_chi2_99"),
                   excess_kurtosis=arr("excess_kurtosis"), n_images=int(meta["n_images"]))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = num / den
    return np.where((den > 0) & np.isfinite(out), out, np.nan)


def component_diagnostics(chunks: Iterable[np.ndarray]) -> Diagnostics:
    """Diagnostics of one layer from its whitened train features.

    Parameters
    ----------
    chunks : iterable of (n_i, C, h, w) float arrays
        The train split's whitened features in any chunking (e.g. read from the cache with
        :meth:`mvgviz.cache.NpyReader.chunks`). The result does not depend on the chunking (up to
        float64 rounding of the sums).

    Returns
    -------
    Diagnostics
    """
    s1 = s2 = above = None
    n = 0
    for y in chunks:
        y = np.asarray(y, dtype=np.float64)
        if y.ndim != 4:
            raise ValueError(f"`chunks` must yield (n, C, h, w) arrays, got shape {y.shape}")
        if s1 is None:
            s1 = np.zeros(y.shape[1:])            # (C, h, w) sum of y2
            s2 = np.zeros(y.shape[1:])            # (C, h, w) sum of y2**2 (= y**4)
            above = np.zeros(y.shape[1])          # (C,) count of y2 > CHI2_1_P99
        elif y.shape[1:] != s1.shape:
            raise ValueError(f"`chunks` changed shape: {y.shape[1:]} after {s1.shape}")
        y2 = np.square(y)                           # (n, C, h, w)
        s1 += y2.sum(0)
        s2 += np.square(y2).sum(0)
        above += (y2 > CHI2_1_P99).sum((0, 2, 3))
        n += y.shape[0]
    if s1 is None or n == 0:
        raise ValueError("`chunks` yielded no image: diagnostics need at least one train image")
    c, h, w = s1.shape
    mean = s1 / n                                   # (C, h, w) the pattern P
    var_pos = np.maximum(s2 / n - mean ** 2, 0.0)   # (C, h, w) over images, per position
    m = mean.mean((1, 2))                           # (C,) mean of y2_c = E[y^2]
    e4 = (s2 / n).mean((1, 2))                      # (C,) E[y^4]
    total_var = e4 - m ** 2                         # (C,) variance of y2_c over images and positions
    between = np.square(mean - m[:, None, None]).mean((1, 2))  # (C,) variance explained by position
    ring = np.zeros((h, w), dtype=bool)
    ring[0, :] = ring[-1, :] = ring[:, 0] = ring[:, -1] = True
    corners = np.zeros((h, w), dtype=bool)
    corners[0, 0] = corners[0, -1] = corners[-1, 0] = corners[-1, -1] = True
    interior = ~ring
    inner = mean[:, interior].mean(1) if interior.any() else np.full(c, np.nan)  # (C,)
    border = _ratio(mean[:, ring].mean(1), inner)
    corner = _ratio(mean[:, corners].mean(1), inner)
    position = np.clip(_ratio(between, total_var), 0.0, 1.0)
    kurt = _ratio(e4, m ** 2) - 3.0
    return Diagnostics(pattern_mean=mean, pattern_std=np.sqrt(var_pos), border_score=border,
                       corner_score=corner, position_score=position, above_chi2_99=above / (n * h * w),
                       excess_kurtosis=kurt, n_images=n)
