"""OPCA (mvgviz.models.opca) against scikit-learn, NumPy, SciPy and OpenCV on tiny features.

Covariance normalisation: as in test_gaussian_ad, Ledoit-Wolf is compared with scikit-learn's as it is
(biased covariance, shrunk) and the kept subspace with ``np.linalg.eigh(np.cov(...))`` (unbiased).
"""

import json

import cv2
import numpy as np
import pytest
import torch

from mvgviz.conventions import ParamError
from mvgviz.models.gaussian_ad import GaussianAD
from mvgviz.models.opca import OPCA

from imagelevel_helpers import level_feats, pooled, ref_distances, ref_gaussian, ref_kept, state_cov
from model_helpers import ArrayFeatures

LAYERS = ("l1", "l2")
SIZE = (16, 12)  # (H, W), not square: the order matters


def _feats(rng, n):
    return {"l1": level_feats(rng, n, 8, 4, 3), "l2": level_feats(rng, n, 6, 2, 2)}


@pytest.fixture(scope="module")
def src():
    rng = np.random.default_rng(3)
    return ArrayFeatures({"train": _feats(rng, 24), "test": _feats(rng, 5)})


@pytest.fixture(scope="module")
def fitted(src):
    model = OPCA(LAYERS)
    model.check(src)
    return model, model.fit(src, device="cpu", batch_size=7)


def _score(src, model, state, split="test", batch_size=None):
    score = model.scorer(state, "cpu", size=SIZE)
    f = src.feats[split]
    n = next(iter(f.values())).shape[0]
    step = batch_size or n
    outs = [score({l: torch.from_numpy(a[i:i + step]) for l, a in f.items()}) for i in range(0, n, step)]
    return tuple(None if getattr(outs[0], k) is None else torch.cat([getattr(o, k) for o in outs]).numpy()
                 for k in ("image_scores", "image_components", "maps"))


def _refs(src, fraction=0.05):
    out = []
    for layer in LAYERS:
        x = pooled(src.feats["train"][layer])
        w, basis = ref_kept(x, fraction, "smallest")
        out.append((w, basis, *ref_gaussian(x, basis)))  # w, basis, mean, cov, VI
    return out


def test_least_variance_subspace_with_ledoit_wolf(src, fitted):
    model, state = fitted
    assert model.fraction == 0.05 and model.reg == "ledoit-wolf"
    for i, (layer, (w, basis, mean, cov, _)) in enumerate(zip(LAYERS, _refs(src))):
        v = state.arrays[f"eigvecs_{i}"]
        assert v.shape == basis.shape and 0 < v.shape[1] < v.shape[0], (layer, v.shape, basis.shape)
        np.testing.assert_allclose(v @ v.T, basis @ basis.T, atol=1e-9)  # the same subspace
        np.testing.assert_allclose(state.arrays[f"mean_{i}"], mean, rtol=1e-12)
        np.testing.assert_allclose(state_cov(state, i), cov, rtol=1e-9, atol=1e-12)
        # the kept ones are the smallest: all their variances below every dropped one's
        x = pooled(src.feats["train"][layer])
        kept_var = np.diag(basis.T @ np.cov(x, rowvar=False) @ basis)
        assert kept_var.max() < np.sort(w)[basis.shape[1]]
        explained = kept_var.sum() / w.sum()
        assert explained >= 0.05 and explained - kept_var.max() / w.sum() < 0.05  # the fewest reaching 5 %
        assert state.meta["levels"][i]["explained"] == pytest.approx(explained, rel=1e-9)
    assert state.meta["component_groups"] == [[l, state.arrays[f"eigvals_{i}"].size] for i, l in enumerate(LAYERS)]
    json.dumps(state.meta)
    assert all(isinstance(a, np.ndarray) for a in state.arrays.values())


def test_image_scores_and_components_against_scipy(src, fitted):
    model, state = fitted
    scores, comps, _ = _score(src, model, state)
    ref, start = np.zeros(5), 0
    for layer, (_, _, mean, _, vi), (name, k) in zip(LAYERS, _refs(src), state.meta["component_groups"]):
        d = ref_distances(pooled(src.feats["test"][layer]), mean, vi)  # distances of the pooled vectors
        ref += d
        assert name == layer
        np.testing.assert_allclose((comps[:, start:start + k].astype(np.float64) ** 2).sum(1), d ** 2, rtol=1e-5)
        start += k
    assert start == comps.shape[1]
    np.testing.assert_allclose(scores, ref, rtol=1e-9)
    # the same image model as Gaussian-AD's NPCA at 5 %
    gad = GaussianAD(LAYERS, variant="npca", variance=0.05)
    np.testing.assert_allclose(_score(src, gad, gad.fit(src, device="cpu"))[0], scores, rtol=1e-9)


