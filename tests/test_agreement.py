"""Component agreement (mvgviz.agreement) against a brute-force recomputation from the displayed maps."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mvgviz.agreement import agreement, layer_agreement


def test_agreement_equals_brute_force(demo_model):
    lm = demo_model.layer("_blocks[10]")
    comps = [3, 17, 40, 41]
    got = agreement(demo_model, lm, comps, batch_size=5)
    p99 = lm.stats("train").per_component_p99[comps]
    y2 = lm.y2("test", components=comps)                        # (N, 4, S, S) as displayed
    count = (y2 > p99[None, :, None, None].astype(np.float32)).sum(1)  # (N, S, S)
    masks = demo_model.data.masks("test")
    assert got["metrics"]["pixel_auroc"] == pytest.approx(roc_auc_score(masks.ravel(), count.ravel()), abs=1e-12)
    flagged = lm.m2("test") > lm.stats("train").m2_p99
    tp, fp = flagged & masks, flagged & ~masks
    assert got["n_true_positives"] == tp.sum() and got["n_false_positives"] == fp.sum()
    assert got["mean_on_true_positives"] == pytest.approx(count[tp].mean())
    assert got["mean_on_false_positives"] == pytest.approx(count[fp].mean())
    assert got["holds"] == (count[tp].mean() > count[fp].mean())
    # batch size changes nothing
    assert agreement(demo_model, lm, comps, batch_size=64)["metrics"] == got["metrics"]


def test_layer_agreement_labels_the_oracle(demo_model):
    lm = demo_model.layer("_blocks[4]")
    out = layer_agreement(demo_model, lm)
    assert out["train_only"]["rule"] == "npca:5" and "oracle" not in out["train_only"]
    assert out["oracle"]["oracle"] is True and out["oracle"]["n_components"] == out["train_only"]["n_components"]
    assert out["full_model"] == lm.metrics


def test_cli_report_agreement(demo_root, demo_cache, capsys):
    import json

    from mvgviz.cli import main
    assert main(["report", "--data", str(demo_root), "--category", "brick", "--layers", "_blocks[10]",
                 "--cache", str(demo_cache), "--device", "cpu", "--quiet", "--json", "--agreement"]) == 0
    a = json.loads(capsys.readouterr().out)["layers"][0]["agreement"]
    assert set(a) == {"full_model", "train_only", "oracle"} and isinstance(a["train_only"]["holds"], bool)


def test_agreement_map_is_the_count_of_the_displayed_maps(demo_model):
    from mvgviz.agreement import agreement_map
    from mvgviz.conventions import ParamError
    from mvgviz.variants import select
    lm = demo_model.layer("_blocks[10]")
    comps = select(lm, "npca:5")
    p99 = lm.stats("train").per_component_p99[comps].astype(np.float32)
    y2 = lm.y2("test", components=comps)                                  # (N, k, S, S) as displayed
    ref = (y2 > p99[None, :, None, None]).sum(1)                          # (N, S, S)
    maps = np.stack([agreement_map(lm, "test", i, comps) for i in range(len(ref))])
    assert maps.dtype == np.int64 and maps.shape == ref.shape
    np.testing.assert_array_equal(maps, ref)
    assert 0 < maps.max() <= len(comps)
    # the maps agreement() evaluates: the same pixel AUROC
    masks = demo_model.data.masks("test")
    assert agreement(demo_model, lm, comps)["metrics"]["pixel_auroc"] == pytest.approx(
        roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-12)
    for bad in ([], [lm.channels], [-1]):
        with pytest.raises(ParamError, match="components"):
            agreement_map(lm, "test", 0, bad)
    with pytest.raises(ParamError, match="image"):
        agreement_map(lm, "test", len(ref), comps)
