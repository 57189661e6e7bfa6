import numpy as np
import pytest
import torch
from sklearn.covariance import ledoit_wolf

from mvgviz.gaussian import FitError, GaussianAccumulator, fit_gaussian, parse_reg, reg_tag


def _feats(rng, n=7, c=5, h=4, w=3, offset=1000.0):
    a = rng.normal(size=(c, c))
    x = rng.normal(size=(n, h, w, c)) @ a.T + offset  # correlated, far from 0 (cancellation check)
    return x.transpose(0, 3, 1, 2).astype(np.float32)  # (N, C, H, W)


def _rows(f):
    return f.transpose(0, 2, 3, 1).reshape(-1, f.shape[1]).astype(np.float64)  # (N*H*W, C)


def test_mean_and_unbiased_cov_match_numpy():
    rng = np.random.default_rng(0)
    f = _feats(rng)
    g = fit_gaussian(f)
    x = _rows(f)
    np.testing.assert_allclose(g.mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(g.cov, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-9)
    assert g.n_samples == x.shape[0] and g.reg == "none"


def test_streaming_batches_equal_one_batch():
    rng = np.random.default_rng(1)
    f = _feats(rng, n=9)
    whole = fit_gaussian(f)
    streamed = fit_gaussian(lambda: (torch.from_numpy(f[i:i + 2]) for i in range(0, 9, 2)))
    np.testing.assert_allclose(streamed.cov, whole.cov, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(streamed.mean, whole.mean, rtol=1e-12)


def test_eigendecomposition_ascending_and_reconstructs():
    rng = np.random.default_rng(2)
    g = fit_gaussian(_feats(rng))
    assert np.all(np.diff(g.eigvals) >= 0)
    np.testing.assert_allclose(g.eigvecs @ np.diag(g.eigvals) @ g.eigvecs.T, g.cov, atol=1e-9)


def test_ridge_adds_eps_identity():
    rng = np.random.default_rng(3)
    f = _feats(rng)
    g0, g1 = fit_gaussian(f), fit_gaussian(f, reg="ridge:0.01")
    np.testing.assert_allclose(g1.cov - g0.cov, 0.01 * np.eye(5), atol=1e-10)
    assert g1.reg == "ridge:0.01"


def test_ledoit_wolf_matches_sklearn():
    rng = np.random.default_rng(4)
    f = _feats(rng, n=3, c=8, offset=3.0)
    g = fit_gaussian(lambda: (torch.from_numpy(f[i:i + 1]) for i in range(3)), reg="ledoit-wolf")
    cov, shrink = ledoit_wolf(_rows(f))
    np.testing.assert_allclose(g.cov, cov, rtol=1e-9, atol=1e-12)
    assert g.shrinkage == pytest.approx(shrink, rel=1e-9)


def test_c_greater_than_n_floors_zero_eigenvalues():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(4, 10))  # 4 samples in 10 dims: rank 3
    g = fit_gaussian(x)
    assert (g.eigvals == 0).sum() == 7
    assert g.floor > 0 and np.all(g.eigvals[g.eigvals > 0] > g.floor)


def test_constant_channel_gives_zero_component():
    rng = np.random.default_rng(6)
    f = _feats(rng)
    f[:, 2] = 0.0  # a dead ReLU channel
    g = fit_gaussian(f)
    assert g.eigvals[0] == 0
    w = g.whitener()
    np.testing.assert_array_equal(w[:, 0], 0)


def test_bad_inputs():
    with pytest.raises(FitError, match="at least 2"):
        fit_gaussian(np.ones((1, 3)))
    with pytest.raises(FitError, match="ridge:0.01"):
        parse_reg("ridge:-1")
    with pytest.raises(FitError, match="--reg must be"):
        parse_reg("tikhonov")
    acc = GaussianAccumulator(3)
    with pytest.raises(FitError, match="NaN"):
        acc.update(torch.tensor([[1.0, float("nan"), 2.0]]))
    with pytest.raises(FitError, match="channels"):
        acc.update(torch.zeros(2, 4, 2, 2))
    assert reg_tag("LW") == "ledoit-wolf"


def test_float32_and_float64_inputs_agree():
    rng = np.random.default_rng(7)
    f = _feats(rng, offset=0.0)
    g32, g64 = fit_gaussian(f), fit_gaussian(f.astype(np.float64))
    np.testing.assert_allclose(g32.cov, g64.cov, rtol=1e-12)