def test_map_is_the_mean_of_upsampled_layer_maps(src, fitted):
    model, state = fitted
    _, _, maps = _score(src, model, state)
    assert maps.shape == (5, *SIZE) and maps.dtype == np.float32
    ref = np.zeros((5, *SIZE))
    for layer, (_, _, mean, _, vi) in zip(LAYERS, _refs(src)):
        f = src.feats["test"][layer].astype(np.float64)  # (n, C, h, w)
        n, _, h, w = f.shape
        for k in range(n):
            s = np.array([[ref_distances(f[k, :, i, j][None], mean, vi)[0] for j in range(w)] for i in range(h)])
            ref[k] += cv2.resize(s, (SIZE[1], SIZE[0]), interpolation=cv2.INTER_LINEAR)  # METHOD.md's bilinear
    np.testing.assert_allclose(maps, ref / len(LAYERS), rtol=1e-5)
    t = torch.from_numpy(maps)[:, None]
    assert model.to_pixels(t, SIZE) is t  # already at the input's size: the identity
    assert model.to_pixels(t, (8, 6)).shape == (5, 1, 8, 6)


def test_batch_size_changes_nothing(src, fitted):
    model, state = fitted
    other = model.fit(src, device="cpu", batch_size=1)
    for i in range(len(LAYERS)):
        np.testing.assert_allclose(other.arrays[f"eigvals_{i}"], state.arrays[f"eigvals_{i}"], rtol=1e-10)
        np.testing.assert_allclose(state_cov(other, i), state_cov(state, i), rtol=1e-10, atol=1e-13)
    a, b = _score(src, model, state, batch_size=2), _score(src, model, other, batch_size=5)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-10)
    np.testing.assert_allclose(a[1] ** 2, b[1] ** 2, rtol=1e-5, atol=1e-6)  # components up to sign
    np.testing.assert_allclose(a[2], b[2], rtol=1e-6)


def test_fraction_changes_the_subspace(src):
    small, large = (OPCA(LAYERS, fraction=f).fit(src, device="cpu") for f in (0.01, 0.3))
    for i in range(len(LAYERS)):
        ks, kl = small.arrays[f"eigvals_{i}"].size, large.arrays[f"eigvals_{i}"].size
        assert ks == _refs(src, 0.01)[i][1].shape[1] and kl == _refs(src, 0.3)[i][1].shape[1]
    assert sum(s for _, s in small.meta["component_groups"]) < sum(s for _, s in large.meta["component_groups"])


def test_errors_name_their_parameter(src):
    for kw, param in [({"fraction": 0}, "fraction"), ({"fraction": 1.01}, "fraction"),
                      ({"fraction": "5%"}, "fraction"), ({"reg": "ridge:-1"}, "reg"),
                      ({"layers": []}, "layers"), ({"layers": ("l2", "l2")}, "layers")]:
        with pytest.raises(ParamError) as e:
            OPCA(**{"layers": LAYERS, **kw})
        assert e.value.param == param, (kw, e.value)
    with pytest.raises(ParamError, match="no layer 'l0'") as e:
        OPCA(("l0",)).check(src)
    assert e.value.param == "layers"
    one = ArrayFeatures({"train": {l: a[:1] for l, a in src.feats["train"].items()}, "test": src.feats["test"]})
    with pytest.raises(ParamError, match="at least 2 train images") as e:
        OPCA(LAYERS).check(one)
    assert e.value.param == "data"


def test_for_backbone_defaults_and_round_trip():
    from mvgviz.backbones import BACKBONES, get_spec
    assert (OPCA.name, OPCA.has_maps, OPCA.has_components, OPCA.ranks_components,
            OPCA.has_image_components) == ("opca", True, False, False, True)
    for spec in BACKBONES.values():
        m = OPCA.for_backbone(spec)
        assert m.options == {"layers": [l.name for l in spec.layers], "fraction": 0.05, "reg": "ledoit-wolf"}
        for v in (m, OPCA.for_backbone(spec, layers=[spec.layers[-1].name], fraction=0.2, reg="none")):
            opts = json.loads(json.dumps(v.options))
            assert OPCA.for_backbone(spec, **opts) == v
            assert OPCA(**opts) == v
    r18 = get_spec("resnet18")
    assert OPCA.for_backbone(r18, layers="layer3+layer2").layers == ("layer2", "layer3")
    with pytest.raises(ParamError) as e:
        OPCA.for_backbone(r18, layers="layer7")
    assert e.value.param == "layers"
    with pytest.raises(ParamError, match="not an option of opca") as e:
        OPCA.for_backbone(r18, variant="npca")
    assert e.value.param == "variant"
