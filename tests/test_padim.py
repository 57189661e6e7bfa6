"""PaDiM on the model protocol (mvgviz.models.padim) against brute force on tiny features."""

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.spatial.distance import mahalanobis

from mvgviz.conventions import ParamError
from mvgviz.models.padim import PaDiM, blur, default_channels, gaussian_kernel

from model_helpers import ArrayFeatures


def _feats(rng, n):
    return {"l1": rng.standard_normal((n, 3, 4, 4)).astype(np.float32),
            "l2": rng.standard_normal((n, 4, 2, 2)).astype(np.float32)}


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    src = ArrayFeatures({"train": _feats(rng, 12), "test": _feats(rng, 3)})
    model = PaDiM(("l1", "l2"), channels=5, seed=3)
    return src, model, model.fit(src, device="cpu", batch_size=5)


def _embedding(src, split, keep):
    f = src.feats[split]
    up = f["l2"].repeat(2, axis=2).repeat(2, axis=3)  # nearest: each layer-2 cell covers 2x2 layer-1 cells
    return np.concatenate([f["l1"], up], axis=1)[:, keep].astype(np.float64)  # (N, d, 4, 4)


def test_per_position_gaussians_are_np_cov_plus_ridge(fitted):
    src, model, state = fitted
    keep = state.arrays["channels"]
    assert keep.tolist() == sorted(np.random.default_rng(3).choice(7, 5, replace=False).tolist())
    emb = _embedding(src, "train", keep)
    for i, j in ((0, 0), (3, 1), (2, 3)):
        x = emb[:, :, i, j]                                    # (N, d)
        cov = np.cov(x, rowvar=False) + 0.01 * np.eye(5)
        p = i * 4 + j
        np.testing.assert_allclose(state.arrays["mean"][p], x.mean(0), atol=1e-6)
        L = state.arrays["cholesky"][p].astype(np.float64)
        np.testing.assert_array_equal(L, np.tril(L))
        np.testing.assert_allclose(L, np.linalg.cholesky(cov), rtol=1e-6, atol=1e-7)  # float32 storage
    assert state.arrays["cholesky"].dtype == np.float32 and state.arrays["mean"].dtype == np.float64


