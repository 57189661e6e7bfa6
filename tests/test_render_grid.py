"""mvgviz.render.grid: grid specs and the grid data read from the cache."""

import numpy as np
import pytest

from mvgviz import pipeline
from mvgviz.conventions import ParamError
from mvgviz.render import GridSpec, grid_data

from render_helpers import LAYER, small_spec


def test_gridspec_round_trip_and_coercion():
    s = GridSpec(layer="_blocks[4]", split="train", images=[3, 1], components=np.array([5, 0]),
                 scale="cross-component", show_m2=False, alpha=1)
    assert s.images == (3, 1) and s.components == (5, 0) and isinstance(s.alpha, float)
    d = s.to_dict()
    assert d["images"] == [3, 1] and d["components"] == [5, 0]
    assert GridSpec.from_dict(d) == s
    assert GridSpec.from_dict({"layer": "x"}) == GridSpec(layer="x")


@pytest.mark.parametrize("kw, match", [
    ({"scale": "log"}, "^`scale` must be 'per-component' or 'cross-component', got 'log'$"),
    ({"split": "val"}, "^`split` must be 'train' or 'test', got 'val'$"),
    ({"alpha": 1.5}, "`alpha` must be a number in \\[0, 1\\]"),
    ({"images": ()}, "`images` is empty"),
    ({"components": (-1,)}, "`components` indices must be >= 0"),
    ({"components": (1.5,)}, "`components` must hold integer"),
    ({"images": "0,1"}, "`images` must be a sequence"),
    ({"outline": "yes"}, "`outline` must be true or false"),
])
def test_gridspec_rejects_bad_values(kw, match):
    with pytest.raises(ParamError, match=match) as info:
        GridSpec(layer="x", **kw)
    assert info.value.param == next(iter(kw))


def test_gridspec_from_dict_names_bad_keys():
    with pytest.raises(ValueError, match="unknown grid spec key.*'colour'"):
        GridSpec.from_dict({"layer": "x", "colour": 1})
    with pytest.raises(ValueError, match="missing key 'layer'"):
        GridSpec.from_dict({"split": "test"})


def test_grid_data_reads_only_the_requested_slices(demo_model, defect_images, monkeypatch):
    spec = small_spec(demo_model, defect_images)
    calls = []
    y_orig, m2_orig = pipeline.LayerModel.y, pipeline.LayerModel.m2

    def spy_y(self, split, images=None, components=None):
        calls.append(("y", split, images, components))
        return y_orig(self, split, images, components)

    def spy_m2(self, split, images=None, **kw):
        calls.append(("m2", split, images))
        return m2_orig(self, split, images, **kw)

    monkeypatch.setattr(pipeline.LayerModel, "y", spy_y)
    monkeypatch.setattr(pipeline.LayerModel, "m2", spy_m2)
    d = grid_data(demo_model, spec)
    assert len(calls) == 2
    kind, split, images, comps = calls[0]
    assert kind == "y" and split == "test"
    assert list(images) == list(spec.images) and list(comps) == list(spec.components)  # never None (whole)
    assert calls[1] == ("m2", "test", list(spec.images))
    monkeypatch.undo()

    lm = demo_model.layer(LAYER)
    n, k = len(spec.images), len(spec.components)
    assert d.maps.shape == (n, k + 1, 224, 224) and d.maps.dtype == np.float32
    np.testing.assert_array_equal(d.maps[:, :k], lm.y2("test", list(spec.images), list(spec.components)))
    np.testing.assert_array_equal(d.maps[:, k], lm.m2("test", list(spec.images)))
    np.testing.assert_array_equal(d.images, demo_model.data.images("test")[list(spec.images)])
    np.testing.assert_array_equal(d.masks, demo_model.data.masks("test")[list(spec.images)])
    # the visual sum: over all components the y2 maps add up to M2 (at feature resolution too)
    full = grid_data(demo_model, spec.replace(images=(spec.images[0],), components=tuple(range(lm.channels))))
    np.testing.assert_allclose(full.maps[0, :-1].sum(0), full.maps[0, -1], rtol=2e-4, atol=1e-3)


def test_grid_data_labels(demo_model, defect_images):
    spec = small_spec(demo_model, defect_images)
    d = grid_data(demo_model, spec)
    lm = demo_model.layer(LAYER)
    types = demo_model.data.defect_types("test")
    c0 = spec.components[0]
    assert d.column_labels[0] == f"c {c0} (AUROC {lm.component_auroc[c0]:.3f})"
    assert d.column_labels[-1] == "M2"
    i1 = spec.images[1]
    assert d.row_labels[1] == f"img {i1} | {types[i1]}"
    m = len(spec.components) + 1
    assert d.panel_labels[0][0] == f"1 | img {spec.images[0]} | c {c0}"
    assert d.panel_labels[2][1] == f"{2 * m + 2} | img {spec.images[2]} | c {spec.components[1]}"
    assert d.panel_labels[1][-1] == f"{2 * m} | img {i1} | M2"
    met = lm.metrics
    for text in ("brick", "efficientnet_lite0", demo_model.weights, LAYER, "14x14", "test split",
                 f"pixel AUROC {met['pixel_auroc']:.3f}", f"AUPR {met['pixel_aupr']:.3f}",
                 f"AUPRO {met['aupro']:.3f}", "scale: per-component"):
        assert text in d.title
    assert "per-component" in d.scale_note


