"""Gaussian-AD (mvgviz.models.gaussian_ad) against scikit-learn, NumPy and SciPy on tiny features.

Covariance normalisation: the Ledoit-Wolf Gaussians are compared with ``sklearn.covariance.LedoitWolf``
as it is (its biased empirical covariance, shrunk), which is what the model fits; the PCA subspaces with
``np.linalg.eigh(np.cov(...))``, METHOD.md's unbiased covariance (the variance fractions that select the
components do not depend on the normalisation).
"""

import json

import numpy as np
import pytest
import torch
from sklearn.covariance import ledoit_wolf

from mvgviz.conventions import ParamError
from mvgviz.models.gaussian_ad import GaussianAD

from imagelevel_helpers import level_feats, pooled, ref_distances, ref_gaussian, ref_kept, state_cov
from model_helpers import ArrayFeatures

LAYERS = ("l1", "l2")


def _feats(rng, n):
    return {"l1": level_feats(rng, n, 4, 4, 4), "l2": level_feats(rng, n, 6, 2, 2)}


@pytest.fixture(scope="module")
def src():
    rng = np.random.default_rng(0)
    return ArrayFeatures({"train": _feats(rng, 20), "test": _feats(rng, 5)})


def _fit(src, model, batch_size=7):
    model.check(src)
    return model.fit(src, device="cpu", batch_size=batch_size)


def _score(src, model, state, split="test", batch_size=None):
    score = model.scorer(state, "cpu", size=(16, 16))
    f = src.feats[split]
    n = next(iter(f.values())).shape[0]
    step = batch_size or n
    outs = [score({l: torch.from_numpy(a[i:i + step]) for l, a in f.items()}) for i in range(0, n, step)]
    return (torch.cat([o.image_scores for o in outs]).numpy(),
            torch.cat([o.image_components for o in outs]).numpy())


def _refs(src, model):
    """Per level (mean, VI, basis or None) from the brute-force references."""
    out = []
    for layer in LAYERS:
        x = pooled(src.feats["train"][layer])
        basis = None
        if model.variant != "full":
            basis = ref_kept(x, model.variance, "largest" if model.variant == "pca" else "smallest")[1]
        mean, _, vi = ref_gaussian(x, basis)
        out.append((mean, vi, basis))
    return out


def test_full_is_ledoit_wolf_per_level(src):
    model = GaussianAD(LAYERS)
    state = _fit(src, model)
    for i, layer in enumerate(LAYERS):
        x = pooled(src.feats["train"][layer])
        cov, shrink = ledoit_wolf(x)
        np.testing.assert_allclose(state.arrays[f"mean_{i}"], x.mean(0), rtol=1e-12)
        np.testing.assert_allclose(state_cov(state, i), cov, rtol=1e-9, atol=1e-12)
        assert state.meta["levels"][i]["shrinkage"] == pytest.approx(shrink, rel=1e-9)
        assert 0 < shrink < 1  # shrinkage at work: the comparison sees it
        assert state.arrays[f"eigvecs_{i}"].shape == (x.shape[1],) * 2
    assert state.meta["component_groups"] == [["l1", 4], ["l2", 6]]
    assert state.meta["reg"] == "ledoit-wolf" and state.meta["n_samples"] == 20
    json.dumps(state.meta)  # JSON-able
    assert all(isinstance(a, np.ndarray) for a in state.arrays.values())


