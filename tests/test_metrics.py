"""Tests for mvgviz.metrics: agreement with scikit-learn, a brute-force AUPRO and OpenCV resizing."""

import cv2
import numpy as np
import pytest
import torch
from scipy import ndimage
from sklearn.metrics import average_precision_score, roc_auc_score

from conftest import blob_masks
from mvgviz.metrics import aupro, auroc, average_precision, image_auroc, pixel_metrics, pixel_metrics_streamed, upsample


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
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
# upsample
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


# --------------------------------------------------------------------------------------------------
# pixel_metrics_streamed
# --------------------------------------------------------------------------------------------------
def chunked(maps, masks, bounds, *, kind="numpy"):
    """chunks() yielding maps[a:b], masks[a:b] for consecutive bounds (a, b)."""
    conv = torch.from_numpy if kind == "torch" else (lambda a: a)
    return lambda: ((conv(maps[a:b]), conv(masks[a:b])) for a, b in zip(bounds[:-1], bounds[1:]))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("ties", [True, False])
def test_pixel_metrics_streamed_equal_the_one_array_version_exactly(dtype, ties):
    rng = np.random.default_rng(12)
    n, h, w = 7, 16, 16
    masks = blob_masks(rng, n, h, w, fraction=0.3, n_good=2, sigma=1.5)
    if ties:  # a handful of levels: ties within and across images and classes
        maps = rng.integers(0, 6, masks.shape) + 2 * masks * rng.integers(0, 2, masks.shape)
    else:
        maps = rng.standard_normal(masks.shape) + 1.2 * masks
    maps = maps.astype(dtype)
    ref = pixel_metrics(maps, masks, fpr_limit=0.2)
    assert ref["pixel_auroc"] == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-12)
    if not ties:  # more distinct anomalous scores than pixels in an image: both counting branches run
        assert np.unique(maps[masks]).size > h * w
    for bounds in ([0, n], list(range(n + 1)), [0, 3, 4, 4, 7], [0, 1, 6, 7], [0, 5, 7]):
        for kind in ("numpy", "torch"):
            got = pixel_metrics_streamed(chunked(maps, masks, bounds, kind=kind), fpr_limit=0.2)
            assert got == ref, (bounds, kind)  # the same floats, not approximately


def test_pixel_metrics_streamed_with_mixed_dtypes_and_list_chunks():
    rng = np.random.default_rng(13)
    masks = blob_masks(rng, 4, 12, 12, fraction=0.2)
    maps = (rng.standard_normal(masks.shape) + masks).astype(np.float32)
    ref = pixel_metrics(maps, masks)
    # float32 values are exact in float64: a chunk promoted to float64 changes nothing
    parts = [(maps[:2], masks[:2]), [maps[2:].astype(np.float64), masks[2:].astype(np.uint8)]]
    assert pixel_metrics_streamed(lambda: iter(parts)) == ref


def test_pixel_metrics_streamed_memory_does_not_follow_the_number_of_images():
    import tracemalloc
    h = w = 64

    def chunks(n_images):
        def gen():
            for i in range(n_images):
                rng = np.random.default_rng(i)
                m = np.zeros((1, h, w), bool)
                m[0, 10:14, 20:26] = i % 2 == 0  # 24 anomalous pixels in every other image
                yield rng.standard_normal((1, h, w)) + m, m
        return gen

    peaks = []
    for n_images in (10, 80):
        tracemalloc.start()
        pixel_metrics_streamed(chunks(n_images))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 80 * h * w * 8 / 4  # far less than the split's maps
    # 70 more images add their anomalous pixels (O(positives)), not their maps
    assert peaks[1] - peaks[0] < 0.1 * 70 * h * w * 8


def test_pixel_metrics_streamed_errors():
    rng = np.random.default_rng(14)
    masks = blob_masks(rng, 3, 8, 8, fraction=0.2)
    maps = rng.standard_normal(masks.shape)
    with pytest.raises(ValueError, match="`chunks` must be a callable.*got list"):
        pixel_metrics_streamed([(maps, masks)])
    with pytest.raises(ValueError, match=r"chunk 0 of `chunks`: must be a \(`scores`, `masks`\) pair"):
        pixel_metrics_streamed(lambda: [maps])
    with pytest.raises(ValueError, match="fpr_limit.*got 0"):
        pixel_metrics_streamed(chunked(maps, masks, [0, 3]), fpr_limit=0)
    with pytest.raises(ValueError, match="no anomalous region"):
        pixel_metrics_streamed(chunked(maps, np.zeros_like(masks), [0, 1, 3]))
    with pytest.raises(ValueError, match="no anomaly-free"):
        pixel_metrics_streamed(chunked(maps, np.ones_like(masks), [0, 1, 3]))
    with pytest.raises(ValueError, match="`scores` must contain at least one image"):
        pixel_metrics_streamed(lambda: [])
    bad = maps.copy()
    bad[2, 0, 0] = np.nan
    with pytest.raises(ValueError, match="chunk 1 of `chunks`: `scores` contains NaN"):
        pixel_metrics_streamed(chunked(bad, masks, [0, 2, 3]))
    with pytest.raises(ValueError, match=r"chunk 1 of `chunks`: `masks` must have the shape of `scores` \(1, 8, 8\)"):
        pixel_metrics_streamed(lambda: [(maps[:2], masks[:2]), (maps[2:], masks[2:, :4])])
    with pytest.raises(ValueError, match=r"chunk 0 of `chunks`: `scores` must be \(N, H, W\)"):
        pixel_metrics_streamed(lambda: [(maps[0], masks[0])])
    with pytest.raises(ValueError, match="chunk 0 of `chunks`: `masks` must be binary"):
        pixel_metrics_streamed(lambda: [(maps, masks * 2)])
    calls = []

    def shrinking():  # the second call yields one image fewer
        calls.append(1)
        return chunked(maps, masks, [0, 3] if len(calls) == 1 else [0, 2])()
    with pytest.raises(ValueError, match="same scores on every call.*192 scores, the second 128"):
        pixel_metrics_streamed(shrinking)


