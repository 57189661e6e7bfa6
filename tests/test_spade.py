"""SPADE on the model protocol (mvgviz.models.spade) against brute force on tiny features."""

import cv2
import numpy as np
import pytest
import torch
from scipy import ndimage

from mvgviz.conventions import ParamError
from mvgviz.models.padim import PaDiM
from mvgviz.models.spade import SPADE, image_knn, pool, position_knn

from model_helpers import ArrayFeatures

N_TRAIN, N_TEST = 13, 5


def _feats(rng, n):
    return {"l1": rng.standard_normal((n, 3, 4, 4)).astype(np.float32),
            "l2": rng.standard_normal((n, 4, 2, 2)).astype(np.float32),
            "l3": rng.standard_normal((n, 6, 1, 1)).astype(np.float32) + 1.0}


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    src = ArrayFeatures({"train": _feats(rng, N_TRAIN), "test": _feats(rng, N_TEST)})
    model = SPADE("l2", ("l1", "l2", "l3"), k=6, kappa=2)
    return src, model, model.fit(src, device="cpu", batch_size=4)


def _tensors(src, split):
    return {l: torch.from_numpy(a) for l, a in src.feats[split].items()}


def _embedding(src, split):
    """(N, 13, 4, 4) float64: l1, then l2 and l3 repeated onto l1's 4x4 grid (nearest upsampling)."""
    f = src.feats[split]
    up2 = f["l2"].repeat(2, axis=2).repeat(2, axis=3)
    up3 = f["l3"].repeat(4, axis=2).repeat(4, axis=3)
    return np.concatenate([f["l1"], up2, up3], axis=1).astype(np.float64)


def _brute_force(src, k, kappa, image_layer="l2"):
    """Image scores (n,), neighbour sets and maps (n, h, w) from full NumPy distance matrices."""
    pooled_tr = src.feats["train"][image_layer].astype(np.float64).mean((2, 3))   # (N, D)
    pooled_te = src.feats["test"][image_layer].astype(np.float64).mean((2, 3))    # (n, D)
    dist = ((pooled_te[:, None, :] - pooled_tr[None]) ** 2).sum(-1)              # (n, N) squared
    order = np.argsort(dist, axis=1)[:, :k]                                      # K nearest per row
    image = np.sort(dist, axis=1)[:, :k].mean(1)
    tr, te = _embedding(src, "train"), _embedding(src, "test")
    n, _, h, w = te.shape
    maps = np.empty((n, h, w))
    for i in range(n):                       # the explicit loop over positions
        for y in range(h):
            for x in range(w):
                g = tr[order[i], :, y, x]                          # (K, C): the same position's gallery
                d = ((g - te[i, :, y, x]) ** 2).sum(1)             # (K,) squared distances
                maps[i, y, x] = np.sort(d)[:kappa].mean()
    return image, order, maps


