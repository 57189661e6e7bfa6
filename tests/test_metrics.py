"""Tests for mvgviz.metrics: agreement with scikit-learn, a brute-force AUPRO and OpenCV resizing."""

import dataclasses

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage
from sklearn.metrics import average_precision_score, roc_auc_score

from mvgviz.metrics import (ComponentAUROC, aupro, auroc, average_precision, component_aurocs, image_auroc,
                            pixel_metrics, upsample)


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def blob_masks(rng, n, h, w, *, fraction=0.08, n_good=1, sigma=2.0):
    """(n, h, w) bool masks made of a few blobs each; the last ``n_good`` images are defect-free."""
    noise = ndimage.gaussian_filter(rng.standard_normal((n, h, w)), sigma=(0, sigma, sigma))
    masks = noise > np.quantile(noise, 1 - fraction)
    masks[n - n_good:] = False
    return masks


def reference_aupro(scores, masks, *, fpr_limit=0.3, thresholds=None, connectivity=8):
    """Brute force: one threshold at a time, regions labelled image by image."""
    structure = np.ones((3, 3)) if connectivity == 8 else ndimage.generate_binary_structure(2, 1)
    regions = []
    for i in range(masks.shape[0]):
        lab, n = ndimage.label(masks[i], structure=structure)
        regions += [(i, lab == r) for r in range(1, n + 1)]
    normal = ~masks
    if thresholds is None:
        thresholds = np.unique(scores)[::-1]
    fpr, pro = [0.0], [0.0]
    for t in thresholds:  # descending
        fpr.append(np.count_nonzero(scores[normal] >= t) / np.count_nonzero(normal))
        pro.append(np.mean([np.mean(scores[i][r] >= t) for i, r in regions]))
    fpr, pro = np.array(fpr), np.array(pro)
    inside = fpr <= fpr_limit
    x, y = fpr[inside], pro[inside]
    if not inside.all():
        j = np.argmax(~inside)  # first point beyond the limit
        y_lim = pro[j - 1] + (pro[j] - pro[j - 1]) * (fpr_limit - fpr[j - 1]) / (fpr[j] - fpr[j - 1])
        x, y = np.append(x, fpr_limit), np.append(y, y_lim)
    return np.trapezoid(y, x) / fpr_limit


def upsampled_reference(y, c, size):
    return F.interpolate(y[:, c:c + 1] ** 2, size=size, mode="bilinear", align_corners=False).numpy().ravel()


# --------------------------------------------------------------------------------------------------
# auroc / average_precision
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("ties", [True, False])
def test_auroc_and_ap_match_sklearn(kind, dtype, ties):
    rng = np.random.default_rng(1)
    for _ in range(6):
        n = int(rng.integers(2, 3000))
        labels = rng.random(n) < rng.uniform(0.05, 0.7)
        labels[:2] = [True, False]
        if ties:  # heavy ties: a handful of integer levels
            scores = rng.integers(0, int(rng.integers(2, 9)), n) + labels * rng.integers(0, 3, n)
        else:  # large raw values: a sigmoid would saturate them
            scores = 1e6 * (rng.standard_normal(n) + labels * rng.uniform(0, 2))
        scores = scores.astype(dtype)
        s, lab = scores, labels
        if kind == "torch":
            s, lab = torch.from_numpy(scores), torch.from_numpy(labels.astype(np.int64))
        assert abs(auroc(s, lab) - roc_auc_score(labels, scores)) <= 1e-12
        assert abs(average_precision(s, lab) - average_precision_score(labels, scores)) <= 1e-12


def test_auroc_flattens_any_shape():
    rng = np.random.default_rng(2)
    scores = rng.integers(0, 5, (4, 5, 6)).astype(np.float32)
    labels = rng.random((4, 5, 6)) < 0.4
    ref = roc_auc_score(labels.ravel(), scores.ravel())
    assert auroc(scores, labels) == pytest.approx(ref, abs=1e-12)
    assert auroc(torch.from_numpy(scores), torch.from_numpy(labels).reshape(-1)) == pytest.approx(ref, abs=1e-12)


