import numpy as np
import pytest
import torch
from scipy.spatial.distance import mahalanobis

from mvgviz.gaussian import fit_gaussian
from mvgviz.whitening import Whitener, m2_from_y, scale_stats, scale_stats_streamed


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    c = 6
    a = rng.normal(size=(c, c)) * np.logspace(-2, 1, c)  # eigenvalues spread over 6 decades
    train = (rng.normal(size=(20, 5, 5, c)) @ a.T + 3).transpose(0, 3, 1, 2)
    test = (rng.normal(size=(4, 5, 5, c)) * 2 @ a.T + 3).transpose(0, 3, 1, 2)
    return train, test


def _rows(f):
    return f.transpose(0, 2, 3, 1).reshape(-1, f.shape[1])


def test_whiten_equals_scipy_covariance_whiten(data):
    train, test = data
    g = fit_gaussian(_rows(train))
    y = Whitener(g)(torch.from_numpy(test)).numpy()
    ref = g.covariance().whiten(_rows(test) - g.mean)  # scipy's Covariance.whiten
    np.testing.assert_allclose(_rows(y), ref, rtol=1e-5, atol=1e-5)


def test_whitened_train_covariance_is_identity(data):
    train, _ = data
    g = fit_gaussian(_rows(train))
    y = _rows(Whitener(g)(torch.from_numpy(train)).double().numpy())
    np.testing.assert_allclose(np.cov(y, rowvar=False), np.eye(6), atol=1e-5)
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-5)


def test_m2_is_sum_of_y2_and_mahalanobis_squared(data):
    train, test = data
    g = fit_gaussian(_rows(train))
    y = Whitener(g)(torch.from_numpy(test))
    m2 = m2_from_y(y).numpy()
    np.testing.assert_allclose(m2, (y.numpy() ** 2).sum(1), rtol=1e-6)
    vi = np.linalg.inv(g.cov)
    direct = np.array([mahalanobis(v, g.mean, vi) ** 2 for v in _rows(test)]).reshape(4, 5, 5)
    np.testing.assert_allclose(m2, direct, rtol=1e-4)
    np.testing.assert_allclose(m2_from_y(y.numpy()), m2, rtol=1e-6)