def test_state_holds_pooled_features_and_gallery(fitted):
    src, model, state = fitted
    assert model.layers == ("l1", "l2", "l3")
    assert state.arrays["pooled"].dtype == np.float32 and state.arrays["gallery"].dtype == np.float32
    np.testing.assert_allclose(state.arrays["pooled"], src.feats["train"]["l2"].mean((2, 3)), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(state.arrays["gallery"], _embedding(src, "train").astype(np.float32))
    assert state.meta["grid"] == [4, 4] and state.meta["n_train"] == N_TRAIN
    assert state.meta["embedding_channels"] == 13 and state.meta["pooled_channels"] == 4


def test_scores_against_brute_force(fitted):
    src, model, state = fitted
    out = model.scorer(state, "cpu", size=(16, 16))(_tensors(src, "test"))
    image, order, maps = _brute_force(src, k=6, kappa=2)
    assert out.components is None and out.image_components is None
    assert out.image_scores.shape == (N_TEST,) and out.maps.shape == (N_TEST, 4, 4)
    assert out.maps.dtype == torch.float32
    np.testing.assert_allclose(out.image_scores.numpy(), image, rtol=1e-6)
    np.testing.assert_allclose(out.maps.numpy(), maps, rtol=2e-5, atol=1e-5)
    assert np.ptp(maps) > 1.0  # the maps vary: the comparison says something


def test_image_knn_is_the_sorted_distance_matrix(fitted):
    src, _, state = fitted
    q = pool(torch.from_numpy(src.feats["test"]["l2"]))
    vals, idx = image_knn(q, torch.from_numpy(state.arrays["pooled"]), 6)
    _, order, _ = _brute_force(src, k=6, kappa=1)
    np.testing.assert_array_equal(idx.numpy(), order)
    dist = ((q.double().numpy()[:, None] - state.arrays["pooled"].astype(np.float64)[None]) ** 2).sum(-1)
    np.testing.assert_allclose(vals.numpy(), np.sort(dist, axis=1)[:, :6], rtol=1e-12)
    # chunking (one train image at a time) changes nothing
    v1, i1 = image_knn(q, torch.from_numpy(state.arrays["pooled"]), 6, chunk=1)
    np.testing.assert_array_equal(i1.numpy(), idx.numpy())
    np.testing.assert_array_equal(v1.numpy(), vals.numpy())


def test_kappa_and_k_change_the_maps_as_defined(fitted):
    src, _, state = fitted
    for k, kappa in ((1, 1), (6, 1), (6, 6), (13, 4)):
        model = SPADE("l2", ("l1", "l2", "l3"), k=k, kappa=kappa)
        out = model.scorer(state, "cpu", size=(16, 16))(_tensors(src, "test"))
        image, _, maps = _brute_force(src, k=k, kappa=kappa)
        np.testing.assert_allclose(out.image_scores.numpy(), image, rtol=1e-6)
        np.testing.assert_allclose(out.maps.numpy(), maps, rtol=2e-5, atol=1e-5)


def test_other_image_layer(fitted):
    src, _, _ = fitted
    model = SPADE("l3", ("l1", "l2"), k=4, kappa=1)
    state = model.fit(src, device="cpu", batch_size=5)
    out = model.scorer(state, "cpu", size=(16, 16))(_tensors(src, "test"))
    image, order, _ = _brute_force(src, k=4, kappa=1, image_layer="l3")
    np.testing.assert_allclose(out.image_scores.numpy(), image, rtol=1e-6)
    tr, te = _embedding(src, "train")[:, :7], _embedding(src, "test")[:, :7]  # l1 + l2 only
    ref = ((tr[order] - te[:, None]) ** 2).sum(2).min(1)                         # (n, 4, 4)
    np.testing.assert_allclose(out.maps.numpy(), ref, rtol=2e-5, atol=1e-5)


def test_train_images_score_zero_against_themselves(fitted):
    src, model, state = fitted
    one = SPADE("l2", ("l1", "l2", "l3"), k=1, kappa=1)
    out = one.scorer(state, "cpu", size=(16, 16))(_tensors(src, "train"))
    np.testing.assert_array_equal(out.image_scores.numpy(), np.zeros(N_TRAIN))
    np.testing.assert_array_equal(out.maps.numpy(), np.zeros((N_TRAIN, 4, 4), np.float32))


def test_batch_size_and_chunks_change_nothing(fitted, monkeypatch):
    src, model, state = fitted
    other = model.fit(src, device="cpu", batch_size=1)
    for name in ("pooled", "gallery"):
        np.testing.assert_array_equal(other.arrays[name], state.arrays[name])
    score = model.scorer(state, "cpu", size=(16, 16))
    whole = score(_tensors(src, "test"))
    parts = [score({l: torch.from_numpy(a[i:i + 2]) for l, a in src.feats["test"].items()})
             for i in range(0, N_TEST, 2)]
    np.testing.assert_allclose(torch.cat([p.image_scores for p in parts]).numpy(), whole.image_scores.numpy(),
                               rtol=1e-12)
    np.testing.assert_allclose(torch.cat([p.maps for p in parts]).numpy(), whole.maps.numpy(), rtol=1e-6)
    # the pixel distances gathered one (image, neighbour) pair at a time, or all at once
    emb = model.embed(_tensors(src, "test"))
    _, idx = image_knn(pool(torch.from_numpy(src.feats["test"]["l2"])), torch.from_numpy(state.arrays["pooled"]), 6)
    gallery = torch.from_numpy(state.arrays["gallery"])
    small = position_knn(emb, gallery, idx, 2, chunk=1)
    large = position_knn(emb, gallery, idx, 2, chunk=10 ** 9)
    mid = position_knn(emb, gallery, idx, 2, chunk=3 * 13 * 16)  # 3 pairs per chunk: ragged ends
    np.testing.assert_allclose(small.numpy(), large.numpy(), rtol=1e-6)
    np.testing.assert_allclose(mid.numpy(), large.numpy(), rtol=1e-6)


def test_to_pixels_is_bilinear_then_scipy_gaussian_filter(fitted):
    src, model, state = fitted
    out = model.scorer(state, "cpu", size=(16, 16))(_tensors(src, "test"))
    maps = out.maps.double()
    pix = model.to_pixels(maps[:, None], (24, 20))[:, 0].numpy()  # (n, H, W) = (n, 24, 20)
    assert pix.shape == (N_TEST, 24, 20)
    for i in range(N_TEST):
        up = cv2.resize(maps[i].numpy(), (20, 24), interpolation=cv2.INTER_LINEAR)  # OpenCV: (W, H)
        ref = ndimage.gaussian_filter(up, sigma=4, mode="reflect")
        np.testing.assert_allclose(pix[i], ref, rtol=1e-10, atol=1e-12)
    # sigma is the model's: another sigma blurs differently
    wide = SPADE("l2", ("l1", "l2", "l3"), k=6, kappa=2, sigma=2.0).to_pixels(maps[:, None], (24, 20))[:, 0]
    assert not np.allclose(wide.numpy(), pix)


def test_k_larger_than_train_set_is_an_error_naming_k(fitted):
    src, _, state = fitted
    SPADE("l2", ("l1", "l2"), k=N_TRAIN).check(src)
    with pytest.raises(ParamError, match=f"K = 14 .* the train split has {N_TRAIN}") as e:
        SPADE("l2", ("l1", "l2"), k=14).check(src)
    assert e.value.param == "k" and str(e.value).startswith("`k` must be at most the train set's size")
    with pytest.raises(ParamError) as e:
        SPADE("l2", ("l1", "l2", "l3"), k=14).scorer(state, "cpu", size=(16, 16))
    assert e.value.param == "k"
    with pytest.raises(ParamError, match="no layer 'l9'") as e:
        SPADE("l2", ("l1", "l9")).check(src)
    assert e.value.param == "pixel_layers"
    with pytest.raises(ParamError, match="no layer 'l9'") as e:
        SPADE("l9", ("l1", "l2"), k=2).check(src)
    assert e.value.param == "image_layer"


@pytest.mark.parametrize("kw, param", [
    ({"k": 5, "kappa": 6}, "kappa"), ({"k": 0}, "k"), ({"k": 2.0}, "k"), ({"k": True}, "k"),
    ({"kappa": 0}, "kappa"), ({"sigma": 0}, "sigma"), ({"sigma": float("nan")}, "sigma"),
    ({"pixel_layers": ()}, "pixel_layers"), ({"pixel_layers": "l1"}, "pixel_layers"),
    ({"image_layer": ""}, "image_layer"),
])
def test_option_values_are_validated(kw, param):
    args = {"image_layer": "l2", "pixel_layers": ("l1", "l2"), **kw}
    with pytest.raises(ParamError) as e:
        SPADE(**args)
    assert e.value.param == param
    if param == "kappa" and kw.get("k") == 5:
        assert "at most K = 5" in str(e.value) and "got 6" in str(e.value)


def test_for_backbone_defaults_and_round_trip():
    from mvgviz.backbones import get_spec
    r18, wr50, lite = get_spec("resnet18"), get_spec("wide_resnet50_2"), get_spec("efficientnet_lite0")
    m = SPADE.for_backbone(wr50)
    assert (m.image_layer, m.pixel_layers, m.k, m.kappa, m.sigma) == \
        ("layer3", ("layer1", "layer2", "layer3"), None, 1, 4.0)  # None: 50, capped at the train set's size
    assert (m.k_for(200), m.k_for(40)) == (50, 40)
    assert m.layers == ("layer1", "layer2", "layer3")
    m = SPADE.for_backbone(r18)
    assert (m.image_layer, m.pixel_layers) == ("layer4", ("layer1", "layer2", "layer3"))
    assert m.layers == ("layer1", "layer2", "layer3", "layer4")
    m = SPADE.for_backbone(lite)
    assert (m.image_layer, m.pixel_layers) == ("_blocks[15]", ("_blocks[2]", "_blocks[4]", "_blocks[10]"))
    assert m.options == {"image_layer": "_blocks[15]", "pixel_layers": ["_blocks[2]", "_blocks[4]", "_blocks[10]"],
                         "k": None, "kappa": 1, "sigma": 4.0}
    for spec in (r18, wr50, lite):
        for kw in ({}, {"k": 10, "kappa": 3, "sigma": 2.5, "image_layer": spec.layers[1].name},
                   {"pixel_layers": [spec.layers[0].name, spec.layers[2].name]}):
            m = SPADE.for_backbone(spec, **kw)
            assert SPADE.for_backbone(spec, **m.options) == m
            import json
            assert json.loads(json.dumps(m.options)) == m.options
    assert SPADE.for_backbone(r18, pixel_layers="layer1+layer3").pixel_layers == ("layer1", "layer3")
    assert SPADE.for_backbone(lite, pixel_layers="blocks2+blocks4", image_layer="layer3").options["pixel_layers"] \
        == ["_blocks[2]", "_blocks[4]"]
    for kw, param in (({"pixel_layers": "layer3+layer1"}, "pixel_layers"), ({"pixel_layers": "layer1+layer9"},
                      "pixel_layers"), ({"image_layer": "layer4"}, "image_layer"), ({"kappa": 51}, "kappa")):
        with pytest.raises(ParamError) as e:
            SPADE.for_backbone(wr50, **kw)
        assert e.value.param == param
    with pytest.raises(TypeError):
        SPADE.for_backbone(r18, K=3)


def test_padim_and_spade_share_the_embedding(fitted):
    src, model, _ = fitted
    feats = _tensors(src, "test")
    padim = PaDiM(("l1", "l2", "l3"), channels=13)
    np.testing.assert_array_equal(padim.embed(feats).numpy(), model.embed(feats).numpy())
    np.testing.assert_array_equal(model.embed(feats).numpy(), _embedding(src, "test").astype(np.float32))