@pytest.mark.parametrize("variant, variance", [("pca", 0.99), ("pca", 0.8), ("npca", 0.01), ("npca", 0.05)])
def test_pca_subspaces_are_eighs_and_ledoit_wolf_inside(src, variant, variance):
    model = GaussianAD(LAYERS, variant=variant, variance=variance)
    state = _fit(src, model)
    for i, layer in enumerate(LAYERS):
        x = pooled(src.feats["train"][layer])
        w, basis = ref_kept(x, variance, "largest" if variant == "pca" else "smallest")
        v = state.arrays[f"eigvecs_{i}"]
        assert v.shape == basis.shape, (layer, v.shape, basis.shape)
        assert 0 < v.shape[1] < x.shape[1]  # a real selection at these thresholds
        np.testing.assert_allclose(v @ v.T, basis @ basis.T, atol=1e-9)  # the same subspace
        np.testing.assert_allclose(state.arrays[f"pca_eigvals_{i}"], w, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(state_cov(state, i), ref_gaussian(x, basis)[1], rtol=1e-9, atol=1e-12)
        explained = np.trace(basis.T @ np.cov(x, rowvar=False) @ basis) / w.sum()
        assert state.meta["levels"][i]["explained"] == pytest.approx(explained, rel=1e-9)
        assert explained >= variance - 1e-9  # the kept components reach the threshold
    assert state.meta["component_groups"] == [[l, state.arrays[f"eigvals_{i}"].size] for i, l in enumerate(LAYERS)]


def test_npca_boundary_on_exact_variances():
    # pooled vectors +-a_j e_j (a = 1, 2, 3) around 0.5: covariance diag(2, 8, 18) / 5, total 28 / 5.
    a = np.array([1.0, 2.0, 3.0])
    x = np.concatenate([0.5 + np.diag(a), 0.5 - np.diag(a)]).astype(np.float32)  # (6, 3)
    src = ArrayFeatures({"train": {"l": x[:, :, None, None]}, "test": {"l": x[:2, :, None, None]}})
    np.testing.assert_allclose(np.linalg.eigh(np.cov(x.astype(np.float64), rowvar=False))[0], [0.4, 1.6, 3.6])

    def kept(variant, variance):
        v = _fit(src, GaussianAD(("l",), variant=variant, variance=variance)).arrays["eigvecs_0"]
        return np.abs(v).round(9)  # eigenvectors up to sign

    np.testing.assert_array_equal(kept("npca", 1 / 14), [[1], [0], [0]])  # 2 of 28, exactly reached
    np.testing.assert_array_equal(kept("npca", 1 / 14 + 1e-6), [[1, 0], [0, 1], [0, 0]])
    np.testing.assert_array_equal(kept("pca", 9 / 14), [[0], [0], [1]])  # 18 of 28, exactly
    np.testing.assert_array_equal(kept("pca", 13 / 14), [[0, 0], [1, 0], [0, 1]])  # 26 of 28, exactly
    assert kept("pca", 13 / 14 + 1e-6).shape == (3, 3)


@pytest.mark.parametrize("variant, variance", [("full", None), ("pca", 0.8), ("npca", 0.05)])
def test_image_scores_are_summed_scipy_distances(src, variant, variance):
    model = GaussianAD(LAYERS, variant=variant, variance=variance)
    state = _fit(src, model)
    scores, comps = _score(src, model, state)
    ref = np.zeros(5)
    start = 0
    for (layer, (mean, vi, _)), (name, k) in zip(zip(LAYERS, _refs(src, model)), state.meta["component_groups"]):
        d = ref_distances(pooled(src.feats["test"][layer]), mean, vi)  # (n,) distances, not squared
        ref += d
        assert name == layer
        # the explanation: this level's components' squares add up to its squared distance
        np.testing.assert_allclose((comps[:, start:start + k].astype(np.float64) ** 2).sum(1), d ** 2, rtol=1e-5)
        start += k
    assert start == comps.shape[1]
    np.testing.assert_allclose(scores, ref, rtol=1e-9)


def test_whitened_train_components_are_standard_without_shrinkage(src):
    model = GaussianAD(LAYERS, variant="npca", variance=0.05, reg="none")
    state = _fit(src, model)
    _, comps = _score(src, model, state, split="train")
    start = 0
    for _, k in state.meta["component_groups"]:  # within a level (levels correlate with each other)
        block = comps[:, start:start + k].astype(np.float64)
        np.testing.assert_allclose(np.cov(block, rowvar=False), np.eye(k), atol=1e-5)
        start += k


def test_batch_size_changes_nothing(src):
    model = GaussianAD(LAYERS, variant="npca", variance=0.05)
    a, b = _fit(src, model, batch_size=1), _fit(src, model, batch_size=20)
    for i in range(len(LAYERS)):
        np.testing.assert_allclose(a.arrays[f"eigvals_{i}"], b.arrays[f"eigvals_{i}"], rtol=1e-10)
        np.testing.assert_allclose(state_cov(a, i), state_cov(b, i), rtol=1e-10, atol=1e-13)
    sa, ca = _score(src, model, a, batch_size=1)
    sb, cb = _score(src, model, b, batch_size=5)
    np.testing.assert_allclose(sa, sb, rtol=1e-10)
    np.testing.assert_allclose(ca ** 2, cb ** 2, rtol=1e-5, atol=1e-6)  # components up to sign


def test_errors_name_their_parameter(src):
    cases = [({"variant": "kpca"}, "variant"), ({"variance": 0.0, "variant": "pca"}, "variance"),
             ({"variance": 1.5, "variant": "npca"}, "variance"), ({"variance": True, "variant": "pca"}, "variance"),
             ({"variance": 0.5}, "variance"),  # the full variant takes no threshold
             ({"reg": "shrink"}, "reg"), ({"layers": ()}, "layers"), ({"layers": "l1"}, "layers"),
             ({"layers": ("l1", "l1")}, "layers")]
    for kw, param in cases:
        with pytest.raises(ParamError) as e:
            GaussianAD(**{"layers": LAYERS, **kw})
        assert e.value.param == param, (kw, e.value)
    with pytest.raises(ParamError, match="no layer 'l3'") as e:
        GaussianAD(("l1", "l3")).check(src)
    assert e.value.param == "layers"
    one = ArrayFeatures({"train": {l: a[:1] for l, a in src.feats["train"].items()}, "test": src.feats["test"]})
    with pytest.raises(ParamError, match="at least 2 train images") as e:
        GaussianAD(LAYERS).check(one)
    assert e.value.param == "data"
    flat = {"l1": np.ones((4, 2, 2, 2), np.float32)}
    with pytest.raises(ParamError, match="constant pooled features") as e:
        GaussianAD(("l1",), variant="npca").fit(ArrayFeatures({"train": flat, "test": flat}), device="cpu")
    assert e.value.param == "layers"
    with pytest.raises(ValueError, match="no pixel maps"):
        GaussianAD(LAYERS).to_pixels(torch.zeros(1, 1, 2, 2), (4, 4))


def test_for_backbone_defaults_and_round_trip():
    from mvgviz.backbones import BACKBONES, get_spec
    assert (GaussianAD.name, GaussianAD.has_maps, GaussianAD.has_components, GaussianAD.ranks_components,
            GaussianAD.has_image_components) == ("gaussian-ad", False, False, False, True)
    for spec in BACKBONES.values():
        m = GaussianAD.for_backbone(spec)
        assert m.layers == tuple(l.name for l in spec.layers)  # every level, the seed's "Sum"
        assert m.options == {"layers": list(m.layers), "variant": "full", "variance": None, "reg": "ledoit-wolf"}
        for v in (m, GaussianAD.for_backbone(spec, variant="npca", variance=0.001)):
            opts = json.loads(json.dumps(v.options))
            assert GaussianAD.for_backbone(spec, **opts) == v
            assert GaussianAD(**opts) == v
    r18 = get_spec("resnet18")
    assert GaussianAD.for_backbone(r18, variant="pca").variance == 0.99  # "PCA 99%"
    assert GaussianAD.for_backbone(r18, variant="npca").variance == 0.01  # "NPCA 1%"
    assert GaussianAD.for_backbone(r18, layers="layer4+layer2").layers == ("layer2", "layer4")
    assert GaussianAD.for_backbone(r18, reg="lw").reg == "ledoit-wolf"
    with pytest.raises(ParamError) as e:
        GaussianAD.for_backbone(r18, layers="layer2+layer5")
    assert e.value.param == "layers"
    with pytest.raises(ParamError, match="not an option of gaussian-ad") as e:
        GaussianAD.for_backbone(r18, fraction=0.1)  # OPCA's option, not this one's
    assert e.value.param == "fraction"