def test_auroc_extremes():
    labels = np.array([0, 0, 1, 1, 1])
    assert auroc(np.array([1.0, 2, 3, 4, 5]), labels) == 1.0
    assert auroc(np.array([5.0, 4, 3, 2, 1]), labels) == 0.0
    assert auroc(np.zeros(5), labels) == 0.5


@pytest.mark.parametrize("labels", [np.zeros(5, bool), np.ones(5, bool)])
def test_auroc_single_class_raises(labels):
    with pytest.raises(ValueError, match="labels.*both classes"):
        auroc(np.arange(5.0), labels)


def test_metric_input_errors():
    with pytest.raises(ValueError, match="at least one positive"):
        average_precision(np.arange(5.0), np.zeros(5, bool))
    with pytest.raises(ValueError, match="binary"):
        auroc(np.arange(4.0), np.array([0, 1, 2, 1]))
    with pytest.raises(ValueError, match=r"as many elements as `scores` \(4\), got 3"):
        auroc(np.arange(4.0), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="NaN"):
        auroc(np.array([0.0, np.nan, 1.0]), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="image_scores.*1-D"):
        image_auroc(np.zeros((2, 3)), np.zeros((2, 3)))


def test_image_auroc_matches_sklearn():
    rng = np.random.default_rng(3)
    scores, labels = rng.standard_normal(40), rng.random(40) < 0.5
    assert image_auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


# --------------------------------------------------------------------------------------------------
# aupro
# --------------------------------------------------------------------------------------------------
def test_aupro_two_regions_of_different_sizes():
    rng = np.random.default_rng(4)
    masks = np.zeros((1, 10, 12), bool)
    masks[0, 1:3, 1:3] = True  # 4 pixels
    masks[0, 5:8, 4:8] = True  # 12 pixels
    scores = rng.integers(0, 6, masks.shape).astype(float)
    scores[0, 1:3, 1:3] += 4  # the small region is easy, the large one partly hidden
    scores[0, 5:8, 4:6] += 2
    value = aupro(scores, masks)
    assert value == pytest.approx(reference_aupro(scores, masks), abs=1e-9)
    assert 0.0 < value < 1.0


def test_aupro_diagonal_contact_is_one_region():
    masks = np.zeros((1, 8, 8), bool)
    masks[0, 2, 2] = masks[0, 3, 3] = True  # touch only by a corner: one 8-connected region
    masks[0, 6, 6] = True
    scores = np.tile(np.arange(8.0), (1, 8, 1)) / 8  # background ramp 0..0.875
    scores[0, 2, 2], scores[0, 3, 3], scores[0, 6, 6] = 0.95, 0.05, 0.6
    ref8 = reference_aupro(scores, masks, connectivity=8)
    ref4 = reference_aupro(scores, masks, connectivity=4)
    assert abs(ref8 - ref4) > 1e-2  # the case does tell the two apart
    assert aupro(scores, masks) == pytest.approx(ref8, abs=1e-9)


def test_aupro_with_defect_free_image_and_random_data():
    rng = np.random.default_rng(5)
    masks = blob_masks(rng, 4, 32, 32, n_good=1)
    scores = rng.standard_normal(masks.shape) + 1.5 * masks
    scores = np.round(scores * 30) / 30  # ~200 distinct levels: the brute force uses every one
    assert np.unique(scores).size <= 250
    assert not masks[-1].any() and sum(ndimage.label(m, structure=np.ones((3, 3)))[1] for m in masks) >= 3
    for limit in (0.3, 0.05, 1.0):
        assert aupro(scores, masks, fpr_limit=limit) == pytest.approx(
            reference_aupro(scores, masks, fpr_limit=limit), abs=1e-9)
    from_torch = aupro(torch.from_numpy(scores), torch.from_numpy(masks))
    assert from_torch == pytest.approx(aupro(scores, masks), abs=1e-15)