def test_curves_reproduce_the_exact_metrics():
    """Unthinned, the returned curves integrate to the exact metrics (ties included)."""
    from mvgviz.metrics import _integrate_to, pixel_metrics_streamed
    rng = np.random.default_rng(5)
    s = rng.integers(0, 20, (3, 9, 11)).astype(np.float32)  # many ties
    m = np.zeros((3, 9, 11), bool)
    m[0, 2:5, 3:6] = m[2, 6:8, 1:9] = True
    s[m] += 4
    out = pixel_metrics_streamed(lambda: [(s, m)], curves=10**9)
    roc, pr, pro = (out["curves"][k] for k in ("roc", "pr", "pro"))
    assert (roc["x"][0], roc["y"][0], roc["x"][-1], roc["y"][-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.trapezoid(roc["y"], roc["x"]) == pytest.approx(roc_auc_score(m.ravel(), s.ravel()), abs=1e-12)
    assert _integrate_to(np.array(pro["x"]), np.array(pro["y"]), 0.3) == pytest.approx(out["aupro"], abs=1e-12)
    # step-wise AP from the PR points: sum of recall steps times precision
    r, p = np.array(pr["x"]), np.array(pr["y"])
    assert np.sum(np.diff(np.concatenate([[0.0], r])) * p) == pytest.approx(out["pixel_aupr"], abs=1e-12)
    thin = pixel_metrics_streamed(lambda: [(s, m)], curves=5)["curves"]
    assert all(len(c["x"]) <= 5 for c in thin.values())
    assert "curves" not in pixel_metrics_streamed(lambda: [(s, m)])


def test_image_roc_curve_area_is_the_auroc():
    from mvgviz.evaluation import evaluate, image_roc_curve
    rng = np.random.default_rng(6)
    s = rng.integers(0, 6, 40).astype(float)
    lab = (rng.random(40) < 0.4).astype(int)
    c = image_roc_curve(s, lab, 10**9)
    assert np.trapezoid(c["y"], c["x"]) == pytest.approx(roc_auc_score(lab, s), abs=1e-12)
    assert evaluate(s, lab, curves=50)["curves"]["image_roc"]["x"][-1] == 1.0


def test_score_histograms_and_ranked_images():
    from mvgviz.evaluation import ranked_images, score_histograms
    s = np.array([1.0, 50.0, 3.0, 400.0, 3.0])
    types = ["good", "crack", "good", "hole", "crack"]
    h = score_histograms(s, types, bins=4)
    assert list(h["counts"]) == ["good", "crack", "hole"]  # good first
    assert sum(map(sum, h["counts"].values())) == 5 and h["edges"][0] == 1.0 and h["edges"][-1] == 400.0
    assert np.allclose(np.diff(np.log(h["edges"])), np.log(400) / 4)  # log-spaced over 2.6 decades
    assert h["counts"]["good"] == np.histogram([1.0, 3.0], bins=h["edges"])[0].tolist()
    r = ranked_images(s, types)
    assert [x["image"] for x in r] == [3, 1, 2, 4, 0] and r[0]["defect"] == "hole" and r[0]["rank"] == 1
    with pytest.raises(ValueError, match="one entry per score"):
        score_histograms(s, types[:2])


def test_evaluate_takes_image_scores_from_the_maps_without_an_extra_pass():
    """image_scores=None: the maxima of the maps, recorded during the pixel metrics' first pass."""
    from mvgviz.evaluation import evaluate
    rng = np.random.default_rng(7)
    maps = rng.random((6, 8, 8)).astype(np.float32)
    masks = np.zeros((6, 8, 8), bool)
    masks[3:, 2:5, 2:5] = True
    maps[masks] += 0.3
    labels = np.array([0, 0, 0, 1, 1, 1])
    calls = []

    def chunks():
        calls.append(1)
        return [(maps[i:i + 2], masks[i:i + 2]) for i in range(0, 6, 2)]

    got = evaluate(None, labels, pixel_chunks=chunks)
    ref = evaluate(maps.reshape(6, -1).max(1), labels, pixel_chunks=lambda: [(maps, masks)])
    assert got == ref and len(calls) == 2  # the pixel metrics' two passes, no third
    calls.clear()
    no_masks = evaluate(None, labels, pixel_chunks=chunks, pixel_labels=False, note="no masks here")
    assert no_masks["image_auroc"] == ref["image_auroc"] and no_masks["pixel_auroc"] is None
    assert no_masks["note"] == "no masks here" and len(calls) == 1
    with pytest.raises(ValueError, match="`image_scores` is needed"):
        evaluate(None, labels)
