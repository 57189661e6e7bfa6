"""Tests for mvgviz.ranking: per-component AUROCs against scikit-learn, error bounds, the exact
recomputation of contenders, and the numba kernel against torch's upsampling."""

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from conftest import blob_masks
from mvgviz.metrics import upsample
from mvgviz.ranking import ComponentAUROC, component_aurocs, component_aurocs_streamed


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def upsampled_reference(y, c, size):
    return F.interpolate(y[:, c:c + 1] ** 2, size=size, mode="bilinear", align_corners=False).numpy().ravel()


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
    y = np.random.default_rng(h * w).standard_normal((3, 2, h, w)).astype(np.float32) * 3
    ref = upsample(torch.from_numpy(y[:, 1:2]).square(), (out_h, out_w))[:, 0].numpy()
    np.testing.assert_array_equal(kernel.upsample_component(y, 1, out_h, out_w), ref)


def _spy_kernel_ranking(monkeypatch):
    import mvgviz.ranking as R
    calls = []
    real = R._kernel_histograms
    monkeypatch.setattr(R, "_kernel_histograms", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_component_aurocs_kernel_and_torch_paths_rank_the_same_numbers(monkeypatch):
    pytest.importorskip("mvgviz._histkernel")
    import mvgviz.ranking as R
    y, masks = make_components(torch.float32, size=112)  # torch rounds outputs <= 64 wide another way
    calls = _spy_kernel_ranking(monkeypatch)
    fast = component_aurocs(y, masks, out_size=(112, 112))
    assert calls, "the numba kernel was not used for float32 on the CPU"
    assert np.count_nonzero(fast.error_bound > 0) >= 5  # the histograms were used
    monkeypatch.setattr(R, "_cpu_kernel", lambda: None)
    slow = component_aurocs(y, masks, out_size=(112, 112))
    assert len(calls) == 1
    # identical upsampled values and bins: identical histograms, estimates and bounds
    np.testing.assert_array_equal(fast.auroc, slow.auroc)
    np.testing.assert_array_equal(fast.error_bound, slow.error_bound)
    assert fast.n_exact == slow.n_exact


def test_component_aurocs_fall_back_to_torch_where_the_kernel_rounds_differently(monkeypatch):
    pytest.importorskip("mvgviz._histkernel")
    import mvgviz.ranking as R
    rng = np.random.default_rng(3)
    masks = torch.from_numpy(blob_masks(rng, 4, 37, 50, fraction=0.1, n_good=1))
    y = torch.from_numpy(rng.standard_normal((4, 3, 5, 9)).astype(np.float32))
    y[:, 0] += 3 * F.interpolate(masks[:, None].float(), size=(5, 9), mode="area")[:, 0]
    y_np = np.ascontiguousarray(y.numpy())
    assert not R._kernel_matches_torch(R._cpu_kernel(), y, y_np, (37, 50))  # torch's small-size path
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
    import mvgviz.ranking as R
    y, masks = make_components(torch.float32, size=112)
    with_kernel = component_aurocs(y, masks, out_size=(112, 112))
    monkeypatch.setattr(R, "_KERNEL", None)
    import mvgviz
    monkeypatch.delattr(mvgviz, "_histkernel", raising=False)
    monkeypatch.setitem(sys.modules, "mvgviz._histkernel", None)  # import fails as if numba were absent
    assert R._cpu_kernel() is None
    without = component_aurocs(y, masks, out_size=(112, 112))
    np.testing.assert_array_equal(without.auroc, with_kernel.auroc)
    np.testing.assert_array_equal(without.error_bound, with_kernel.error_bound)


def test_old_import_location_still_works():
    from mvgviz import metrics
    assert metrics.component_aurocs is component_aurocs and metrics.ComponentAUROC is ComponentAUROC
    with pytest.raises(AttributeError, match="no_such_name"):
        metrics.no_such_name


# --------------------------------------------------------------------------------------------------
# component_aurocs_streamed
# --------------------------------------------------------------------------------------------------
def streamed(y, masks, bounds):
    """chunks() yielding y[a:b], masks[a:b] for consecutive bounds (a, b)."""
    return lambda: ((y[a:b], masks[a:b]) for a, b in zip(bounds[:-1], bounds[1:]))


def assert_same_ranking(a, b):
    np.testing.assert_array_equal(a.auroc, b.auroc)
    np.testing.assert_array_equal(a.error_bound, b.error_bound)
    assert a.n_exact == b.n_exact


CHUNKINGS = [list(range(7)), [0, 2, 2, 5, 6], [0, 1, 6], [0, 4, 6]]  # 1 image each, uneven with an empty one


@pytest.mark.parametrize("dtype,size", [(torch.float32, 56), (torch.float32, 112), (torch.float64, 56)])
def test_streamed_ranking_does_not_depend_on_the_chunking(dtype, size):
    y, masks = make_components(dtype, size=size)  # float32 at 112: the numba kernel; else torch ops
    whole = component_aurocs(y, masks, out_size=(size, size))
    assert 1 <= whole.n_exact < 10  # both exact and histogram values are compared
    for bounds in CHUNKINGS:
        assert_same_ranking(component_aurocs_streamed(streamed(y, masks, bounds), out_size=(size, size)), whole)
    other = component_aurocs_streamed(streamed(y, masks, CHUNKINGS[1]), out_size=(size, size),
                                      chunk_components=3, batch_images=2)
    assert_same_ranking(other, whole)


@pytest.mark.parametrize("size", [56, 112])
def test_streamed_ranking_in_small_groups_with_a_thinned_floor_sample(monkeypatch, size):
    """Several groups of components (one pass each), a floor sample whose stride doubles while
    streaming, and exact recomputation in several groups give the same as one chunk."""
    import mvgviz.ranking as R
    y, masks = make_components(size=size)
    monkeypatch.setattr(R, "_FLOOR_SAMPLE", 40)  # 6*49 values per component: stride 4 in the end
    whole = component_aurocs(y, masks, out_size=(size, size), n_bins=256)
    monkeypatch.setattr(R, "_GROUP_HIST", {"cpu": 3 * 256, "cuda": 3 * 256})  # groups of 3 components
    monkeypatch.setattr(R, "_EXACT_VALUES", 1)  # one exactly recomputed component per group
    assert whole.n_exact >= 2
    for bounds in CHUNKINGS:
        assert_same_ranking(component_aurocs_streamed(streamed(y, masks, bounds), out_size=(size, size),
                                                      n_bins=256), whole)
    ref = np.array([roc_auc_score(masks.numpy().ravel(), upsampled_reference(y, c, (size, size))) for c in range(10)])
    assert np.all(np.abs(whole.auroc - ref) <= whole.error_bound + 1e-12)


def test_floor_sample_is_the_global_strided_sample():
    import mvgviz.ranking as R
    rng = np.random.default_rng(15)
    y2 = torch.from_numpy(rng.random((9, 3, 5, 7)))
    flat = y2.transpose(0, 1).reshape(3, -1)  # (3, 315)
    for f in (20, 40, 200):
        stride = next(s for s in (1, 2, 4, 8, 16) if -(-flat.shape[1] // s) <= 2 * f)
        for bounds in ([0, 9], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [0, 4, 4, 9]):
            s = R._FloorSample()
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(R, "_FLOOR_SAMPLE", f)
                for a, b in zip(bounds[:-1], bounds[1:]):
                    s.add(y2[a:b])
            assert s.stride == stride
            torch.testing.assert_close(torch.cat([p for _, p in s.pieces], 1), flat[:, ::stride], rtol=0, atol=0)
            torch.testing.assert_close(s.vmax, flat.amax(1), rtol=0, atol=0)


def test_streamed_ranking_estimates_within_their_bounds_on_random_data():
    rng = np.random.default_rng(16)
    for trial in range(3):
        n, c, h = int(rng.integers(3, 6)), int(rng.integers(2, 6)), int(rng.integers(3, 9))
        size = (int(rng.integers(20, 70)), int(rng.integers(20, 70)))
        masks = torch.from_numpy(rng.random((n, *size)) < rng.uniform(0.05, 0.5))
        masks[0, 0, 0], masks[0, 0, 1] = True, False
        y = torch.from_numpy(rng.standard_normal((n, c, h, h + 1)) * rng.uniform(0.1, 10, (1, c, 1, 1)))
        y = y.to(torch.float32 if trial % 2 else torch.float64)
        bounds = sorted({0, n, *rng.integers(0, n, 2).tolist()})
        res = component_aurocs_streamed(streamed(y, masks, bounds), out_size=size, n_bins=int(rng.integers(8, 300)))
        ref = np.array([roc_auc_score(masks.numpy().ravel(), upsampled_reference(y, k, size)) for k in range(c)])
        assert np.all(np.abs(res.auroc - ref) <= res.error_bound + 1e-12)
        assert np.all(res.error_bound <= 1e-3)


def test_streamed_ranking_errors():
    y, masks = make_components()
    size = (56, 56)
    with pytest.raises(ValueError, match="`chunks` must be a callable"):
        component_aurocs_streamed([(y, masks)], out_size=size)
    with pytest.raises(ValueError, match=r"chunk 1 of `chunks`: `masks` must be \(N, H, W\) = \(2, 56, 56\)"):
        component_aurocs_streamed(lambda: [(y[:2], masks[:2]), (y[2:4], masks[2:4, :50])], out_size=size)
    with pytest.raises(ValueError, match=r"chunk 1 of `chunks`: `y` must be \(n, 10, 7, 7\) torch.float32"):
        component_aurocs_streamed(lambda: [(y[:2], masks[:2]), (y[2:].double(), masks[2:])], out_size=size)
    with pytest.raises(ValueError, match=r"chunk 0 of `chunks`: must be a \(`y`, `masks`\) pair"):
        component_aurocs_streamed(lambda: [y], out_size=size)
    bad = y.clone()
    bad[3, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="chunk 1 of `chunks`: `y` contains NaN or infinite"):
        component_aurocs_streamed(streamed(bad, masks, [0, 3, 6]), out_size=size)
    with pytest.raises(ValueError, match="chunk 2 of `chunks`: `masks` must be binary"):
        component_aurocs_streamed(lambda: [(y[:2], masks[:2]), (y[2:2], masks[2:2]),
                                           (y[2:], masks[2:].to(torch.uint8) * 3)], out_size=size)
    with pytest.raises(ValueError, match="at least one image, got none"):
        component_aurocs_streamed(lambda: [], out_size=size)
    with pytest.raises(ValueError, match="masks.*both classes"):
        component_aurocs_streamed(streamed(y, masks & False, [0, 3, 6]), out_size=size)
    calls = []

    def shrinking():  # later calls yield one image fewer
        calls.append(1)
        return streamed(y, masks, [0, 3, 6] if len(calls) == 1 else [0, 3, 5])()
    with pytest.raises(ValueError, match="same images on every call: the first pass saw 6 images, a later one 5"):
        component_aurocs_streamed(shrinking, out_size=size)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_streamed_ranking_on_cuda_does_not_depend_on_the_chunking():
    y, masks = make_components()
    y, masks = y.cuda(), masks.cuda()
    whole = component_aurocs(y, masks, out_size=(56, 56))
    for bounds in CHUNKINGS:
        assert_same_ranking(component_aurocs_streamed(streamed(y, masks, bounds), out_size=(56, 56)), whole)
