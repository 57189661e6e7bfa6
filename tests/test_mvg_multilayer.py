"""The paper's Gaussian on several layers (mvgviz.models.mvg: MVGSum, MVGConcat) against references."""

import numpy as np
import pytest
import torch

from mvgviz.backbones import get_spec
from mvgviz.conventions import ParamError
from mvgviz.metrics import upsample
from mvgviz.models import MVG, MVGConcat, MVGSum

from model_helpers import ArrayFeatures

SIZE = (16, 16)


def _feats(rng, n):
    return {"a": rng.standard_normal((n, 3, 8, 8)).astype(np.float32),
            "b": (2 * rng.standard_normal((n, 4, 4, 4)) + 1).astype(np.float32)}


@pytest.fixture(scope="module")
def src():
    rng = np.random.default_rng(1)
    return ArrayFeatures({"train": _feats(rng, 10), "test": _feats(rng, 3)})


def _scores(model, state, src, batch_size=2):
    score = model.scorer(state, "cpu", size=SIZE)
    out = [score(b) for b in src.batches("test", model.layers, batch_size=batch_size)]
    return (torch.cat([o.image_scores for o in out]).double().numpy(),
            torch.cat([o.maps for o in out]).numpy(),
            None if out[0].components is None else torch.cat([o.components for o in out]).numpy())


def test_concat_is_np_cov_on_the_embedding_and_explains_its_map(src):
    model = MVGConcat(("a", "b"))
    state = model.fit(src, device="cpu", batch_size=3)
    f = src.feats["train"]
    emb = np.concatenate([f["a"], f["b"].repeat(2, axis=2).repeat(2, axis=3)], axis=1)  # (N, 7, 8, 8)
    rows = emb.transpose(0, 2, 3, 1).reshape(-1, 7).astype(np.float64)
    g = model.gaussian(state)
    np.testing.assert_allclose(g.mean, rows.mean(0), atol=1e-6)
    np.testing.assert_allclose(g.cov, np.cov(rows, rowvar=False), atol=1e-5)  # METHOD: 1/(N-1)
    image, maps, comps = _scores(model, state, src)
    t = src.feats["test"]
    temb = np.concatenate([t["a"], t["b"].repeat(2, axis=2).repeat(2, axis=3)], axis=1).astype(np.float64)
    d = temb.transpose(0, 2, 3, 1) - rows.mean(0)
    m2 = np.einsum("nijc,cd,nijd->nij", d, np.linalg.inv(np.cov(rows, rowvar=False)), d)
    np.testing.assert_allclose(maps, m2, rtol=1e-4)
    np.testing.assert_allclose((comps.astype(np.float64) ** 2).sum(1), m2, rtol=1e-4)
    up = upsample(torch.from_numpy(m2[:, None]).float(), SIZE)[:, 0].numpy()
    np.testing.assert_allclose(image, up.reshape(3, -1).max(1), rtol=1e-4)


def test_sum_is_the_sum_of_the_layers_models(src):
    model = MVGSum(("a", "b"))
    state = model.fit(src, device="cpu", batch_size=4)
    image, maps, comps = _scores(model, state, src)
    assert comps is None and maps.shape == (3, *SIZE)
    want_image, want_map = 0, 0
    for layer in ("a", "b"):
        m = MVG(layer)
        i, m2, _ = _scores(m, m.fit(src, device="cpu", batch_size=5), src)
        want_image = want_image + i
        want_map = want_map + upsample(torch.from_numpy(m2[:, None]), SIZE)[:, 0].numpy()
    np.testing.assert_allclose(image, want_image, rtol=1e-5)
    np.testing.assert_allclose(maps, want_map, rtol=1e-5)
    assert model.to_pixels(torch.from_numpy(maps[:, None]), SIZE).shape == (3, 1, *SIZE)
    np.testing.assert_array_equal(model.to_pixels(torch.from_numpy(maps[:, None]), SIZE)[:, 0].numpy(), maps)


def test_batch_size_changes_nothing(src):
    for model in (MVGSum(("a", "b")), MVGConcat(("a", "b"))):
        a = _scores(model, model.fit(src, device="cpu", batch_size=1), src, batch_size=1)
        b = _scores(model, model.fit(src, device="cpu", batch_size=10), src, batch_size=3)
        np.testing.assert_allclose(a[0], b[0], rtol=1e-6)
        np.testing.assert_allclose(a[1], b[1], rtol=1e-5, atol=1e-5)


def test_for_backbone_defaults_round_trip_and_errors():
    r18 = get_spec("resnet18")
    assert MVGSum.for_backbone(r18).layers == ("layer1", "layer2", "layer3", "layer4")
    assert MVGConcat.for_backbone(r18).layers == ("layer1", "layer2", "layer3")
    assert MVG.for_backbone(r18).layer == "layer3"
    assert MVG.for_backbone(get_spec("efficientnet_lite0")).layer == "_blocks[10]"
    for cls in (MVG, MVGSum, MVGConcat):
        m = cls.for_backbone(r18, reg="ledoit-wolf")
        assert cls.for_backbone(r18, **m.options) == m
    assert MVGConcat.for_backbone(r18, layers="layer2+layer3").layers == ("layer2", "layer3")
    with pytest.raises(ParamError, match="finest first") as e:
        MVGConcat.for_backbone(r18, layers="layer3+layer2")
    assert e.value.param == "layers"
    with pytest.raises(ParamError, match="at least two layers"):
        MVGSum.for_backbone(r18, layers="layer3")
