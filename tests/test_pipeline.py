"""End to end on a tiny data set with the real (offline) EfficientNet-Lite0 weights."""

import multiprocessing as mp

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from mvgviz import pipeline
from mvgviz.cache import Store
from mvgviz.pipeline import fit

from conftest import unlabelled_copy, write_category

LAYERS = "_blocks[4],_blocks[10]"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_category(root, "widget", n_train=8, n_good=3, defects=("scratch", "hole"), n_defect=2, size=(64, 80))
    cache = tmp_path_factory.mktemp("cache")
    model = fit(root, "widget", layers=LAYERS, cache=cache, device="cpu")
    return root, cache, model


def test_report_schema_and_component_order(tiny):
    _, _, model = tiny
    rep = model.report()
    assert rep["category"] == "widget" and rep["backbone"] == "efficientnet_lite0"
    assert rep["weights"].startswith("imagenet:") and rep["image_size"] == 224
    assert [l["name"] for l in rep["layers"]] == ["_blocks[4]", "_blocks[10]"]
    for lay, (c, hw) in zip(rep["layers"], [(40, 28), (112, 14)]):
        assert lay["channels"] == c and lay["feature_size"] == [hw, hw]
        comps = lay["components"]
        assert [x["index"] for x in comps] == list(range(c))
        eig = [x["eigenvalue"] for x in comps]
        assert eig == sorted(eig)
        for k in ("image_auroc", "pixel_auroc", "pixel_aupr", "aupro"):
            assert 0.0 <= lay[k] <= 1.0


def test_report_carries_the_diagnostics(tiny):
    from mvgviz.diagnostics import component_diagnostics
    _, _, model = tiny
    rep = model.report()
    for lay, lm in zip(rep["layers"], model.layers.values()):
        assert lay["cell_pixels"] == 224 // lay["feature_size"][0]
        ref = component_diagnostics([lm.y("train")])  # recomputed from the cached Y
        np.testing.assert_allclose(lm.diagnostics.pattern_mean, ref.pattern_mean, rtol=1e-6)
        for c in (0, lm.channels - 1):
            comp = lay["components"][c]
            assert comp["border_score"] == pytest.approx(ref.border_score[c], rel=1e-9)
            assert comp["position_score"] == pytest.approx(ref.position_score[c], rel=1e-9)
            assert comp["train_p99"] == pytest.approx(lm.stats("train").per_component_p99[c])
        assert lay["non_gaussianity"] == pytest.approx(ref.non_gaussianity, rel=1e-9)


def test_layers_keep_their_curves(tiny):
    _, _, model = tiny
    for lm in model.layers.values():
        c = lm.curves
        assert set(c) == {"image_roc", "roc", "pr", "pro"}
        for name in ("image_roc", "roc"):
            x, y = np.array(c[name]["x"]), np.array(c[name]["y"])
            assert np.all(np.diff(x) >= 0) and (x[0], y[0], x[-1], y[-1]) == (0, 0, 1, 1)
        # thinned to at most 256 points: the area is close to the exact AUROC
        assert np.trapezoid(c["roc"]["y"], c["roc"]["x"]) == pytest.approx(lm.metrics["pixel_auroc"], abs=0.01)


def test_cached_arrays_are_consistent(tiny):
    _, _, model = tiny
    lm = model.layer("_blocks[10]")
    y = lm.y("train")
    m2 = lm.m2("train", upsampled=False)
    np.testing.assert_allclose(m2, (y.astype(np.float64) ** 2).sum(1), rtol=1e-5)
    rows = y.transpose(0, 2, 3, 1).reshape(-1, y.shape[1]).astype(np.float64)
    live = lm.eigvals > 0
    cov = np.cov(rows[:, live], rowvar=False)
    np.testing.assert_allclose(cov, np.eye(live.sum()), atol=1e-3)  # whitened train covariance = I
    assert np.all(rows[:, ~live] == 0)  # floored components are identically zero
    # partial reads equal full reads
    np.testing.assert_array_equal(lm.y("test", [2, 0], [5, 1]), lm.y("test")[[2, 0]][:, [5, 1]])


