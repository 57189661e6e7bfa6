"""The shared image-level helpers (mvgviz.models.imagelevel): pooling, kept components, whitening."""

import numpy as np
import pytest
import torch
from scipy.stats import Covariance

from mvgviz.conventions import ParamError
from mvgviz.models.imagelevel import check_fraction, kept_components, layers_option, pool, whitening_matrix


def test_pool_is_the_mean_over_positions():
    x = np.random.default_rng(0).standard_normal((3, 4, 5, 2)).astype(np.float32)
    got = pool(torch.from_numpy(x))
    assert got.dtype == torch.float64 and got.shape == (3, 4)
    np.testing.assert_allclose(got.numpy(), x.astype(np.float64).mean(axis=(2, 3)), rtol=1e-12)
    with pytest.raises(ValueError, match=r"\(n, C, h, w\)"):
        pool(torch.zeros(3, 4))


@pytest.mark.parametrize("fraction, keep, expected", [
    (0.1, "smallest", [1]),         # 1 of 10: exactly on the boundary, reached
    (0.1 + 1e-6, "smallest", [1, 2]),
    (0.3, "smallest", [1, 2]),      # 1 + 2 = 3 of 10, exactly
    (0.05, "smallest", [1]),        # always at least one component
    (0.4, "largest", [4]),          # 4 of 10, exactly
    (0.7, "largest", [3, 4]),
    (0.7 + 1e-6, "largest", [2, 3, 4]),
    (1.0, "largest", [1, 2, 3, 4]),  # all components with variance; the zero eigenvalue never
    (1.0, "smallest", [1, 2, 3, 4]),
])
def test_kept_components_boundaries(fraction, keep, expected):
    w = np.array([0.0, 1.0, 2.0, 3.0, 4.0])  # ascending, one zero (floored) eigenvalue
    assert kept_components(w, fraction, keep=keep).tolist() == expected


def test_kept_components_boundary_survives_rounding():
    # eigenvalues from a rotated diag(1, 2, 3, 4): rounding of order 1e-16, the boundaries stay
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    w = np.linalg.eigh(q @ np.diag([1.0, 2.0, 3.0, 4.0]) @ q.T)[0]
    assert kept_components(w, 0.3, keep="smallest").tolist() == [0, 1]
    assert kept_components(w, 0.7, keep="largest").tolist() == [2, 3]
    assert kept_components(np.zeros(3), 0.5, keep="smallest").size == 0
    with pytest.raises(ValueError, match="keep"):
        kept_components(w, 0.5, keep="middle")


def test_whitening_matrix_is_scipys_and_restricts():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((5, 5))
    w, v = np.linalg.eigh(a @ a.T)
    w[0] = 0.0  # a floored eigenvalue: a zero column (pseudo-inverse)
    ref = Covariance.from_eigendecomposition((w, v)).whiten(np.eye(5))
    np.testing.assert_allclose(whitening_matrix(w, v), ref, rtol=1e-12, atol=1e-15)
    # restricted to kept components: the kept columns of the full one
    np.testing.assert_allclose(whitening_matrix(w[2:], v[:, 2:]), ref[:, 2:], rtol=1e-12, atol=1e-15)


def test_options_helpers_name_their_parameter():
    from mvgviz.backbones import get_spec
    r18 = get_spec("resnet18")
    assert layers_option(r18, None) == ("layer1", "layer2", "layer3", "layer4")
    assert layers_option(r18, "all") == layers_option(r18, None)
    assert layers_option(r18, "layer3+layer1") == ("layer1", "layer3")  # backbone order
    assert layers_option(r18, ["layer2"]) == ("layer2",)
    with pytest.raises(ParamError) as e:
        layers_option(r18, "layer1+layer9")
    assert e.value.param == "layers"
    assert check_fraction(1, "f") == 1.0
    for bad in (0, -0.1, 1.5, True, "0.1", None, float("nan")):
        with pytest.raises(ParamError, match="`f` must be a fraction"):
            check_fraction(bad, "f")