@pytest.mark.parametrize("split", ["test", "train"])
def test_vmax_follows_the_scale_mode(demo_model, defect_images, split):
    lm = demo_model.layer(LAYER)
    st = lm.stats(split)
    spec = small_spec(demo_model, defect_images, split=split, images=(0, 2))
    comps = list(spec.components)
    per = grid_data(demo_model, spec)
    cross = grid_data(demo_model, spec.replace(scale="cross-component"))
    np.testing.assert_array_equal(per.vmax[:-1], st.per_component_p99[comps])
    np.testing.assert_array_equal(cross.vmax[:-1], np.full(len(comps), st.cross_component_p99))
    assert per.vmax[-1] == cross.vmax[-1] == st.m2_p99
    assert not np.allclose(per.vmax[:-1], cross.vmax[:-1])  # switching the scale changes the maxima
    assert per.scale_groups == ((0,), (1,), (2,), (3,)) and cross.scale_groups == ((0, 1, 2), (3,))
    no_m2 = grid_data(demo_model, spec.replace(show_m2=False))
    assert no_m2.maps.shape[1] == len(comps) and no_m2.vmax.shape == (len(comps),)
    if split == "train":
        assert per.masks is None and per.row_labels[0] == "img 0 | train"
    other = demo_model.layer(LAYER).stats("test" if split == "train" else "train")
    assert not np.allclose(per.vmax, np.append(other.per_component_p99[comps], other.m2_p99))


def test_grid_data_errors(demo_model):
    n = len(demo_model.data.files("test"))
    with pytest.raises(ParamError, match=rf"^`images`: index {n} is out of range.*valid: 0\.\.{n - 1}"):
        grid_data(demo_model, GridSpec(layer=LAYER, images=(n,)))
    with pytest.raises(ParamError, match=r"^`components`: index 112 is out of range.*0\.\.111"):
        grid_data(demo_model, GridSpec(layer=LAYER, components=(112,)))
    with pytest.raises(ParamError, match="^`layer` must be one of") as info:
        grid_data(demo_model, GridSpec(layer="layer9"))
    assert info.value.param == "layer"


def test_gridspec_subset_round_trip_and_errors():
    s = GridSpec(layer="x", subset=" NPCA: 5")
    assert s.subset == "npca:5" and s.to_dict()["subset"] == "npca:5"
    assert GridSpec.from_dict(s.to_dict()) == s
    old = s.to_dict()
    del old["subset"]                                     # a manifest written before subsets: the full model
    assert GridSpec.from_dict(old).subset is None
    for bad, match in (("bogus:1", "must be one of"), ("npca:x", "needs a number"), (3, "must be a rule")):
        with pytest.raises(ParamError, match=match) as info:
            GridSpec(layer="x", subset=bad)
        assert info.value.param == "subset"


@pytest.mark.parametrize("split", ["test", "train"])
@pytest.mark.parametrize("rule", ["drop_border:5", "npca:5"])
def test_grid_m2_column_shows_the_subset_model(demo_model, defect_images, split, rule):
    from mvgviz.variants import select
    lm = demo_model.layer(LAYER)
    spec = small_spec(demo_model, defect_images, split=split, images=(0, 3), subset=rule)
    d = grid_data(demo_model, spec)
    full = grid_data(demo_model, spec.replace(subset=None))
    comps = select(lm, rule)
    k = len(spec.components)
    np.testing.assert_array_equal(d.maps[:, :k], full.maps[:, :k])          # the component columns stay
    np.testing.assert_array_equal(d.maps[:, k], lm.m2_subset(split, comps, [0, 3]))
    np.testing.assert_allclose(d.maps[:, k], lm.y2(split, [0, 3], comps).sum(1), rtol=1e-5, atol=1e-5)
    assert d.vmax[k] == lm.m2_subset_p99(split, comps) == np.percentile(lm.m2_subset(split, comps, upsampled=False), 99)
    assert d.vmax[k] != full.vmax[k] == lm.stats(split).m2_p99
    assert d.column_labels[-1] == f"M2 [{rule}]" and full.column_labels[-1] == "M2"
    assert d.panel_labels[0][-1].endswith("| M2_S")
    assert d.scale_label((k,)) == f"M2_S, max = p99 ({split})" and full.scale_label((k,)) == f"M2, max = p99 ({split})"
    assert f"last column: M2 [{rule}], a subset model: {rule} keeps {len(comps)} of {lm.channels}" in d.title
    assert "train-only rule" in d.title and "p99 of M2_S" in d.scale_note


def test_grid_subset_that_does_not_fit_the_layer(demo_model):
    with pytest.raises(ParamError, match=r"drop_border:N needs an integer N in 0\.\.23") as info:
        grid_data(demo_model, GridSpec(layer="_blocks[2]", subset="drop_border:30"))
    assert info.value.param == "subset"
