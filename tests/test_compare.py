"""Methods compared on one pipeline (mvgviz.compare, pipeline.fit_method, `mvgviz compare`)."""

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mvgviz.cli import main
from mvgviz.compare import compare, compare_category
from mvgviz.conventions import ParamError
from mvgviz.data import Preprocessing
from mvgviz.models import parse_methods
from mvgviz.pipeline import fit, fit_method, load_method

from conftest import unlabelled_copy, write_category

PRE = Preprocessing(resize=96, crop=96)  # small inputs: fast, every layer still >= 3x3
KEYS = {"name", "options", "image_auroc", "pixel_auroc", "pixel_aupr", "aupro", "fit_seconds", "predict_seconds",
        "peak_memory_mb", "label", "metrics_note", "cached"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_category(root, "widget", n_train=8, n_good=3, defects=("scratch", "hole"), n_defect=2, size=(64, 80))
    write_category(root, "gadget", n_train=6, n_good=2, defects=("dent",), n_defect=3, size=(64, 64), seed=3)
    return root, tmp_path_factory.mktemp("cache")


def _fm(data, method, **kw):
    root, cache = data
    return fit_method(root, "widget", method, cache=cache, preprocessing=PRE, device="cpu", **kw)


@pytest.mark.parametrize("method,options", [("padim", {}), ("spade", {"k": 4}), ("mvg-sum", {}),
                                            ("mvg-concat", {}), ("opca", {})])
def test_metrics_are_sklearns_on_the_maps_shown(data, method, options):
    r = _fm(data, method, options=options)
    labels = r.data.labels("test")
    assert r.metrics["image_auroc"] == pytest.approx(roc_auc_score(labels, r.image_scores("test")), abs=1e-12)
    maps, masks = r.maps("test"), r.data.masks("test")
    assert maps.shape == masks.shape
    assert r.metrics["pixel_auroc"] == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-9)
    cost = r.cost
    assert cost["fit_seconds"] > 0 and cost["predict_seconds"] > 0 and cost["peak_memory_mb"] > 50


def test_image_level_gaussians_store_their_explanation(data):
    r = _fm(data, "gaussian-ad")
    assert not r.has_maps and r.metrics["pixel_auroc"] is None and "no pixel maps" in r.metrics_note
    labels = r.data.labels("test")
    assert r.metrics["image_auroc"] == pytest.approx(roc_auc_score(labels, r.image_scores("test")), abs=1e-12)
    groups = r.component_groups
    assert [g for g, _ in groups] == ["_blocks[2]", "_blocks[4]", "_blocks[10]", "_blocks[15]"]
    y = r.image_components("test").astype(np.float64)
    assert y.shape == (len(labels), sum(n for _, n in groups))
    # the score is the sum over levels of the distances: the root of each group's sum of squares
    ends = np.cumsum([0] + [n for _, n in groups])
    dist = sum(np.sqrt((y[:, a:b] ** 2).sum(1)) for a, b in zip(ends[:-1], ends[1:]))
    np.testing.assert_allclose(dist, r.image_scores("test"), rtol=1e-4)
    with pytest.raises(ValueError, match="no pixel maps"):
        r.maps("test")


def test_second_call_reads_the_cache_and_options_are_part_of_the_key(data):
    a = _fm(data, "padim", options={"channels": 20})
    b = _fm(data, "padim", options={"channels": 20})
    c = _fm(data, "padim", options={"channels": 21})
    assert not b.computed and b.cache_key == a.cache_key and c.cache_key != a.cache_key
    assert b.summary()["cached"] and b.summary()["image_auroc"] == a.summary()["image_auroc"]
    root, cache = data
    again = load_method(root, "widget", "padim", options={"channels": 20}, cache=cache, preprocessing=PRE)
    assert again is not None and again.cache_key == a.cache_key
    assert load_method(root, "widget", "padim", options={"channels": 19}, cache=cache, preprocessing=PRE) is None


def test_the_papers_gaussian_shares_fits_entry(data):
    root, cache = data
    r = _fm(data, "mvg", options={"layer": "_blocks[4]"})
    model = fit(root, "widget", layers="_blocks[4]", cache=cache, preprocessing=PRE, device="cpu")
    assert r.cache_key == model.layers["_blocks[4]"].cache_key
    assert r.metrics == model.layers["_blocks[4]"].metrics