def test_metrics_against_sklearn(tiny):
    _, _, model = tiny
    masks = np.asarray(model.data.masks("test"))
    labels = model.data.labels("test")
    for lm in model.layers.values():
        up = lm.m2("test")  # OpenCV-upsampled
        assert lm.metrics["pixel_auroc"] == pytest.approx(roc_auc_score(masks.ravel(), up.ravel()), abs=1e-4)
        assert lm.metrics["pixel_aupr"] == pytest.approx(average_precision_score(masks.ravel(), up.ravel()), abs=1e-4)
        scores = up.reshape(len(up), -1).max(1)
        np.testing.assert_allclose(lm.image_scores(), scores, rtol=1e-4)
        assert lm.metrics["image_auroc"] == pytest.approx(roc_auc_score(labels, scores))
        for c in (0, lm.channels // 2, int(lm.ranking()[0])):
            ref = roc_auc_score(masks.ravel(), lm.y2("test", None, [c])[:, 0].ravel())
            assert abs(lm.component_auroc[c] - ref) <= max(lm.component_auroc_error[c], 1e-5) + 1e-6
            assert abs(lm.component_auroc[c] - ref) < 1e-3


def test_second_call_reads_the_cache(tiny):
    root, cache, model = tiny
    again = fit(root, "widget", layers=LAYERS, cache=cache)
    assert again.computed_layers == ()
    assert again.report() == model.report()


def test_batch_size_changes_nothing(tiny, tmp_path):
    root, _, model = tiny
    other = fit(root, "widget", layers="_blocks[4]", cache=tmp_path, batch_size=3)
    np.testing.assert_allclose(other.layer("_blocks[4]").y("test"), model.layer("_blocks[4]").y("test"),
                               rtol=1e-4, atol=1e-4)


def test_regulariser_is_part_of_the_key(tiny):
    root, cache, model = tiny
    ridge = fit(root, "widget", layers="_blocks[4]", cache=cache, reg="ridge:0.01")
    assert ridge.computed_layers == ("_blocks[4]",) and ridge.reg == "ridge:0.01"
    assert ridge.layer("_blocks[4]").eigvals[0] >= 0.01


def test_preprocessing_and_weights_are_part_of_the_key(tiny, tmp_path):
    from mvgviz.data import Preprocessing
    root, _, _ = tiny
    base = fit(root, "widget", layers="_blocks[15]", cache=tmp_path, device="cpu")
    assert base.computed_layers == ("_blocks[15]",)
    again = fit(root, "widget", layers="_blocks[15]", cache=tmp_path, device="cpu")
    assert again.computed_layers == ()  # same options: a hit
    other = fit(root, "widget", layers="_blocks[15]", cache=tmp_path, device="cpu",
                preprocessing=Preprocessing(resize=240, crop=224))
    assert other.computed_layers == ("_blocks[15]",)  # another preprocessing: a miss, refitted
    assert "decode" in other.timings and "backbone" in other.timings  # new images, new features
    assert other.layer("_blocks[15]").cache_key != base.layer("_blocks[15]").cache_key
    rand = fit(root, "widget", layers="_blocks[15]", cache=tmp_path, device="cpu", weights="random")
    assert rand.computed_layers == ("_blocks[15]",) and "backbone" in rand.timings
    assert "decode" not in rand.timings  # same images: the data entry is shared
    keys = {m.layer("_blocks[15]").cache_key for m in (base, other, rand)}
    assert len(keys) == 3


def test_random_weights_are_labelled(tiny, tmp_path):
    root, _, _ = tiny
    m = fit(root, "widget", layers="_blocks[4]", cache=tmp_path, weights="random")
    assert "RANDOM" in m.report()["weights"]


def test_interrupted_fit_leaves_no_valid_entry(tiny, tmp_path, monkeypatch):
    root, _, _ = tiny
    real = pipeline._fit_layer

    def dies_on_second(store, l, *a, **k):
        if l.name == "_blocks[10]":
            raise KeyboardInterrupt  # killed midway
        return real(store, l, *a, **k)

    monkeypatch.setattr(pipeline, "_fit_layer", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        fit(root, "widget", layers=LAYERS, cache=tmp_path)
    monkeypatch.setattr(pipeline, "_fit_layer", real)
    m = fit(root, "widget", layers=LAYERS, cache=tmp_path)
    assert m.computed_layers == ("_blocks[10]",)  # the finished layer was kept, the other recomputed


def _fit_in_process(args):
    root, cache = args
    m = fit(root, "widget", layers="_blocks[4]", cache=cache, device="cpu")
    return m.computed_layers, m.layer("_blocks[4]").component_auroc.tolist(), m.report()


def test_two_processes_fill_the_same_entry(tiny, tmp_path):
    root, _, _ = tiny
    with mp.get_context("spawn").Pool(2) as pool:
        a, b = pool.map(_fit_in_process, [(str(root), str(tmp_path))] * 2)
    assert sorted([a[0], b[0]]) == [(), ("_blocks[4]",)]  # computed once, read once
    assert a[1] == b[1] and a[2] == b[2]
    assert len([r for r in Store(tmp_path).ls() if r["kind"] == "layer"]) == 1


def test_bad_data_leaves_no_cache_entry(tmp_path):
    root = tmp_path / "d"
    write_category(root, "widget")
    p = root / "widget" / "test" / "scratch" / "001.png"
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"001\.png.*truncated"):
        fit(root, "widget", layers="_blocks[4]", cache=tmp_path / "c")
    assert Store(tmp_path / "c").ls() == []


def test_cuda_without_cuda_is_an_error(tiny, tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    root, _, _ = tiny
    with pytest.raises(ValueError, match=r"`device` 'cuda': CUDA is not available"):
        fit(root, "widget", layers="_blocks[4]", cache=tmp_path, device="cuda")


def test_displayed_maps_are_the_scored_maps(tiny):
    """One upsampling everywhere: the image scores (computed while fitting, from the maps the
    metrics use) are bit-identical to the maxima of the maps a viewer or an export reads."""
    _, _, model = tiny
    for lm in model.layers.values():
        shown = lm.m2("test")  # (N, S, S)
        assert shown.shape[1:] == (model.image_size, model.image_size)
        np.testing.assert_array_equal(shown.reshape(len(shown), -1).max(1).astype(np.float64), lm.image_scores())
        # the upsampled components sum to the upsampled M2 (bilinear is linear)
        np.testing.assert_allclose(lm.y2("test", [0]).sum(1, dtype=np.float64)[0], shown[0], rtol=1e-4, atol=1e-3)


def test_feature_pass_runs_once_per_backbone(tiny, tmp_path):
    """A second layer (or regulariser) reuses the cached feature maps: the backbone does not run again."""
    root, _, _ = tiny
    first = fit(root, "widget", layers="_blocks[4]", cache=tmp_path, device="cpu")
    assert "backbone" in first.timings
    second = fit(root, "widget", layers="_blocks[10]", reg="ridge:0.01", cache=tmp_path, device="cpu")
    assert second.computed_layers == ("_blocks[10]",)
    assert "backbone" not in second.timings and "decode" not in second.timings
    kinds = sorted(r["kind"] for r in Store(tmp_path).ls())
    assert kinds == ["data", "features", "layer", "layer"]


def test_float16_storage_is_a_separate_entry_close_to_float32(tiny, tmp_path):
    root, _, model = tiny
    half = fit(root, "widget", layers="_blocks[10]", storage="float16", cache=tmp_path, device="cpu")
    full = model.layer("_blocks[10]")
    lm = half.layer("_blocks[10]")
    assert half.storage == "float16" and half.report()["storage"] == "float16"
    from mvgviz.results import Names
    assert lm.entry.array(Names.components("test")).dtype == np.float16  # stored in half precision
    assert lm.y("test").dtype == np.float32  # read as float32
    # features rounded to 11 bits move the fitted Gaussian a little (most in its smallest-variance
    # components), so Y agrees closely overall but not to float16 precision everywhere
    assert np.corrcoef(lm.y("test").ravel(), full.y("test").ravel())[0, 1] > 0.999
    for k, v in full.metrics.items():
        assert abs(lm.metrics[k] - v) < 0.02, k
    with pytest.raises(ValueError, match=r"`storage` must be one of float32, float16, got 'int8'"):
        fit(root, "widget", layers="_blocks[10]", storage="int8", cache=tmp_path, device="cpu")


def test_load_reads_the_cache_without_computing_or_importing_torch(tiny, tmp_path):
    import subprocess
    import sys
    root, cache, model = tiny
    assert pipeline.load(root, "widget", layers=LAYERS, cache=tmp_path / "empty") is None
    assert pipeline.load(root, "widget", layers="_blocks[2]", cache=cache) is None  # a layer not fitted
    m = pipeline.load(root, "widget", layers=LAYERS, cache=cache)
    assert m.report() == model.report()
    code = ("import sys; from mvgviz.pipeline import load; "
            f"m = load({str(root)!r}, 'widget', layers={LAYERS!r}, cache={str(cache)!r}); "
            "print(m is not None, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "False"]


@pytest.mark.parametrize("keep_defect_folders", [True, False])
def test_unlabelled_data_fits_with_metrics_not_available(tiny, tmp_path, keep_defect_folders, capsys):
    from mvgviz.cli import main
    from mvgviz.data import MissingLabels
    root = unlabelled_copy(tiny[0], tmp_path / "data", keep_defect_folders=keep_defect_folders)
    with pytest.raises(MissingLabels):
        fit(root, "widget", layers="_blocks[10]", cache=tmp_path / "c", device="cpu")
    assert main(["report", "--data", str(root), "--category", "widget", "--layers", "_blocks[10]",
                 "--cache", str(tmp_path / "c"), "--quiet"]) == 2
    assert "add --unlabelled" in capsys.readouterr().err
    model = fit(root, "widget", layers="_blocks[10]", cache=tmp_path / "c", device="cpu", unlabelled=True)
    lm = model.layer("_blocks[10]")
    assert lm.metrics["pixel_auroc"] is None and lm.metrics["aupro"] is None and lm.metrics_note
    assert not lm.has_ranking
    with pytest.raises(ValueError, match="no component ranking"):
        lm.ranking()
    if keep_defect_folders:  # image labels from the folders: the image AUROC is defined
        labelled = tiny[2].layer("_blocks[10]")
        assert lm.metrics["image_auroc"] == pytest.approx(labelled.metrics["image_auroc"], abs=1e-12)
        assert "no mask" in lm.metrics_note
    else:
        assert lm.metrics["image_auroc"] is None
    # the diagnostics read the train split only: removing the test labels changes none of them
    labelled = tiny[2].layer("_blocks[10]").diagnostics
    np.testing.assert_array_equal(lm.diagnostics.pattern_mean, labelled.pattern_mean)
    np.testing.assert_array_equal(lm.diagnostics.border_score, labelled.border_score)
    np.testing.assert_array_equal(lm.diagnostics.position_score, labelled.position_score)
    from mvgviz.variants import select  # and so do the train-only subset rules
    for rule in ("drop_border:3", "drop_position:3", "npca:5"):
        np.testing.assert_array_equal(select(lm, rule), select(tiny[2].layer("_blocks[10]"), rule))
    # everything that needs no labels works: maps, statistics, the JSON report, the CLI table
    assert lm.m2("test").shape[0] == model.data.n_images("test")
    assert lm.stats("test").m2_p99 > 0
    rep = model.report()
    assert rep["labels"]["pixel"] is False and rep["layers"][0]["components"][0]["auroc"] is None
    assert main(["report", "--data", str(root), "--category", "widget", "--layers", "_blocks[10]",
                 "--cache", str(tmp_path / "c"), "--quiet", "--unlabelled"]) == 0
    out = capsys.readouterr().out
    assert "n/a" in out and "n/a (needs masks)" in out


@pytest.mark.parametrize("kind", ["batch_size 0", "bad weights file", "masks all empty", "preprocessing not a Preprocessing"])
def test_fit_checks_everything_before_any_work(kind, tmp_path, monkeypatch):
    """Issue 9, item 8: each bad input fails before an image is decoded; the cache stays empty."""
    import cv2
    import torch
    import mvgviz.data
    from mvgviz.conventions import ParamError
    from mvgviz.data import DataError, MissingLabels
    root = tmp_path / "data"
    cat = write_category(root, "widget", n_train=3, n_good=1, n_defect=2)
    kw, err, pattern = {}, ParamError, None
    if kind == "batch_size 0":
        kw, pattern = {"batch_size": 0}, r"`batch_size` must be a positive integer, got 0"
    elif kind == "bad weights file":
        torch.save(torch.zeros(3), tmp_path / "w.pth")
        kw, pattern = {"weights": str(tmp_path / "w.pth")}, r"`weights`: .* it holds a tensor, not a state dict"
    elif kind == "masks all empty":
        for m in (cat / "ground_truth").rglob("*_mask.png"):
            cv2.imwrite(str(m), np.zeros((40, 48), np.uint8))
        err, pattern = MissingLabels, r"masks in '.*widget/ground_truth' \(ground_truth/scratch\) are all empty"
    else:
        kw, pattern = {"preprocessing": {"std": (1, 1, 1)}}, r"`preprocessing` must be a mvgviz\.data\.Preprocessing"
    monkeypatch.setattr(mvgviz.data, "read_image", lambda *a: pytest.fail(f"{kind}: decoded an image"))
    with pytest.raises(err, match=pattern):
        fit(root, "widget", layers="_blocks[4]", cache=tmp_path / "cache", device="cpu", **kw)
    assert Store(tmp_path / "cache").ls() == [] and not list((tmp_path / "cache" / "entries").glob("*"))
    assert issubclass(MissingLabels, DataError)