def test_aupro_continuous_scores_every_threshold():
    rng = np.random.default_rng(6)
    masks = blob_masks(rng, 3, 12, 12, n_good=1)
    scores = rng.standard_normal(masks.shape) + masks
    assert aupro(scores, masks) == pytest.approx(reference_aupro(scores, masks), abs=1e-9)


def test_aupro_perfect_and_inverted_detectors():
    rng = np.random.default_rng(7)
    masks = blob_masks(rng, 3, 24, 24)
    noise = rng.random(masks.shape)
    assert aupro(masks + noise, masks) == pytest.approx(1.0, abs=1e-12)
    assert aupro(~masks + noise, masks) == pytest.approx(0.0, abs=1e-12)


def test_aupro_errors():
    scores = np.zeros((2, 4, 4))
    with pytest.raises(ValueError, match="no anomalous region"):
        aupro(scores, np.zeros((2, 4, 4), bool))
    with pytest.raises(ValueError, match="no anomaly-free"):
        aupro(scores, np.ones((2, 4, 4), bool))
    masks = np.zeros((2, 4, 4), bool)
    masks[0, 0, 0] = True
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=f"fpr_limit.*got {bad}"):
            aupro(scores, masks, fpr_limit=bad)
    with pytest.raises(ValueError, match="masks.*shape"):
        aupro(scores, masks[:1])
    with pytest.raises(ValueError, match=r"score_maps.*\(N, H, W\)"):
        aupro(scores[0], masks[0])


# --------------------------------------------------------------------------------------------------
# pixel_metrics
# --------------------------------------------------------------------------------------------------
def test_pixel_metrics_consistent_with_flat_metrics():
    rng = np.random.default_rng(8)
    masks = blob_masks(rng, 3, 20, 20)
    maps = (rng.standard_normal(masks.shape) + masks).astype(np.float32)
    pm = pixel_metrics(maps, masks)
    assert set(pm) == {"pixel_auroc", "pixel_aupr", "aupro"}
    assert pm["pixel_auroc"] == pytest.approx(auroc(maps.ravel(), masks.ravel()), abs=1e-15)
    assert pm["pixel_aupr"] == pytest.approx(average_precision(maps.ravel(), masks.ravel()), abs=1e-15)
    assert pm["aupro"] == pytest.approx(aupro(maps, masks), abs=1e-15)
    assert pm["pixel_auroc"] == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-12)


# --------------------------------------------------------------------------------------------------
# upsample and component_aurocs
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("src,dst", [((7, 7), (56, 56)), ((7, 9), (50, 64)), ((14, 14), (224, 224))])
def test_upsample_matches_opencv(src, dst):
    rng = np.random.default_rng(9)
    maps = (rng.standard_normal((2, 3, *src)) ** 2).astype(np.float32)
    out = upsample(torch.from_numpy(maps), dst).numpy()
    assert out.shape == (2, 3, *dst)
    for i in range(2):
        for k in range(3):
            ref = cv2.resize(maps[i, k], (dst[1], dst[0]), interpolation=cv2.INTER_LINEAR)
            np.testing.assert_allclose(out[i, k], ref, rtol=0, atol=1e-5)


def make_components(dtype=torch.float32, seed=10, size=56):
    """N=6, C=10 components at 7x7, masks at size x size; component 9 is identically zero."""
    rng = np.random.default_rng(seed)
    masks = blob_masks(rng, 6, size, size, fraction=0.06, n_good=2, sigma=6.0 * size / 56)
    low = F.adaptive_avg_pool2d(torch.from_numpy(masks).double()[:, None], 7)  # (6, 1, 7, 7)
    y = torch.from_numpy(rng.standard_normal((6, 10, 7, 7)))
    effect = torch.tensor([8.0, -10, 0, 6, 0, 4, 0, 0, 2, 0], dtype=torch.float64)
    y = y + effect[None, :, None, None] * low  # informative components
    y = y * torch.from_numpy(np.exp(rng.normal(0, 2, 10)))[None, :, None, None]  # wildly different scales
    y[:, 3, 0, :] *= 50  # a border artefact
    y[:, 9] = 0
    return y.to(dtype), torch.from_numpy(masks)