def test_a_method_that_cannot_run_says_why_and_the_others_run(data):
    root, cache = data
    out = compare_category(root, "widget", "mvg,spade:k=9,padim,spade", cache=cache, preprocessing=PRE,
                           device="cpu")
    assert [m["name"] for m in out["methods"]] == ["mvg", "spade", "padim", "spade"]
    spade = out["methods"][1]
    assert spade["image_auroc"] is None and "option k" in spade["error"] and "train split has 8" in spade["error"]
    for m in out["methods"][0], out["methods"][2], out["methods"][3]:
        assert KEYS <= set(m) and 0 <= m["image_auroc"] <= 1 and "error" not in m
    # SPADE's default K: the seeds' 50, capped at the 8 train images, and says so
    sp = out["methods"][3]
    assert sp["options"]["k"] == 8 and sp["resolved_options"] == {"k": 8} and sp["label"] == "spade"
    with pytest.raises(ParamError) as e:
        _fm(data, "spade", options={"k": 9})
    assert e.value.param == "k"
    with pytest.raises(ParamError, match="unknown method 'nope'"):
        compare_category(root, "widget", "nope", cache=cache, preprocessing=PRE, device="cpu")


def test_batch_form_covers_every_category_with_means(data):
    root, cache = data
    out = compare(root, methods="padim:channels=20,mvg-concat", cache=cache, preprocessing=PRE, device="cpu")
    assert [c["category"] for c in out["categories"]] == ["gadget", "widget"]
    for label in ("padim(channels=20)", "mvg-concat"):
        vals = [m["pixel_auroc"] for c in out["categories"] for m in c["methods"] if m["label"] == label]
        assert len(vals) == 2 and out["mean"][label]["pixel_auroc"] == pytest.approx(np.mean(vals))
        assert out["mean"][label]["n_categories"] == 2


def test_cli_json_schema_and_errors(data, capsys):
    root, cache = data
    args = ["compare", "--data", str(root), "--category", "widget", "--cache", str(cache), "--resize", "96",
            "--crop", "96", "--device", "cpu", "--quiet", "--json"]
    assert main(args + ["--methods", "padim:channels=20,mvg"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"category", "backbone", "methods"} and out["category"] == "widget"
    assert [m["name"] for m in out["methods"]] == ["padim", "mvg"] and all(KEYS <= set(m) for m in out["methods"])
    assert out["methods"][0]["options"]["channels"] == 20 and out["methods"][0]["cached"]
    assert main(args + ["--methods", "padim:chanels=3"]) == 2
    assert "--methods: method 'padim' has no option 'chanels'" in capsys.readouterr().err
    assert main(args + ["--methods", "spade:k=50"]) == 2
    err = capsys.readouterr().err
    assert "spade: option k must be at most" in err and "Traceback" not in err


def test_option_errors_say_the_method_and_option(data):
    root, cache = data
    for methods, words in (("padim:seed=1.5", "padim: option seed must be an integer"),
                           ("spade:kappa=60", "spade: option kappa must be at most K = 50"),
                           ("padim:layers=_blocks[2]+_blocks[2]", "padim: option layers names a layer twice"),
                           ("gaussian-ad:layers=3", "gaussian-ad: option layers")):
        with pytest.raises(ParamError, match=words.replace("[", r"\[")) as e:
            compare_category(root, "widget", methods, cache=cache, preprocessing=PRE, device="cpu")
        assert e.value.param == "methods"


def test_parse_methods_grammar():
    assert parse_methods("mvg, padim:channels=50:seed=1,spade:k=20:sigma=2.5,mvg-concat:layers=a+b") == [
        ("mvg", {}), ("padim", {"channels": 50, "seed": 1}), ("spade", {"k": 20, "sigma": 2.5}),
        ("mvg-concat", {"layers": "a+b"})]
    # a value holding ':' (the ridge regulariser); names stay text even when they read as numbers
    assert parse_methods("mvg:reg=ridge:0.1:layer=3,padim:eps=1e-3") == [
        ("mvg", {"reg": "ridge:0.1", "layer": "3"}), ("padim", {"eps": 0.001})]
    with pytest.raises(ParamError, match="key=value"):
        parse_methods("padim:channels")
    with pytest.raises(ParamError, match="at least one method"):
        parse_methods(" , ")


def test_unlabelled_data_runs_methods_with_maps_and_refuses_image_only_ones(data, tmp_path):
    root, _ = data
    bare = unlabelled_copy(root, tmp_path / "bare", keep_defect_folders=False)
    out = compare_category(bare, "widget", "padim,gaussian-ad", cache=tmp_path / "c", preprocessing=PRE,
                           device="cpu", unlabelled=True)
    padim, gad = out["methods"]
    assert padim["image_auroc"] is None and padim["pixel_auroc"] is None and padim["metrics_note"]
    assert padim["fit_seconds"] > 0 and "error" not in padim
    assert "has no pixel maps" in gad["error"] and "no labels" in gad["error"]
    # image labels from the defect folders (no masks): the image-level method has something to evaluate
    folders = unlabelled_copy(root, tmp_path / "folders", keep_defect_folders=True)
    r = fit_method(folders, "widget", "gaussian-ad", cache=tmp_path / "c", preprocessing=PRE, device="cpu",
                   unlabelled=True)
    assert 0 <= r.metrics["image_auroc"] <= 1 and r.metrics["pixel_auroc"] is None
