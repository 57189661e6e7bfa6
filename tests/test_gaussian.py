import numpy as np
import pytest
import torch
from scipy.stats import Covariance
from sklearn.covariance import ledoit_wolf

from mvgviz.gaussian import FitError, GaussianAccumulator, fit_gaussian, maps_to_rows, parse_reg, reg_tag


def _feats(rng, n=7, c=5, h=4, w=3, offset=1000.0):
    a = rng.normal(size=(c, c))
    x = rng.normal(size=(n, h, w, c)) @ a.T + offset  # correlated, far from 0 (cancellation check)
    return x.transpose(0, 3, 1, 2).astype(np.float32)  # (N, C, H, W)


def _rows(f):
    return f.transpose(0, 2, 3, 1).reshape(-1, f.shape[1]).astype(np.float64)  # (N*H*W, C)


def _batch(rng, p=6, m=40, c=5, offset=500.0):
    """(P, M, C): P differently correlated Gaussians, far from 0."""
    a = rng.normal(size=(p, c, c))
    return rng.normal(size=(p, m, c)) @ a.transpose(0, 2, 1) + offset + rng.normal(size=(p, 1, c))


def test_mean_and_unbiased_cov_match_numpy():
    rng = np.random.default_rng(0)
    x = _rows(_feats(rng))
    g = fit_gaussian(x)
    np.testing.assert_allclose(g.mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(g.cov, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-9)
    assert g.n_samples == x.shape[0] and g.reg == "none" and g.batch_shape == ()
    assert isinstance(g.floor, float) and isinstance(g.shrinkage, float)


def test_maps_to_rows_is_channels_last_rows():
    rng = np.random.default_rng(10)
    f = _feats(rng)
    np.testing.assert_array_equal(maps_to_rows(f), _rows(f).astype(np.float32))
    np.testing.assert_array_equal(maps_to_rows(torch.from_numpy(f)).numpy(), _rows(f).astype(np.float32))
    with pytest.raises(FitError, match=r"\(N, C, H, W\).*\(3, 4\)"):
        maps_to_rows(np.zeros((3, 4)))


def test_streamed_maps_equal_rows():
    rng = np.random.default_rng(1)
    f = _feats(rng, n=9)
    whole = fit_gaussian(_rows(f))
    streamed = fit_gaussian(lambda: (maps_to_rows(torch.from_numpy(f[i:i + 2])) for i in range(0, 9, 2)))
    np.testing.assert_allclose(streamed.cov, whole.cov, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(streamed.mean, whole.mean, rtol=1e-12)


def test_eigendecomposition_ascending_and_reconstructs():
    rng = np.random.default_rng(2)
    g = fit_gaussian(_rows(_feats(rng)))
    assert np.all(np.diff(g.eigvals) > 0)
    np.testing.assert_allclose(g.eigvecs @ np.diag(g.eigvals) @ g.eigvecs.T, g.cov, atol=1e-9)


def test_ridge_adds_eps_identity():
    rng = np.random.default_rng(3)
    x = _rows(_feats(rng))
    g0, g1 = fit_gaussian(x), fit_gaussian(x, reg="ridge:0.01")
    np.testing.assert_allclose(g1.cov - g0.cov, 0.01 * np.eye(5), atol=1e-10)
    assert g1.reg == "ridge:0.01"


def test_ledoit_wolf_matches_sklearn():
    rng = np.random.default_rng(4)
    f = _feats(rng, n=3, c=8, offset=3.0)
    g = fit_gaussian(lambda: (maps_to_rows(torch.from_numpy(f[i:i + 1])) for i in range(3)), reg="ledoit-wolf")
    cov, shrink = ledoit_wolf(_rows(f))
    assert 0 < shrink < 1
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
    g = fit_gaussian(maps_to_rows(f))
    assert g.eigvals[0] == 0 and np.all(g.eigvals[1:] > 0)
    w = g.whitener()
    np.testing.assert_array_equal(w[:, 0], 0)


def test_bad_inputs():
    with pytest.raises(FitError, match="at least 2"):
        fit_gaussian(np.ones((1, 3)))
    with pytest.raises(FitError, match="at least 2"):
        fit_gaussian(lambda: iter([]))
    with pytest.raises(FitError, match="ridge:0.01"):
        parse_reg("ridge:-1")
    with pytest.raises(FitError, match="`reg` must be"):
        parse_reg("tikhonov")
    acc = GaussianAccumulator(3)
    with pytest.raises(FitError, match="NaN"):
        acc.update(torch.tensor([[1.0, float("nan"), 2.0]]))
    with pytest.raises(FitError, match=r"C=3 channels last.*\(2, 4, 2, 2\)"):
        acc.update(torch.zeros(2, 4, 2, 2))
    acc.update(torch.zeros(2, 5, 3))
    with pytest.raises(FitError, match=r"batch shape \(2,\).*\(4, 5, 3\)"):
        acc.update(torch.zeros(4, 5, 3))
    with pytest.raises(FitError, match="x must be"):
        fit_gaussian([np.zeros((3, 2))])
    assert reg_tag("LW") == "ledoit-wolf"


def test_float32_and_float64_inputs_agree():
    rng = np.random.default_rng(7)
    x = _rows(_feats(rng, offset=0.0)).astype(np.float32)
    g32, g64 = fit_gaussian(x), fit_gaussian(x.astype(np.float64))
    np.testing.assert_allclose(g32.cov, g64.cov, rtol=1e-12)
    xb = _batch(rng).astype(np.float32)
    b32, b64 = fit_gaussian(xb), fit_gaussian(torch.from_numpy(xb.astype(np.float64)))
    np.testing.assert_allclose(b32.cov, b64.cov, rtol=1e-12)


# ---- batched: leading dimensions are independent Gaussians (PaDiM: one per position) ----

@pytest.mark.parametrize("reg", ["none", "ridge:0.01"])
def test_batched_equals_np_cov_per_position(reg):
    rng = np.random.default_rng(11)
    x = _batch(rng)  # (P, M, C)
    g = fit_gaussian(x, reg=reg)
    p, m, c = x.shape
    assert g.batch_shape == (p,) and g.cov.shape == (p, c, c) and g.eigvecs.shape == (p, c, c)
    assert g.n_samples == m and g.floor.shape == (p,) and g.shrinkage.shape == (p,)
    eps = 0.01 if reg != "none" else 0.0
    for i in range(p):
        np.testing.assert_allclose(g.mean[i], x[i].mean(0), rtol=1e-12)
        np.testing.assert_allclose(g.cov[i], np.cov(x[i], rowvar=False) + eps * np.eye(c), rtol=1e-9, atol=1e-9)
        assert np.all(np.diff(g.eigvals[i]) > 0)  # ascending per Gaussian
        np.testing.assert_allclose(g.eigvecs[i] @ np.diag(g.eigvals[i]) @ g.eigvecs[i].T, g.cov[i], atol=1e-9)
        single = fit_gaussian(x[i], reg=reg)
        np.testing.assert_allclose(g.at(i).cov, single.cov, rtol=1e-12, atol=1e-12)
        assert g.at(i).floor == pytest.approx(single.floor, rel=1e-12)


def test_two_batch_dimensions():
    rng = np.random.default_rng(12)
    x = _batch(rng, p=6, m=15, c=3).reshape(2, 3, 15, 3)
    g = fit_gaussian(x)
    assert g.batch_shape == (2, 3) and g.eigvals.shape == (2, 3, 3)
    np.testing.assert_allclose(g.at(1, 2).cov, np.cov(x[1, 2], rowvar=False), rtol=1e-9)


@pytest.mark.parametrize("reg", ["none", "ledoit-wolf"])
@pytest.mark.parametrize("sizes", [(40,), (1, 39), (7, 0, 13, 20), (2,) * 20])
def test_batched_streaming_is_chunk_invariant(reg, sizes):
    rng = np.random.default_rng(13)
    x = _batch(rng)  # (P, 40, C)
    cuts = np.cumsum((0, *sizes))
    whole = fit_gaussian(x, reg=reg)
    streamed = fit_gaussian(lambda: (torch.from_numpy(x[:, a:b]) for a, b in zip(cuts[:-1], cuts[1:])), reg=reg)
    np.testing.assert_allclose(streamed.mean, whole.mean, rtol=1e-12)
    np.testing.assert_allclose(streamed.cov, whole.cov, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(streamed.shrinkage, whole.shrinkage, rtol=1e-9, atol=1e-15)


def test_batched_ledoit_wolf_equals_sklearn_per_gaussian():
    rng = np.random.default_rng(14)
    x = _batch(rng, p=5, m=12, c=8, offset=3.0)  # few samples: real shrinkage
    x[3] = rng.normal(size=(12, 8)) * 2.0  # near-isotropic: strong shrinkage
    g = fit_gaussian(x, reg="ledoit-wolf")
    assert g.reg == "ledoit-wolf"
    for i in range(5):
        cov, shrink = ledoit_wolf(x[i])
        np.testing.assert_allclose(g.cov[i], cov, rtol=1e-9, atol=1e-12)
        assert g.shrinkage[i] == pytest.approx(shrink, rel=1e-9)
    assert len(set(np.round(g.shrinkage, 6))) == 5  # not one coefficient for all


def test_ledoit_wolf_one_channel_is_the_biased_variance():
    rng = np.random.default_rng(15)
    x = rng.normal(size=(3, 10, 1))
    g = fit_gaussian(x, reg="ledoit-wolf")
    for i in range(3):
        cov, shrink = ledoit_wolf(x[i])
        np.testing.assert_allclose(g.cov[i], cov, rtol=1e-12)
        assert g.shrinkage[i] == shrink == 0


def test_batched_c_greater_than_m_and_constant_channels():
    rng = np.random.default_rng(16)
    x = rng.normal(size=(4, 6, 10)) * 3 + 7  # 6 samples in 10 dims: rank 5 per Gaussian
    x[1, :, 4] = 2.5  # a constant channel in one Gaussian only: rank 5 still (C > M)
    x2 = rng.normal(size=(3, 30, 4))
    x2[0, :, 2] = -1.0  # constant channel: one zero eigenvalue there only
    g, g2 = fit_gaussian(x), fit_gaussian(x2)
    assert np.all((g.eigvals == 0).sum(-1) == 5)
    assert np.all(g.floor > 0)
    for i in range(4):
        live = g.eigvals[i] > 0
        assert np.all(g.eigvals[i][live] > g.floor[i])
    assert list((g2.eigvals == 0).sum(-1)) == [1, 0, 0]
    w = g2.whitener()
    np.testing.assert_array_equal(w[0, :, 0], 0)
    assert np.all(np.abs(w[1:]).sum(-2) > 0)


def test_batched_whitener_equals_scipy_per_gaussian():
    rng = np.random.default_rng(17)
    x = rng.normal(size=(5, 8, 6)) * np.logspace(-2, 1, 6)
    x[2, :, 1] = 4.0  # one zero eigenvalue
    g = fit_gaussian(x)
    w = g.whitener()
    assert w.shape == (5, 6, 6)
    for i in range(5):
        ref = Covariance.from_eigendecomposition((g.eigvals[i], g.eigvecs[i])).whiten(np.eye(6))
        np.testing.assert_allclose(w[i], ref, rtol=1e-14, atol=0)
        np.testing.assert_allclose(g.at(i).whitener(), ref, rtol=1e-14, atol=0)
    with pytest.raises(ValueError, match=r"batch shape \(5,\)"):
        g.covariance()
    with pytest.raises(IndexError, match="1 integers"):
        g.at()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_batched_cuda_equals_cpu():
    rng = np.random.default_rng(18)
    x = _batch(rng)
    for reg in ("none", "ledoit-wolf"):
        gc = fit_gaussian(torch.from_numpy(x).cuda(), reg=reg)
        g = fit_gaussian(x, reg=reg)
        np.testing.assert_allclose(gc.cov, g.cov, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(gc.shrinkage, g.shrinkage, rtol=1e-9, atol=1e-15)


def test_pipeline_ledoit_wolf_equals_sklearn_on_the_train_features(tmp_path):
    """Ledoit-Wolf through the public fit equals sklearn's ledoit_wolf of the extracted train features."""
    from conftest import write_category

    from mvgviz.data import to_network_input
    from mvgviz.features import FeatureExtractor
    from mvgviz.pipeline import fit
    root = tmp_path / "data"
    write_category(root, "widget", n_train=5, n_good=1, n_defect=1, size=(64, 80))
    model = fit(root, "widget", layers="_blocks[4]", reg="ledoit-wolf", cache=tmp_path / "cache", device="cpu")
    lm = model.layer("_blocks[4]")
    fx = FeatureExtractor(model.backbone, (lm.spec,))
    f = fx(to_network_input(model.data.images("train"), model.preprocessing, "cpu"))["_blocks[4]"]
    x = maps_to_rows(f).double().numpy()  # (N*h*w, C)
    cov, shrink = ledoit_wolf(x)
    assert 0 < shrink < 1
    assert lm.meta["state"]["shrinkage"] == pytest.approx(shrink, rel=1e-6)
    w, v = lm.eigvals, lm.state("eigvecs")
    np.testing.assert_allclose(v @ np.diag(w) @ v.T, cov, rtol=1e-5, atol=1e-6 * np.abs(cov).max())
    np.testing.assert_allclose(lm.state("mean"), x.mean(0), rtol=1e-5, atol=1e-6)