@pytest.mark.parametrize("dtype,size", [(torch.float32, 56), (torch.float32, 112), (torch.float64, 56)])
def test_component_aurocs_match_sklearn(dtype, size):
    y, masks = make_components(dtype, size=size)  # float32 at 112: the numba kernel; else torch ops
    tol = 1e-3
    res = component_aurocs(y, masks, out_size=(size, size), tol=tol)
    assert isinstance(res, ComponentAUROC)
    assert res.auroc.shape == res.error_bound.shape == (10,) and res.auroc.dtype == np.float64
    ref = np.array([roc_auc_score(masks.numpy().ravel(), upsampled_reference(y, c, (size, size))) for c in range(10)])
    diff = np.abs(res.auroc - ref)
    assert np.all(diff <= res.error_bound + 1e-12)
    assert np.all(res.error_bound <= tol)
    assert np.all(diff < 1e-3)
    # the zero component ties everywhere: the histogram cannot order it, the exact fallback gives 0.5
    assert res.auroc[9] == 0.5 and res.error_bound[9] == 0.0 and res.n_exact >= 1
    assert res.n_exact < 10 and np.count_nonzero(res.error_bound > 0) >= 5  # the histogram path is used
    assert ref.max() > 0.9  # the data has informative components


def test_component_aurocs_exact_fallback_everywhere():
    y, masks = make_components()
    ref = np.array([roc_auc_score(masks.numpy().ravel(), upsampled_reference(y, c, (56, 56))) for c in range(10)])
    res = component_aurocs(y, masks, out_size=(56, 56), tol=0.0)
    assert res.n_exact == 10 and np.all(res.error_bound == 0)
    np.testing.assert_allclose(res.auroc, ref, rtol=0, atol=1e-12)
    coarse = component_aurocs(y, masks, out_size=(56, 56), n_bins=4, tol=1e-3)  # coarse bins: bounds too large
    assert coarse.n_exact >= 9
    assert np.all(np.abs(coarse.auroc - ref) <= coarse.error_bound + 1e-12)
    assert np.all(coarse.error_bound <= 1e-3)


@pytest.mark.parametrize("size", [56, 112])  # 56: torch ops; 112: the numba kernel
def test_component_aurocs_chunking_does_not_change_results(size):
    y, masks = make_components(size=size)
    base = component_aurocs(y, masks, out_size=(size, size))
    for cc, bi in [(1, 1), (3, 4), (10, 6), (7, 2), (4, None), (None, 5)]:
        other = component_aurocs(y, masks, out_size=(size, size), chunk_components=cc, batch_images=bi)
        np.testing.assert_array_equal(other.auroc, base.auroc)
        np.testing.assert_array_equal(other.error_bound, base.error_bound)
        assert other.n_exact == base.n_exact


def test_component_aurocs_errors():
    y, masks = make_components()
    with pytest.raises(ValueError, match=r"masks.*\(6, 56, 56\).*got \(6, 50, 56\)"):
        component_aurocs(y, masks[:, :50], out_size=(56, 56))
    with pytest.raises(ValueError, match="out_size"):
        component_aurocs(y, masks, out_size=(56,))
    with pytest.raises(ValueError, match=r"`y` must be a \(N, C, h, w\)"):
        component_aurocs(y[0], masks, out_size=(56, 56))
    with pytest.raises(ValueError, match="n_bins.*got 1"):
        component_aurocs(y, masks, out_size=(56, 56), n_bins=1)
    with pytest.raises(ValueError, match="tol.*got -0.1"):
        component_aurocs(y, masks, out_size=(56, 56), tol=-0.1)
    with pytest.raises(ValueError, match="chunk_components.*got 0"):
        component_aurocs(y, masks, out_size=(56, 56), chunk_components=0)
    with pytest.raises(ValueError, match="masks.*both classes"):
        component_aurocs(y, torch.zeros_like(masks), out_size=(56, 56))
    bad = y.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        component_aurocs(bad, masks, out_size=(56, 56))