def test_component_order_is_ascending_eigenvalue(data):
    train, test = data
    x = _rows(train)
    g = fit_gaussian(x)
    w_ref, v_ref = np.linalg.eigh(np.cov(x, rowvar=False))  # NumPy: ascending
    assert np.all(np.diff(w_ref) > 0) and np.all(np.diff(g.eigvals) > 0)
    np.testing.assert_allclose(g.eigvals, w_ref, rtol=1e-9)
    # column c of W is v_c / sqrt(w_c): its norm 1/sqrt(w_c) strictly decreases with c
    norms = np.linalg.norm(g.whitener(), axis=0)
    assert np.all(np.diff(norms) < 0)
    np.testing.assert_allclose(norms, 1 / np.sqrt(w_ref), rtol=1e-9)
    # Y[:, c] is the projection on the eigenvector of the c-th smallest eigenvalue (up to sign)
    y = _rows(Whitener(g)(torch.from_numpy(test)).double().numpy())
    ref = (_rows(test) - x.mean(0)) @ v_ref / np.sqrt(w_ref)
    np.testing.assert_allclose(np.abs(y), np.abs(ref), rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_path_equals_scipy(data):
    train, test = data
    g = fit_gaussian(torch.from_numpy(_rows(train)).cuda())
    y = Whitener(g, "cuda")(torch.from_numpy(test).cuda()).cpu().numpy()
    ref = g.covariance().whiten(_rows(test) - g.mean)
    np.testing.assert_allclose(_rows(y), ref, rtol=1e-5, atol=1e-5)
    g_cpu = fit_gaussian(_rows(train))
    np.testing.assert_allclose(g.cov, g_cpu.cov, rtol=1e-9, atol=1e-12)


def test_scale_stats(data):
    train, _ = data
    g = fit_gaussian(_rows(train))
    y = Whitener(g)(torch.from_numpy(train)).numpy()
    s = scale_stats(y, m2_from_y(y))
    y2 = y ** 2
    np.testing.assert_allclose(s.per_component_p99, [np.percentile(y2[:, c], 99) for c in range(6)], rtol=1e-6)
    assert s.cross_component_p99 == pytest.approx(np.percentile(y2, 99), rel=1e-6)
    np.testing.assert_allclose(s.y2_mean, 1.0 - 1 / 500, rtol=1e-4)  # biased mean of an unbiased-unit variance
    assert s.from_dict(s.to_dict()).m2_p99 == s.m2_p99


def test_with_m2_equals_the_sum_of_squares_of_y():
    import torch

    from mvgviz.gaussian import fit_gaussian, maps_to_rows
    from mvgviz.whitening import Whitener, m2_from_y
    rng = np.random.default_rng(3)
    f = rng.standard_normal((5, 6, 4, 3)).astype(np.float32) * np.arange(1, 7, dtype=np.float32)[:, None, None]
    g = fit_gaussian(lambda: iter([maps_to_rows(torch.from_numpy(f))]), reg="none", device="cpu")
    wh = Whitener(g, "cpu")
    y, m2 = wh.with_m2(torch.from_numpy(f))
    np.testing.assert_array_equal(y.numpy(), wh(torch.from_numpy(f)).numpy())
    assert m2.shape == (5, 4, 3) and m2.dtype == torch.float32
    np.testing.assert_allclose(m2.numpy(), m2_from_y(y.numpy()), rtol=1e-5)


def test_whiten_rows_batched_equals_scipy_per_gaussian():
    from scipy.stats import Covariance
    rng = np.random.default_rng(8)
    p, m, c = 4, 30, 5
    a = rng.normal(size=(p, c, c)) * np.logspace(-2, 1, c)
    train = rng.normal(size=(p, m, c)) @ a.transpose(0, 2, 1) + 3
    train[1, :, 2] = 0.5  # one zero eigenvalue in Gaussian 1
    test = (rng.normal(size=(p, 7, c)) * 2 + 3).astype(np.float32)
    g = fit_gaussian(train)
    wh = Whitener(g)
    y, m2 = wh.whiten_rows(torch.from_numpy(test), with_m2=True)
    assert y.shape == (p, 7, c) and y.dtype == torch.float64 and m2.shape == (p, 7)
    np.testing.assert_array_equal(wh.whiten_rows(test).numpy(), y.numpy())
    for i in range(p):
        cov = Covariance.from_eigendecomposition((g.eigvals[i], g.eigvecs[i]))
        ref = cov.whiten(test[i].astype(np.float64) - g.mean[i])
        np.testing.assert_allclose(y[i].numpy(), ref, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(m2[i].numpy(), (ref ** 2).sum(1), rtol=1e-12)
    assert np.all(y[1, :, 0].numpy() == 0)  # the floored component
    # broadcasting: the same samples under every Gaussian
    yb = wh.whiten_rows(test[0]).numpy()  # (M, C) -> (P, M, C)
    assert yb.shape == (p, 7, c)
    np.testing.assert_allclose(yb[2], Covariance.from_eigendecomposition((g.eigvals[2], g.eigvecs[2])).whiten(
        test[0].astype(np.float64) - g.mean[2]), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"batch shape \(4,\).*whiten_rows"):
        wh(torch.zeros(1, c, 2, 2))
    with pytest.raises(ValueError, match=r"C=5.*\(7, 4\)"):
        wh.whiten_rows(np.zeros((7, 4)))


def test_whiten_rows_of_one_gaussian_equals_the_map_path(data):
    train, test = data
    g = fit_gaussian(_rows(train))
    wh = Whitener(g)
    y_maps, m2_maps = wh.with_m2(torch.from_numpy(test))
    y, m2 = wh.whiten_rows(_rows(test), with_m2=True)
    np.testing.assert_array_equal(y.float().numpy(), _rows(y_maps.numpy()))
    np.testing.assert_array_equal(m2.float().numpy(), m2_maps.numpy().reshape(-1))


def _split(kind, rng, dtype=np.float32):
    """Y (N, C, h, w) and M2 of one kind of split."""
    n, c, h, w = {"one image": (1, 5, 6, 7)}.get(kind, (9, 6, 5, 7))
    y = rng.standard_normal((n, c, h, w)) * np.logspace(-3, 3, c)[:, None, None]
    if kind == "ties":
        y = np.round(y / np.logspace(-3, 3, c)[:, None, None] * 2) / 2  # few distinct values
    if kind in ("constant", "one image"):
        y[:, 1] = -2.5  # a constant component
        y[:, 3] = 0.0  # a zero component (floored eigenvalue)
    if kind == "heavy":
        y = np.exp(rng.standard_normal((n, c, h, w)) * 4) * rng.choice([-1, 1], (n, c, h, w))
    y = y.astype(dtype)
    return y, m2_from_y(y)


def _numpy_stats(y, m2):
    y2 = y ** 2
    return {"per_component_p99": [np.percentile(y2[:, c], 99) for c in range(y.shape[1])],
            "cross_component_p99": np.percentile(y2, 99), "m2_p99": np.percentile(m2, 99),
            "y_min": y.min((0, 2, 3)), "y_max": y.max((0, 2, 3)),
            "y2_mean": y2.astype(np.float64).mean((0, 2, 3))}


@pytest.mark.parametrize("budget", [None, 0, 40])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["normal", "ties", "constant", "heavy", "one image"])
def test_streamed_scale_stats_equal_numpy_for_any_chunking(kind, dtype, budget, monkeypatch, tmp_path):
    """Exact for every field and every chunking; budget 0 forces histogram refinement down to single keys."""
    import mvgviz.whitening as wmod
    if budget is not None:
        monkeypatch.setattr(wmod, "_COLLECT_BUDGET", budget)
    rng = np.random.default_rng(len(kind))
    y, m2 = _split(kind, rng, dtype)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "m2.npy", m2)
    ym, mm = np.load(tmp_path / "y.npy", mmap_mode="r"), np.load(tmp_path / "m2.npy", mmap_mode="r")
    ref = _numpy_stats(y, m2)
    n = len(y)
    for size in sorted({1, 2, 4, n}):
        calls = []

        def chunks():
            calls.append(1)
            return ((ym[i:i + size], mm[i:i + size]) for i in range(0, n, size))
        s = scale_stats_streamed(chunks)
        for field, want in ref.items():
            np.testing.assert_allclose(getattr(s, field), want, rtol=1e-12, atol=0, err_msg=f"{field}, chunk {size}")
        assert len(calls) <= (3 if dtype == np.float32 else 6)
        if budget is None:
            assert len(calls) <= 2
    s1 = scale_stats(y, m2)  # the in-memory form
    np.testing.assert_allclose(s1.per_component_p99, ref["per_component_p99"], rtol=1e-12, atol=0)
    assert s1.cross_component_p99 == pytest.approx(float(ref["cross_component_p99"]), rel=1e-12, abs=0)


