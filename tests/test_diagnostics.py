"""Per-component artifact measures (mvgviz.diagnostics) against brute force on small arrays."""

import numpy as np
import pytest
from scipy import stats

from mvgviz.diagnostics import CHI2_1_P99, component_diagnostics


def _brute(y):
    y2 = y.astype(np.float64) ** 2                       # (n, C, h, w)
    n, c, h, w = y2.shape
    p = y2.mean(0)                                       # (C, h, w)
    ring = np.zeros((h, w), bool)
    ring[[0, -1], :] = True
    ring[:, [0, -1]] = True
    corners = np.zeros((h, w), bool)
    corners[[0, 0, -1, -1], [0, -1, 0, -1]] = True
    out = {"pattern_mean": p, "pattern_std": y2.std(0)}
    out["border_score"] = np.array([p[k][ring].mean() / p[k][~ring].mean() for k in range(c)])
    out["corner_score"] = np.array([p[k][corners].mean() / p[k][~ring].mean() for k in range(c)])
    flat = y2.transpose(1, 0, 2, 3).reshape(c, n, h * w)  # (C, n, positions)
    # one-way ANOVA over positions: between-position sum of squares / total sum of squares
    out["position_score"] = np.array([((flat[k].mean(0) - flat[k].mean()) ** 2).sum() * n / ((flat[k] - flat[k].mean()) ** 2).sum()
                                      for k in range(c)])
    out["above_chi2_99"] = (y2 > CHI2_1_P99).mean((0, 2, 3))
    yy = y.astype(np.float64)
    out["excess_kurtosis"] = np.array([(yy[:, k] ** 4).mean() / (yy[:, k] ** 2).mean() ** 2 - 3 for k in range(c)])
    return out


def test_matches_brute_force_and_does_not_depend_on_chunking():
    rng = np.random.default_rng(0)
    y = rng.standard_normal((7, 5, 6, 8)).astype(np.float32)
    y[:, 1] *= np.linspace(0.5, 2.0, 8)                 # a position-dependent component
    ref = _brute(y)
    for sizes in ([7], [1] * 7, [3, 4], [2, 0, 5]):
        idx = np.cumsum([0, *sizes])
        d = component_diagnostics(y[a:b] for a, b in zip(idx[:-1], idx[1:]))
        for k, v in ref.items():
            np.testing.assert_allclose(getattr(d, k), v, rtol=1e-9, atol=1e-12, err_msg=k)
    assert d.n_images == 7


def test_excess_kurtosis_is_scipys_on_zero_mean_components():
    # E[y^4]/E[y^2]^2 - 3 equals SciPy's (biased) kurtosis when the component's mean is 0, as whitened
    # train features are by construction; test on centred data
    rng = np.random.default_rng(1)
    y = rng.laplace(size=(40, 3, 4, 4))
    y -= y.mean((0, 2, 3), keepdims=True)
    d = component_diagnostics([y])
    ref = [stats.kurtosis(y[:, k].ravel(), bias=True) for k in range(3)]
    np.testing.assert_allclose(d.excess_kurtosis, ref, rtol=1e-9)
    assert d.non_gaussianity == pytest.approx(np.mean(np.abs(ref)))


def test_a_planted_border_pattern_ranks_first():
    rng = np.random.default_rng(2)
    y = rng.standard_normal((30, 16, 14, 14))
    y[:, 9, 0, 1:-1] += 4.0   # component 9: strips along two borders (not their corners), whatever the input
    y[:, 9, 1:-1, -1] += 4.0
    y[:, 4, 0, 0] += 6.0   # component 4: the top-left corner
    d = component_diagnostics([y])
    assert int(np.argmax(d.border_score)) == 9
    assert int(np.argmax(d.corner_score)) == 4
    assert int(np.argmax(d.position_score)) in (4, 9) and d.position_score[9] > 0.3
    np.testing.assert_array_less(d.border_score[[c for c in range(16) if c not in (4, 9)]], 1.3)


def test_gaussian_components_look_gaussian():
    rng = np.random.default_rng(3)
    d = component_diagnostics([rng.standard_normal((200, 4, 10, 10))])
    np.testing.assert_allclose(d.above_chi2_99, 0.01, atol=0.002)
    np.testing.assert_allclose(d.excess_kurtosis, 0.0, atol=0.1)
    np.testing.assert_array_less(d.position_score, 0.02)
    np.testing.assert_allclose(d.border_score, 1.0, atol=0.1)


def test_edge_cases():
    d = component_diagnostics([np.zeros((3, 2, 5, 5))])   # dead components: scores undefined
    assert np.isnan(d.border_score).all() and np.isnan(d.position_score).all()
    assert np.isnan(d.non_gaussianity)
    assert d.per_component(0)["border_score"] is None
    d = component_diagnostics([np.ones((2, 1, 2, 2))])    # no interior cell
    assert np.isnan(d.border_score).all()
    with pytest.raises(ValueError, match="no image"):
        component_diagnostics([])
    with pytest.raises(ValueError, match=r"\(n, C, h, w\)"):
        component_diagnostics([np.zeros((3, 4))])
