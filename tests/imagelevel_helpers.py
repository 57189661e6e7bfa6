"""Brute-force references for the image-level Gaussians (Gaussian-AD, OPCA): NumPy, SciPy, scikit-learn.

Nothing here calls mvgviz: pooling, PCA, Ledoit-Wolf and distances are recomputed from the arrays.
"""

import numpy as np
from scipy.spatial.distance import mahalanobis
from sklearn.covariance import LedoitWolf


def level_feats(rng, n, c, h, w, *, spread=(0.05, 3.0), noise=0.3):
    """(n, C, h, w) float32 maps whose pooled vectors have a spread-out spectrum: an image-level
    vector (correlated channels, singular values from ``spread``) plus per-position noise."""
    q, _ = np.linalg.qr(rng.standard_normal((c, c)))
    mix = q * np.geomspace(*spread, c)[None, :]
    base = rng.standard_normal((n, c)) @ mix.T + 1.5  # (n, C), far from 0
    return (base[:, :, None, None] + noise * rng.standard_normal((n, c, h, w))).astype(np.float32)


def pooled(maps):
    """(N, C, h, w) -> (N, C) float64 means over positions."""
    return np.asarray(maps, dtype=np.float64).mean(axis=(2, 3))


def ref_kept(x, fraction, keep):
    """PCA of x (N, C) by ``np.linalg.eigh(np.cov(x))``: (eigenvalues ascending, basis (C, k)) of the
    fewest components from the ``keep`` end that reach ``fraction`` of the variance (zero-variance
    components excluded), added one at a time."""
    w, v = np.linalg.eigh(np.cov(x, rowvar=False))
    zero = w.shape[0] * np.finfo(np.float64).eps * w.max()
    positive = [i for i in range(w.shape[0]) if w[i] > zero]
    order = positive if keep == "smallest" else positive[::-1]
    total, acc, kept = w[positive].sum(), 0.0, []
    for i in order:
        kept.append(i)
        acc += w[i]
        if acc >= fraction * total * (1 - 1e-12):
            break
    return w, v[:, sorted(kept)]


def ref_gaussian(x, basis=None):
    """(mean (C,), covariance (C, C), VI (C, C)) of x (N, C): scikit-learn's Ledoit-Wolf of x, or of
    ``x @ basis`` mapped back to feature space; VI is the pseudo-inverse of that covariance (restricted
    to the kept components)."""
    mean = x.mean(0)
    if basis is None:
        cov = LedoitWolf().fit(x).covariance_
    else:
        cov = basis @ LedoitWolf().fit(x @ basis).covariance_ @ basis.T  # rank k
    return mean, cov, np.linalg.pinv(cov, rcond=1e-10, hermitian=True)


def ref_distances(x, mean, vi):
    """SciPy's Mahalanobis distance of each row of x (n, C)."""
    return np.array([mahalanobis(u, mean, vi) for u in x])


def state_cov(state, i):
    """Level i's covariance in feature space, from the state: ``V diag(w) V^T`` (C, C)."""
    v, w = state.arrays[f"eigvecs_{i}"], state.arrays[f"eigvals_{i}"]
    return (v * w) @ v.T