def test_streamed_scale_stats_constant_and_zero_components_need_no_extra_pass():
    y = np.zeros((3, 4, 5, 5), np.float32)
    y[:, 1] = 3.0
    calls = []

    def chunks():
        calls.append(1)
        return ((y[i:i + 1], m2_from_y(y[i:i + 1])) for i in range(3))
    s = scale_stats_streamed(chunks)
    assert len(calls) == 1  # every target narrowed to one key in pass 1
    np.testing.assert_array_equal(s.per_component_p99, [0, 9, 0, 0])
    assert s.cross_component_p99 == 9.0 and s.m2_p99 == 9.0
    np.testing.assert_array_equal(s.y2_mean, [0, 9, 0, 0])


def test_streamed_scale_stats_large_split_equals_numpy():
    """More values than the collection budget's chunks: the percentile path on millions of values."""
    rng = np.random.default_rng(21)
    y = rng.standard_normal((40, 6, 64, 64), dtype=np.float32) * np.float32(3)
    y[:, 0] = np.round(y[:, 0])
    m2 = m2_from_y(y)
    s = scale_stats_streamed(lambda: ((y[i:i + 7], m2[i:i + 7]) for i in range(0, 40, 7)))
    for field, want in _numpy_stats(y, m2).items():
        np.testing.assert_allclose(getattr(s, field), want, rtol=1e-12, atol=0, err_msg=field)


