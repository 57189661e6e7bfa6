"""Component-subset models (mvgviz.variants): selection rules and their metrics."""

import numpy as np
import pytest

from mvgviz.conventions import ParamError
from mvgviz.variants import evaluate_subset, select, variants


@pytest.fixture(scope="module")
def layer(demo_model):
    return demo_model.layer("_blocks[10]")


def test_all_components_reproduce_the_full_model(demo_model, layer):
    m = evaluate_subset(demo_model, layer, np.arange(layer.channels))
    for k, v in layer.metrics.items():  # M2 re-summed from the stored float32 Y: float rounding only
        assert m[k] == pytest.approx(v, abs=1e-6), k


def test_rules_select_what_they_say(layer):
    c = layer.channels
    d = layer.diagnostics
    kept = select(layer, "drop_border:5")
    dropped = np.setdiff1d(np.arange(c), kept)
    assert kept.size == c - 5 and np.all(np.nan_to_num(d.border_score[dropped], nan=-1) >=
                                         np.nan_to_num(d.border_score[kept], nan=-1).max())
    kept = select(layer, "drop_position:3")
    assert kept.size == c - 3
    w = np.clip(layer.eigvals, 0, None)
    kept = select(layer, "npca:5")
    assert np.array_equal(kept, np.arange(kept.size))  # the smallest-variance components
    assert w[kept].sum() <= 0.05 * w.sum() < w[: kept.size + 1].sum()
    assert np.array_equal(np.sort(layer.ranking()[:4]), select(layer, "oracle_best:4"))


def test_bad_rules_name_the_parameter(layer):
    for rule, msg in (("drop_edges:3", "must be one of"), ("npca:0", r"P in \(0, 100\]"),
                      ("drop_border:x", "needs a number"), (f"drop_border:{layer.channels}", "integer N in")):
        with pytest.raises(ParamError, match=msg) as e:
            select(layer, rule)
        assert e.value.param == "subset"


def test_variants_rows_label_the_oracle(demo_model, layer):
    rows = variants(demo_model, layer, ["drop_border:2", "oracle_best:3"])
    assert [r["rule"] for r in rows] == ["full", "drop_border:2", "oracle_best:3"]
    assert [r["oracle"] for r in rows] == [False, False, True]
    assert rows[2]["n_components"] == 3
    for r in rows:
        assert all(0 <= r[k] <= 1 for k in ("image_auroc", "pixel_auroc", "pixel_aupr", "aupro"))