def test_distance_and_components_against_scipy(fitted):
    src, model, state = fitted
    score = model.scorer(state, "cpu", size=(16, 16))
    out = score({l: torch.from_numpy(a) for l, a in src.feats["test"].items()})
    emb = _embedding(src, "test", state.arrays["channels"])
    train = _embedding(src, "train", state.arrays["channels"])
    for k, (i, j) in ((0, (1, 2)), (2, (3, 3))):
        x = train[:, :, i, j]
        inv = np.linalg.inv(np.cov(x, rowvar=False) + 0.01 * np.eye(5))
        ref = mahalanobis(emb[k, :, i, j], x.mean(0), inv)
        assert float(out.maps[k, i, j]) == pytest.approx(ref ** 2, rel=1e-5)  # maps hold M2 = distance**2
        # the explanation: the components' squares add up to the squared distance, and they are the
        # Cholesky (sequential) whitening L^-1 (x - mu) of Sigma_ij + eps I = L L^T
        assert float((out.components[k, :, i, j].double() ** 2).sum()) == pytest.approx(ref ** 2, rel=1e-5)
        L = np.linalg.cholesky(np.cov(x, rowvar=False) + 0.01 * np.eye(5))
        np.testing.assert_allclose(out.components[k, :, i, j].numpy(), np.linalg.solve(L, emb[k, :, i, j] - x.mean(0)),
                                   rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(out.pixels.numpy(), model.to_pixels(out.maps[:, None], (16, 16))[:, 0].numpy())
    pix = model.to_pixels(out.maps[:, None], (16, 16))[:, 0]  # PaDiM's score: blurred upsampled distance
    np.testing.assert_allclose(out.image_scores.numpy(), pix.flatten(1).amax(1).numpy())
    from mvgviz.metrics import upsample
    ref_pix = blur(upsample(out.maps[:, None].sqrt(), (16, 16)), 4.0)[:, 0]
    np.testing.assert_allclose(pix.numpy(), ref_pix.numpy())


def test_blur_is_scipys_gaussian_filter():
    rng = np.random.default_rng(1)
    x = rng.random((2, 1, 40, 29)).astype(np.float64)
    got = blur(torch.from_numpy(x), 4.0).numpy()
    for k in range(2):
        np.testing.assert_allclose(got[k, 0], ndimage.gaussian_filter(x[k, 0], sigma=4), rtol=1e-10, atol=1e-12)
    assert gaussian_kernel(4.0).size == 33 and gaussian_kernel(4.0).sum() == pytest.approx(1.0)
    # OpenCV on the CPU, torch convolutions elsewhere: both SciPy's, float32 too
    x32 = rng.random((3, 2, 64, 50)).astype(np.float32)
    fast, conv = blur(torch.from_numpy(x32), 4.0).numpy(), blur(torch.from_numpy(x32), 4.0, engine="torch").numpy()
    ref = ndimage.gaussian_filter(x32.astype(np.float64), sigma=(0, 0, 4, 4))
    np.testing.assert_allclose(fast, ref, atol=2e-6)
    np.testing.assert_allclose(conv, ref, atol=2e-6)
    small = rng.random((1, 1, 5, 6))  # the kernel is wider than the map: mirrored again
    np.testing.assert_allclose(blur(torch.from_numpy(small), 4.0).numpy()[0, 0],
                               ndimage.gaussian_filter(small[0, 0], sigma=4), rtol=1e-10, atol=1e-12)


def test_batch_size_changes_nothing(fitted):
    src, model, state = fitted
    other = model.fit(src, device="cpu", batch_size=1)
    np.testing.assert_allclose(other.arrays["cholesky"], state.arrays["cholesky"], rtol=1e-6, atol=1e-7)


def test_options_and_errors():
    assert default_channels("resnet18", 448) == 100 and default_channels("wide_resnet50_2", 1792) == 550
    assert default_channels("efficientnet_lite0", 176) == 39
    with pytest.raises(ParamError, match="`channels` must be at most the embedding's 7 channels"):
        PaDiM(("l1", "l2"), channels=9).channel_subset(7)
    with pytest.raises(ParamError, match="`eps`"):
        PaDiM(("l1",), channels=2, eps=0)
    assert PaDiM(("a", "b"), channels=3).options == {"layers": ["a", "b"], "channels": 3, "seed": 0,
                                                      "eps": 0.01, "sigma": 4.0}


def test_for_backbone_defaults_round_trip_and_check():
    from mvgviz.backbones import get_spec
    r18, wr50, lite = get_spec("resnet18"), get_spec("wide_resnet50_2"), get_spec("efficientnet_lite0")
    assert PaDiM.for_backbone(r18).options["channels"] == 100
    assert PaDiM.for_backbone(wr50).options["channels"] == 550
    assert PaDiM.for_backbone(lite).layers == ("_blocks[2]", "_blocks[4]", "_blocks[10]")
    for spec in (r18, wr50, lite):
        m = PaDiM.for_backbone(spec)
        assert PaDiM.for_backbone(spec, **m.options) == m
    with pytest.raises(ParamError) as e:
        PaDiM.for_backbone(r18, layers="layer3+layer1")
    assert e.value.param == "layers"
    with pytest.raises(ParamError) as e:
        PaDiM.for_backbone(r18, layers="layer9")
    assert e.value.param == "layers"
    for bad in ("layer1+layer1", 3):  # a repeated layer; a number from the command line
        with pytest.raises(ParamError) as e:
            PaDiM.for_backbone(r18, layers=bad)
        assert e.value.param == "layers"
    for kw in ({"seed": 1.5}, {"seed": -1}, {"eps": float("inf")}, {"sigma": float("nan")}):
        with pytest.raises(ParamError) as e:
            PaDiM.for_backbone(r18, **kw)
        assert e.value.param == next(iter(kw))
    rng = np.random.default_rng(0)
    src = ArrayFeatures({"train": _feats(rng, 4), "test": _feats(rng, 2)})
    PaDiM(("l1", "l2"), channels=7).check(src)
    with pytest.raises(ParamError, match="at most the embedding's 7") as e:
        PaDiM(("l1", "l2"), channels=8).check(src)
    with pytest.raises(ParamError, match="no layer 'l3'"):
        PaDiM(("l1", "l3"), channels=2).check(src)


def test_embedding_picks_channels_per_layer_like_the_whole_embedding():
    from mvgviz.models.embedding import embed
    rng = np.random.default_rng(5)
    f = {k: torch.from_numpy(v) for k, v in _feats(rng, 3).items()}
    whole = embed(f, ("l1", "l2"))
    for idx in ([0, 2, 5], [6, 1, 3], [4], [3, 4, 5, 6]):  # sorted, unsorted, one layer only, the second only
        t = torch.tensor(idx)
        np.testing.assert_array_equal(embed(f, ("l1", "l2"), t).numpy(), whole.index_select(1, t).numpy())
    with pytest.raises(IndexError, match="out of range"):
        embed(f, ("l1", "l2"), torch.tensor([2, 7]))