def test_component_auroc_container_is_frozen():
    res = ComponentAUROC(auroc=[0.5, 0.7], error_bound=[0.0, 1e-4], n_exact=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.n_exact = 2
    with pytest.raises(ValueError, match="read-only"):
        res.auroc[0] = 1.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_component_aurocs_on_cuda_agree_with_sklearn():
    y, masks = make_components()
    res = component_aurocs(y.cuda(), masks.cuda(), out_size=(56, 56))
    ref = np.array([roc_auc_score(masks.numpy().ravel(), upsampled_reference(y, c, (56, 56))) for c in range(10)])
    # CUDA and CPU bilinear kernels may round differently by an ulp: allow that much on top of the bound
    assert np.all(np.abs(res.auroc - ref) <= res.error_bound + 1e-6)
    assert res.auroc[9] == 0.5


def test_component_aurocs_decide_the_best_component_exactly():
    rng = np.random.default_rng(11)
    masks = torch.from_numpy(blob_masks(rng, 6, 32, 32, fraction=0.1, n_good=2))
    y = torch.from_numpy(rng.standard_normal((6, 5, 8, 8)).astype(np.float32))
    y[:, 3] = y[:, 2] * 1.0001  # two near-identical top contenders
    y[:, 2] += 2.0 * F.interpolate(masks[:, None].float(), size=(8, 8), mode="area")[:, 0]
    y[:, 3] = y[:, 2] * 1.0001
    r = component_aurocs(y, masks, out_size=(32, 32), n_bins=64)  # coarse bins: large bounds
    labels = masks.numpy().ravel()
    exact = [roc_auc_score(labels, upsampled_reference(y, c, (32, 32))) for c in range(5)]
    best = int(np.argmax(exact))
    assert int(np.argmax(r.auroc)) == best and r.error_bound[best] == 0.0
    assert r.auroc[best] == pytest.approx(exact[best], abs=1e-12)
    assert np.all(np.abs(r.auroc - exact) <= r.error_bound + 1e-12)


# --------------------------------------------------------------------------------------------------
# The numba CPU kernel of component_aurocs
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("h,w,out_h,out_w", [(7, 7, 224, 224), (14, 14, 224, 224), (28, 28, 224, 224),
                                             (56, 56, 224, 224), (8, 8, 256, 256), (13, 17, 200, 333),
                                             (7, 7, 7, 7)])
def test_kernel_upsampling_is_bit_identical_to_upsample(h, w, out_h, out_w):
    kernel = pytest.importorskip("mvgviz._histkernel")
    from mvgviz.metrics import upsample
    y = np.random.default_rng(h * w).standard_normal((3, 2, h, w)).astype(np.float32) * 3
    ref = upsample(torch.from_numpy(y[:, 1:2]).square(), (out_h, out_w))[:, 0].numpy()
    np.testing.assert_array_equal(kernel.upsample_component(y, 1, out_h, out_w), ref)


def _spy_kernel_ranking(monkeypatch):
    import mvgviz.metrics as M
    calls = []
    real = M._kernel_ranking
    monkeypatch.setattr(M, "_kernel_ranking", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_component_aurocs_kernel_and_torch_paths_rank_the_same_numbers(monkeypatch):
    pytest.importorskip("mvgviz._histkernel")
    import mvgviz.metrics as M
    y, masks = make_components(torch.float32, size=112)  # torch rounds outputs <= 64 wide another way
    calls = _spy_kernel_ranking(monkeypatch)
    fast = component_aurocs(y, masks, out_size=(112, 112))
    assert calls, "the numba kernel was not used for float32 on the CPU"
    assert np.count_nonzero(fast.error_bound > 0) >= 5  # the histograms were used
    monkeypatch.setattr(M, "_cpu_kernel", lambda: None)
    slow = component_aurocs(y, masks, out_size=(112, 112))
    assert len(calls) == 1
    # identical upsampled values and bins: identical histograms, estimates and bounds
    np.testing.assert_array_equal(fast.auroc, slow.auroc)
    np.testing.assert_array_equal(fast.error_bound, slow.error_bound)
    assert fast.n_exact == slow.n_exact


def test_component_aurocs_fall_back_to_torch_where_the_kernel_rounds_differently(monkeypatch):
    pytest.importorskip("mvgviz._histkernel")
    import mvgviz.metrics as M
    rng = np.random.default_rng(3)
    masks = torch.from_numpy(blob_masks(rng, 4, 37, 50, fraction=0.1, n_good=1))
    y = torch.from_numpy(rng.standard_normal((4, 3, 5, 9)).astype(np.float32))
    y[:, 0] += 3 * F.interpolate(masks[:, None].float(), size=(5, 9), mode="area")[:, 0]
    y_np = np.ascontiguousarray(y.numpy())
    assert not M._kernel_matches_torch(M._cpu_kernel(), y, y_np, (37, 50))  # torch's small-size path
    calls = _spy_kernel_ranking(monkeypatch)
    res = component_aurocs(y, masks, out_size=(37, 50))
    assert not calls
    ref = np.array([roc_auc_score(masks.numpy().ravel(), upsampled_reference(y, c, (37, 50))) for c in range(3)])
    assert np.all(np.abs(res.auroc - ref) <= res.error_bound + 1e-12)


def test_component_aurocs_from_two_threads_at_once():
    from concurrent.futures import ThreadPoolExecutor
    y, masks = make_components(torch.float32, size=112)
    base = component_aurocs(y, masks, out_size=(112, 112))
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: component_aurocs(y, masks, out_size=(112, 112)), range(4)))
    for r in results:
        np.testing.assert_array_equal(r.auroc, base.auroc)
        np.testing.assert_array_equal(r.error_bound, base.error_bound)


