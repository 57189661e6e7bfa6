"""What the viewer's pages show: tables, selections, messages, export bytes (mvgviz.viewer.tables)."""

import json
import re
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

import mvgviz.viewer.tables as T
from mvgviz.conventions import ParamError
from mvgviz.render import GridSpec
from mvgviz.selection import parse_components


def test_overview_and_component_tables(demo_model):
    t = T.overview_table(demo_model)
    assert t["layer"] == list(demo_model.layers)
    for i, lm in enumerate(demo_model.layers.values()):
        assert t["pixel AUROC"][i] == lm.metrics["pixel_auroc"]
        assert t["AUPRO"][i] == lm.metrics["aupro"]
        assert t["channels"][i] == lm.channels
    assert any("32x32" in n for n in T.overview_notes(demo_model))
    lm = demo_model.layer("_blocks[10]")
    c = T.component_table(lm)
    assert c["component"] == list(range(lm.channels))
    assert c["AUROC"] == [float(v) for v in lm.component_auroc]
    best = int(lm.ranking()[0])
    assert c["rank"][best] == 1 and sorted(c["rank"]) == list(range(1, lm.channels + 1))


def test_selection_helpers():
    assert T.merge_components((3, 1), (1, 7, 2)) == "3,1,7,2"
    assert T.merge_components((), (5,)) == "5"
    # issue 10 item 6: the choices say what they keep ("any" hid the good images)
    assert T.image_choices(["crack", "good", "hole"]) == ["all images", "good", "all defects", "crack", "hole"]
    assert T.image_choices(["good", "good"]) == ["all images", "good"]


