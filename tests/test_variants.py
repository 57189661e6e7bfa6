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