@pytest.mark.parametrize("size", [56, 112])
def test_component_aurocs_lone_best_keeps_its_bound_and_is_the_true_best(size):
    y, masks = make_components(torch.float32, size=size)
    y = y[:, [0, 2, 3, 4, 5, 6, 7, 8]].contiguous()  # without the near-tie of 0 and 1 and the zero map
    res = component_aurocs(y, masks, out_size=(size, size), tol=1e-3)
    ref = np.array([roc_auc_score(masks.numpy().ravel(), upsampled_reference(y, c, (size, size))) for c in range(8)])
    best = int(np.argmax(ref))
    assert int(np.argmax(res.auroc)) == best and np.sort(ref)[-1] - np.sort(ref)[-2] > 1e-3
    assert res.n_exact == 0 and res.error_bound[best] > 0  # decided without an exact recomputation
    assert np.all(np.abs(res.auroc - ref) <= res.error_bound + 1e-12)


def test_component_aurocs_without_numba(monkeypatch):
    import sys
    import mvgviz.metrics as M
    y, masks = make_components(torch.float32, size=112)
    with_kernel = component_aurocs(y, masks, out_size=(112, 112))
    monkeypatch.setattr(M, "_KERNEL", None)
    import mvgviz
    monkeypatch.delattr(mvgviz, "_histkernel", raising=False)
    monkeypatch.setitem(sys.modules, "mvgviz._histkernel", None)  # import fails as if numba were absent
    assert M._cpu_kernel() is None
    without = component_aurocs(y, masks, out_size=(112, 112))
    np.testing.assert_array_equal(without.auroc, with_kernel.auroc)
    np.testing.assert_array_equal(without.error_bound, with_kernel.error_bound)