def test_export_bytes(demo_model):
    spec = GridSpec(layer="_blocks[10]", images=(0, 7), components=(1, 2))
    png = T.grid_file_bytes(demo_model, spec, "png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.shape[0] > 200 and img.shape[1] > 300
    man = json.loads(T.grid_manifest_bytes(demo_model, spec))
    assert man["spec"] == spec.to_dict()
    with pytest.raises(ValueError, match="fmt"):
        T.grid_file_bytes(demo_model, spec, "gif")
    assert T.export_name(demo_model, spec) == "brick_efficientnet_lite0_blocks10_test"


def test_escape_markdown():
    text = "ground_truth/<defect>/*_mask.png [2] $x$ a\\b"
    esc = T.escape_markdown(text)
    assert "_" not in esc.replace("\\_", "") and "*" not in esc.replace("\\*", "")
    assert re.sub(r"\\(.)", r"\1", esc) == text


def test_error_message_names_the_control():
    e = ParamError("images", ": index 10 is out of range")
    assert T.error_message(e) == "Images: index 10 is out of range"
    assert T.error_message(ParamError("components", "must be best:N")) == "Components must be best:N"
    # a parameter the viewer has no control for keeps the library's wording
    assert T.error_message(ParamError("reg", "must be none")) == "`reg` must be none"
    assert T.error_message(ValueError("plain")) == "plain"
    # the library's data and weights errors speak of the app's sidebar controls
    assert T.error_message(ParamError("root", ": data root 'x' is not a folder")) == "Data root: data root 'x' is not a folder"
    assert T.error_message(ParamError("weights", ": no pretrained weights")).startswith("Weights: ")


def test_page_helpers(demo_model):
    assert T.component_box_text("best k", 3, "1,2") == "best:3"
    assert T.component_box_text("worst k", 2.0, "1,2") == "worst:2"
    assert T.component_box_text("indices", 3, "1,2") == "1,2"
    assert T.first_defect_image(["good", "good", "crack", "hole"]) == 2
    assert T.first_defect_image(["good"]) == 0
    best = T.best_layer(demo_model)
    assert demo_model.layers[best].metrics["pixel_auroc"] == max(lm.metrics["pixel_auroc"]
                                                                 for lm in demo_model.layers.values())
    assert T.layer_label(demo_model, "_blocks[10]") == "_blocks[10] (112 @ 14x14)"
    types = demo_model.data.defect_types("test")
    assert f"{len(types)} test images" in T.data_caption(demo_model)
    status = SimpleNamespace(state="queued", waiting=True, step="", fraction=0.25, elapsed=3.2, label="fit x",
                             active=True, error=None, key=("fit", "x"))
    assert T.progress_text(status, "Fitting x") == "Fitting x: waiting for another fit to finish (25%, 3 s)"
    assert T.progress_text(status, "Looking up", bar=False) == "Looking up (3 s)"
    assert T.job_line(status) == "**fit x**: queued 25%"
    probe = SimpleNamespace(**{**vars(status), "key": ("probe", "x")})
    assert T.listed_jobs([status, probe]) == [status]


def test_grid_spec_from_controls(demo_model):
    lm = demo_model.layer("_blocks[10]")
    kw = dict(image_filter="any", images="all", seed=0, components="best:20", scale="cross-component",
              show_m2=True, show_image=False, outline=True, alpha=0.3)
    spec, notes = T.grid_spec_from_controls(demo_model, lm, "test", **kw)
    types = demo_model.data.defect_types("test")
    defects = [i for i, t in enumerate(types) if t != "good"]
    assert spec.images == tuple(defects[:T.GRID_LIMIT])
    assert spec.components == parse_components("best:16", lm)
    assert notes == ["20 components selected: showing the first 16."]
    assert (spec.scale, spec.show_image, spec.alpha) == ("cross-component", False, 0.3)
    spec, notes = T.grid_spec_from_controls(demo_model, lm, "train", **{**kw, "image_filter": T.ALL_IMAGES,
                                                                          "images": "0-1", "components": "3"})
    assert (spec.split, spec.images, spec.components, notes) == ("train", (0, 1), (3,), [])
    with pytest.raises(ParamError, match="^`images` must be indices") as info:
        T.grid_spec_from_controls(demo_model, lm, "test", **{**kw, "images": "abc"})
    assert T.error_message(info.value).startswith("Images must be indices")


def test_diagnostics_and_variants_tables(demo_model):
    lm = demo_model.layer("_blocks[4]")
    t = T.diagnostics_table(lm)
    c = lm.channels
    assert all(len(v) == c for v in t.values())
    np.testing.assert_allclose(t["AUROC"], lm.component_auroc)
    np.testing.assert_allclose(np.array(t["border score"], dtype=float), lm.diagnostics.border_score, equal_nan=True)
    np.testing.assert_allclose(t[T.CHI2_LABEL], lm.stats("train").per_component_p99)
    rows = [{"rule": "full", "n_components": c, "oracle": False, "image_auroc": 0.9, "pixel_auroc": None,
             "pixel_aupr": 0.2, "aupro": 0.7},
            {"rule": "oracle_best:3", "n_components": 3, "oracle": True, "image_auroc": 0.95, "pixel_auroc": 0.9,
             "pixel_aupr": 0.3, "aupro": 0.8}]
    v = T.variants_table(rows)
    assert v["rule"] == ["full", "oracle_best:3"] and v["kept components"] == [c, 3]
    assert v[T.ORACLE_LABEL] == [False, True] and v["pixel AUROC"] == [None, 0.9] and v["AUPRO"] == [0.7, 0.8]


def test_model_control_rule_and_labels():
    assert T.subset_rule(T.ALL_COMPONENTS) is None
    assert T.subset_rule(T.TYPED_RULE, "  ") is None                     # nothing typed: the full model
    assert T.subset_rule(T.TYPED_RULE, "Drop_Border: 3") == "drop_border:3"
    assert T.subset_rule("npca:5", "ignored") == "npca:5"
    assert T.subset_choice_label("oracle_best:5") == "oracle_best:5 (oracle: reads test labels)"
    assert T.subset_choice_label("npca:5") == "npca:5 (train-only)"
    assert T.subset_choice_label(T.ALL_COMPONENTS) == T.ALL_COMPONENTS
    with pytest.raises(ParamError) as info:
        T.subset_rule(T.TYPED_RULE, "bogus:1")
    assert T.error_message(info.value).startswith("Model: M2 over must be one of drop_border:N")