def test_streamed_scale_stats_bad_inputs():
    y = np.zeros((2, 3, 4, 4), np.float32)
    m2 = np.zeros((2, 4, 4), np.float32)
    with pytest.raises(ValueError, match="at least one image"):
        scale_stats_streamed(lambda: iter([]))
    with pytest.raises(ValueError, match=r"m2 must be \(n, h, w\)"):
        scale_stats_streamed(lambda: [(y, m2[:, :2])])
    with pytest.raises(ValueError, match=r"y must be \(n, C, h, w\)"):
        scale_stats_streamed(lambda: [(y[0], m2)])
    with pytest.raises(ValueError, match="C=3"):
        scale_stats_streamed(lambda: [(y, m2), (y[:, :2], m2)])
    with pytest.raises(ValueError, match="dtypes of the first"):
        scale_stats_streamed(lambda: [(y, m2), (y.astype(np.float64), m2)])
    with pytest.raises(ValueError, match="float32 or float64, got int64"):
        scale_stats_streamed(lambda: [(y.astype(np.int64), m2)])
    bad = y.copy()
    bad[1, 2, 0, 0] = np.nan
    with pytest.raises(ValueError, match="y contains NaN"):
        scale_stats(bad, m2)
    badm = m2.copy()
    badm[0, 1, 1] = np.inf
    with pytest.raises(ValueError, match="m2 contains NaN or inf"):
        scale_stats(y, badm)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("budget", [1 << 22, 7])          # collect at once, or histogram pass after pass
def test_percentile_streamed_equals_numpy_for_any_chunking(dtype, budget, monkeypatch):
    from mvgviz import whitening
    monkeypatch.setattr(whitening, "_COLLECT_BUDGET", budget)
    rng = np.random.default_rng(3)
    values = (rng.standard_normal((23, 9, 5)) ** 3 * 10).astype(dtype)   # heavy tails, both signs
    values[4, 2] = 0.0
    for q in (99.0, 50.0, 0.0, 100.0):
        want = np.percentile(values, q)
        for step in (1, 5, 23):
            got = whitening.percentile_streamed(lambda: (values[i:i + step] for i in range(0, 23, step)), q=q)
            assert got == want, (q, step)
    assert whitening.percentile_streamed(lambda: iter([np.array([2.5], dtype)])) == 2.5


def test_percentile_streamed_bad_inputs():
    from mvgviz.whitening import percentile_streamed
    with pytest.raises(ValueError, match="at least one value"):
        percentile_streamed(lambda: iter([np.zeros(0, np.float32)]))
    with pytest.raises(ValueError, match="NaN or inf"):
        percentile_streamed(lambda: iter([np.array([1.0, np.nan], np.float32)]))
    with pytest.raises(ValueError, match="float32 or float64"):
        percentile_streamed(lambda: iter([np.arange(3)]))
    with pytest.raises(ValueError, match="dtype of the first"):
        percentile_streamed(lambda: iter([np.ones(2, np.float32), np.ones(2, np.float64)]))