def test_cli_report_variants(demo_root, demo_cache, capsys):
    import json

    from mvgviz.cli import main
    assert main(["report", "--data", str(demo_root), "--category", "brick", "--layers", "_blocks[10]",
                 "--cache", str(demo_cache), "--device", "cpu", "--quiet", "--json",
                 "--subset", "npca:5", "--subset", "drop_border:2"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert [v["rule"] for v in rep["layers"][0]["variants"]] == ["full", "npca:5", "drop_border:2"]
    assert main(["report", "--data", str(demo_root), "--category", "brick", "--layers", "_blocks[10]",
                 "--cache", str(demo_cache), "--device", "cpu", "--quiet", "--subset", "bogus:1"]) == 2
    assert "--subset must be one of" in capsys.readouterr().err


def test_variant_curves_match_their_metrics(demo_model, layer):
    from sklearn.metrics import auc
    rows = variants(demo_model, layer, ["npca:5"], curves=True)
    full, sub = rows
    assert full["curves"] == layer.curves
    for r in rows:
        c = r["curves"]
        assert set(c) >= {"image_roc", "roc", "pr", "pro"}
        # the thinned ROC curve integrates to the exact AUROC (within the thinning's error)
        assert auc(c["roc"]["x"], c["roc"]["y"]) == pytest.approx(r["pixel_auroc"], abs=2e-3)
        assert auc(c["image_roc"]["x"], c["image_roc"]["y"]) == pytest.approx(r["image_auroc"], abs=1e-9)
    assert sub["curves"]["roc"] != full["curves"]["roc"]


# ---------------------------------------------------------------------------------------
# A subset model as the displays show it: M2_S, its colour scale, its name
# ---------------------------------------------------------------------------------------

def test_m2_subset_of_all_components_is_m2(layer):
    images = [0, 3, 7]
    for split in ("test", "train"):
        every = layer.m2_subset(split, np.arange(layer.channels), images)
        assert every.shape == (3, 224, 224) and every.dtype == np.float32
        # M2 is stored from float64 Y, M2_S re-summed from the stored float32 Y: rounding only
        np.testing.assert_allclose(every, layer.m2(split, images), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(layer.m2_subset(split, np.arange(layer.channels), images, upsampled=False),
                                   layer.m2(split, images, upsampled=False), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rule", ["drop_border:5", "npca:5", "oracle_best:3"])
def test_m2_subset_is_the_sum_of_the_chosen_upsampled_y2(layer, rule):
    comps = select(layer, rule)
    images = [1, 7]
    for split in ("test", "train"):
        y2 = layer.y2(split, images, comps)                      # (2, k, 224, 224) as the grid shows them
        m2s = layer.m2_subset(split, comps, images)
        # bilinear upsampling is linear: the sum of the upsampled maps is the upsampled sum
        np.testing.assert_allclose(m2s, y2.sum(1, dtype=np.float64), rtol=1e-5, atol=1e-5)
        # at feature resolution: exactly the sum the metrics stream (evaluate_subset)
        low = layer.y2(split, images, comps, upsampled=False)
        np.testing.assert_array_equal(layer.m2_subset(split, comps, images, upsampled=False),
                                      low.sum(1, dtype=np.float64).astype(np.float32))
        assert not np.allclose(m2s, layer.m2(split, images))    # a subset is another model
    chunks = np.concatenate(list(layer.subset_chunks("test", comps, batch_size=5)))
    np.testing.assert_array_equal(chunks, layer.m2_subset("test", comps, upsampled=False))


@pytest.mark.parametrize("split", ["test", "train"])
def test_m2_subset_p99_is_the_percentile_of_all_m2_s(demo_model, split):
    lm = demo_model.layer("_blocks[10]")
    lm.__dict__.pop("_subset_p99", None)                         # a fresh in-memory cache
    for rule in ("drop_position:7", "npca:5"):
        comps = select(lm, rule)
        every = lm.m2_subset(split, comps, upsampled=False)     # (N, 14, 14): every M2_S value of the split
        assert lm.m2_subset_p99(split, comps) == np.percentile(every, 99)
    # over all components: the full model's m2_p99 (up to the rounding of the stored Y)
    assert lm.m2_subset_p99(split, np.arange(lm.channels)) == pytest.approx(lm.stats(split).m2_p99, rel=1e-5)
    # computed once per (split, subset): a second call streams nothing
    lm.__dict__["subset_chunks"] = lambda *a, **k: (_ for _ in ()).throw(AssertionError("streamed again"))
    try:
        assert lm.m2_subset_p99(split, select(lm, "npca:5")) == pytest.approx(
            np.percentile(lm.m2_subset(split, select(lm, "npca:5"), upsampled=False), 99))
    finally:
        del lm.__dict__["subset_chunks"]


def test_subset_of_names_the_model(layer):
    from mvgviz.variants import Subset, canonical_rule, subset_of
    assert subset_of(layer, None) is None and subset_of(layer, " ") is None
    s = subset_of(layer, " NPCA: 5 ")
    assert isinstance(s, Subset) and s.rule == "npca:5" == canonical_rule("NPCA: 5")
    assert s.components == tuple(select(layer, "npca:5")) and not s.oracle
    assert s.label == "M2 [npca:5]"
    assert s.description == f"npca:5 keeps {len(s.components)} of {layer.channels} components (train-only rule)"
    o = subset_of(layer, "oracle_best:3")
    assert o.oracle and "oracle: reads test labels" in o.description
    with pytest.raises(ParamError, match="must be one of") as e:
        subset_of(layer, "keep:3")
    assert e.value.param == "subset"
    with pytest.raises(ParamError, match="components") as e:
        layer.m2_subset("test", [layer.channels])
    assert e.value.param == "components"
