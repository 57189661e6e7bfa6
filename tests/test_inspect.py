"""Pixel decomposition and the Inspect page's figures (mvgviz.inspect)."""

import numpy as np
import pytest

from mvgviz.inspect import (argmax_pixel, colorscale, component_chart, decompose_pixel,
                            decomposition_figure, m2_figure, pixel_from_selection)

LAYERS = ("_blocks[2]", "_blocks[4]", "_blocks[10]", "_blocks[15]")
PIXELS = ((0, 0), (223, 223), (0, 223), (100, 57), (13, 200), (112, 112))


def _y2_at(layer, split, image, row, col):
    """Reference: LayerModel.y2(upsampled=True) at one pixel, read in chunks of components."""
    c = layer.channels
    parts = [layer.y2(split, [image], list(range(a, min(a + 100, c))), upsampled=True)[0, :, row, col]
             for a in range(0, c, 100)]
    return np.concatenate(parts).astype(np.float64)


@pytest.mark.parametrize("name", LAYERS)
def test_contributions_equal_upsampled_y2_and_sum_to_m2(demo_model, name):
    lm = demo_model.layer(name)
    for split, image in (("test", 7), ("train", 2)):
        m2_map = lm.m2(split, [image])[0]
        for row, col in PIXELS:
            d = decompose_pixel(lm, split, image, row, col)
            ref = _y2_at(lm, split, image, row, col)
            assert d.y2.shape == (lm.channels,)
            np.testing.assert_array_equal(d.y2, ref)  # the values the component maps show
            assert d.m2 == float(m2_map[row, col])  # the value the M2 map shows
            # linear upsampling: the contributions add up to M2 (float rounding only)
            assert d.total == pytest.approx(d.m2, rel=1e-4)
            assert d.shares.sum() == pytest.approx(1.0, abs=1e-12)
            assert np.all(d.y2 >= 0)


def test_top_components(demo_model):
    lm = demo_model.layer("_blocks[10]")
    d = decompose_pixel(lm, "test", 7, 120, 150, top=5)
    assert len(d.top) == 5
    vals = d.top_values
    assert np.all(np.diff(vals) <= 0), "largest first"
    assert vals[-1] >= np.sort(d.y2)[-5], "the five largest"
    assert d.top_share == pytest.approx(d.shares[list(d.top)].sum())
    assert 0 < d.top_share <= 1
    assert decompose_pixel(lm, "test", 7, 120, 150, top=10_000).top_share == pytest.approx(1.0)
    info = d.to_dict()
    assert info["top"] == list(d.top) and info["m2"] == d.m2


def test_feature_cell(demo_model):
    lm = demo_model.layer("_blocks[15]")  # 7x7: one cell = 32x32 px
    d = decompose_pixel(lm, "test", 0, 40, 223)
    assert d.feature_size == (7, 7) and d.stride == 32 and d.feature_cell == (1, 6)


def test_bad_arguments(demo_model):
    lm = demo_model.layer("_blocks[4]")
    n = len(demo_model.data.files("test"))
    with pytest.raises(ValueError, match=r"`row` must be a pixel index in 0\.\.223"):
        decompose_pixel(lm, "test", 0, 224, 0)
    with pytest.raises(ValueError, match="`col`"):
        decompose_pixel(lm, "test", 0, 0, -1)
    with pytest.raises(ValueError, match=rf"`image` must be an index in 0\.\.{n - 1}"):
        decompose_pixel(lm, "test", n, 0, 0)
    with pytest.raises(ValueError, match="`split`"):
        decompose_pixel(lm, "val", 0, 0, 0)
    with pytest.raises(ValueError, match="`top`"):
        decompose_pixel(lm, "test", 0, 0, 0, top=0)


def test_argmax_pixel(demo_model):
    lm = demo_model.layer("_blocks[10]")
    r, c = argmax_pixel(lm, "test", 7)
    m2 = lm.m2("test", [7])[0]
    assert m2[r, c] == m2.max()


def test_pixel_from_selection():
    assert pixel_from_selection(None, 224) is None
    assert pixel_from_selection({"selection": {"points": []}}, 224) is None
    assert pixel_from_selection({"selection": {"points": [{"x": 10, "y": 20.4}]}}, 224) == (20, 10)
    assert pixel_from_selection({"points": [{"x": 1, "y": 2}, {"x": 30, "y": 40}]}, 224) == (40, 30)
    assert pixel_from_selection({"selection": {"points": [{"x": 300, "y": 2}]}}, 224) is None
    assert pixel_from_selection({"selection": {"points": [{"curve_number": 0}]}}, 224) is None

    class Obj:  # attribute access, like Streamlit's PlotlyState
        class selection:
            points = [{"x": 5, "y": 6}]
    assert pixel_from_selection(Obj(), 224) == (6, 5)


def test_m2_figure(demo_model):
    lm = demo_model.layer("_blocks[10]")
    p99 = lm.stats("test").m2_p99
    fig = m2_figure(lm, "test", 7, pixel=(3, 4))
    heat = [t for t in fig.data if t.type == "heatmap"][0]
    np.testing.assert_array_equal(np.asarray(heat.z), lm.m2("test", [7])[0])
    assert heat.zmin == 0 and heat.zmax == pytest.approx(p99)
    assert heat.colorscale[0][1] == "rgb(0,0,4)" and "rgb(252,255,164)" in heat.colorscale[-1][1]
    for word in ("row", "col", "M2"):
        assert word in heat.hovertemplate
    title = fig.layout.title.text
    assert "99th percentile of M2 over the test split" in title and f"{p99:.4g}" in title
    assert "inferno" in title
    bar = [t for t in fig.data if t.name == "scale"][0]
    assert bar.marker.showscale and bar.marker.cmin == 0 and bar.marker.cmax == pytest.approx(p99)
    clicks = [t for t in fig.data if t.name == "pixels"][0]
    assert len(clicks.x) == 112 * 112 and "row" in clicks.hovertemplate
    # train split: its own p99; overlay mode: the image is drawn, the heatmap only hovers
    rgb = demo_model.data.images("train")[1]
    fig2 = m2_figure(lm, "train", 1, rgb=rgb, clickable=False)
    assert [t.type for t in fig2.data][:2] == ["image", "heatmap"]
    assert fig2.data[1].opacity == 0 and fig2.data[1].zmax == pytest.approx(lm.stats("train").m2_p99)
    assert fig2.data[0].source.startswith("data:image/png;base64,")
    assert not any(t.name == "pixels" for t in fig2.data)


def test_decomposition_figure(demo_model):
    lm = demo_model.layer("_blocks[4]")
    d = decompose_pixel(lm, "test", 7, 60, 60, top=6)
    fig = decomposition_figure(d)
    bar = fig.data[0]
    assert list(bar.x) == [f"c {c}" for c in d.top]
    np.testing.assert_allclose(bar.y, d.top_values)
    assert list(bar.text) == [f"{d.shares[c] * 100:.1f}%" for c in d.top]
    assert f"{d.top_share * 100:.1f}% of M2" in fig.layout.title.text
    assert f"the other {lm.channels - 6} add {(1 - d.top_share) * 100:.1f}%" in fig.layout.title.text
    assert f"M2 = {d.m2:.4g}" in fig.layout.title.text


def test_component_chart_and_colorscale(demo_model):
    lm = demo_model.layer("_blocks[2]")
    fig = component_chart(lm)
    np.testing.assert_allclose(fig.data[0].y, lm.component_auroc)
    cs = colorscale(8)
    assert cs[0][0] == 0.0 and cs[-1][0] == 1.0 and len(cs) == 8


def test_m2_figure_draws_the_ground_truth_outline(demo_model):
    from mvgviz.inspect import mask_outline
    mask = np.zeros((20, 20), bool)
    mask[5:9, 3:12] = True                     # one rectangle: rows 5..8, cols 3..11
    xs, ys = mask_outline(mask)
    pts = {(x, y) for x, y in zip(xs, ys) if x is not None}
    assert pts == {(3, 5), (11, 5), (11, 8), (3, 8)} and xs[-1] is None and xs[0] == xs[-2]
    assert mask_outline(np.zeros((4, 4), bool)) == ([], [])
    lm = demo_model.layer("_blocks[10]")
    types = demo_model.data.defect_types("test")
    image = next(i for i, t in enumerate(types) if t != "good")
    gt = demo_model.data.masks("test")[image]
    fig = m2_figure(lm, "test", image, mask=gt)
    trace = next(t for t in fig.data if t.name == "ground truth")
    x = np.array([v for v in trace.x if v is not None])
    y = np.array([v for v in trace.y if v is not None])
    assert gt[y, x].all(), "the outline runs on mask pixels"
    rows, cols = np.nonzero(gt)
    assert (x.min(), x.max(), y.min(), y.max()) == (cols.min(), cols.max(), rows.min(), rows.max())
    assert "ground truth" not in [t.name for t in m2_figure(lm, "test", image).data]


def test_spectrum_chart(demo_model):
    from mvgviz.inspect import spectrum_chart
    lm = demo_model.layer("_blocks[10]")
    fig = spectrum_chart(lm)
    tr = fig.data[0]
    keep = lm.eigvals > 0
    assert fig.layout.xaxis.type == "log"
    np.testing.assert_allclose(tr.x, lm.eigvals[keep])
    np.testing.assert_allclose(tr.y, lm.component_auroc[keep])
    i = int(np.flatnonzero(keep)[3])
    t = tr.text[3]
    assert f"c {i}<" in t and f"{lm.component_auroc[i]:.4f}" in t and f"{lm.diagnostics.border_score[i]:.3g}" in t
    assert "n/a" not in fig.layout.title.text


# ---------------------------------------------------------------------------------------
# A subset model (mvgviz.variants): its map, scale and decomposition
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("rule", ["drop_border:5", "npca:5"])
def test_subset_decomposition_splits_m2_s_into_its_components(demo_model, rule):
    from mvgviz.variants import subset_of
    lm = demo_model.layer("_blocks[10]")
    sub = subset_of(lm, rule)
    comps = list(sub.components)
    for split, image in (("test", 7), ("train", 2)):
        m2s = lm.m2_subset(split, comps, [image])[0]
        for row, col in PIXELS[:4]:
            d = decompose_pixel(lm, split, image, row, col, top=8, subset=sub)
            assert d.m2 == float(m2s[row, col])                               # the value the map shows
            np.testing.assert_array_equal(d.y2, _y2_at(lm, split, image, row, col))
            assert set(d.top) <= set(comps) and len(d.top) == min(8, len(comps))
            order = sorted(comps, key=lambda c: (-d.y2[c], c))
            assert list(d.top) == order[:len(d.top)]                          # largest of the model first
            assert d.total == pytest.approx(d.m2, rel=1e-4)                    # its components add up to M2_S
            assert d.shares.sum() == pytest.approx(1.0, abs=1e-9)
            assert np.all(d.shares[np.setdiff1d(np.arange(lm.channels), comps)] == 0)
            full = decompose_pixel(lm, split, image, row, col)
            assert d.total + d.dropped_total == pytest.approx(full.total, rel=1e-9)
    assert decompose_pixel(lm, "test", 7, 0, 0, subset=sub).to_dict()["subset"] == sub.rule
    r, c = argmax_pixel(lm, "test", 7, subset=sub)
    m2s = lm.m2_subset("test", comps, [7])[0]
    assert m2s[r, c] == m2s.max()


def test_subset_m2_figure_and_bars(demo_model):
    from mvgviz.variants import subset_of
    lm = demo_model.layer("_blocks[10]")
    sub = subset_of(lm, "npca:5")
    fig = m2_figure(lm, "test", 7, subset=sub, clickable=False)
    heat = [t for t in fig.data if t.type == "heatmap"][0]
    np.testing.assert_array_equal(np.asarray(heat.z), lm.m2_subset("test", sub.components, [7])[0])
    p99 = lm.m2_subset_p99("test", sub.components)
    assert heat.zmax == pytest.approx(p99) and heat.name == "M2 [npca:5]"
    title = fig.layout.title.text
    assert title.startswith("M2 [npca:5] of test image 7, layer _blocks[10]<br>")
    assert "99th percentile of M2_S over the test split" in title
    assert sub.description in title and f"{p99:.4g}" in title
    d = decompose_pixel(lm, "test", 7, 60, 60, top=4, subset=sub)
    bars = decomposition_figure(d)
    assert list(bars.data[0].x) == [f"c {c}" for c in d.top]
    text = bars.layout.title.text
    assert f"M2 [npca:5] = {d.m2:.4g}: the top 4 explain {d.top_share * 100:.1f}%; the other" in text
    assert f"{len(sub.components)} of {lm.channels} components" in text and f"{d.dropped_total:.4g}" in text


def test_variant_curves_figure(demo_model):
    from mvgviz.inspect import curves_figure, variant_curves_figure
    lm = demo_model.layer("_blocks[10]")
    curves = {k: {"x": [0.0, 0.5, 1.0], "y": [0.0, 0.8, 1.0]} for k in ("image_roc", "roc", "pr", "pro")}
    other = {k: {"x": [0.0, 1.0], "y": [0.0, 1.0]} for k in ("image_roc", "roc", "pr", "pro")}
    rows = [{"rule": "full", "n_components": 112, "oracle": False, **lm.metrics, "curves": curves},
            {"rule": "npca:5", "n_components": 7, "oracle": False, **lm.metrics, "curves": other},
            {"rule": "oracle_best:3", "n_components": 3, "oracle": True, **lm.metrics, "curves": other}]
    fig = variant_curves_figure(rows)
    assert len(fig.data) == 3 * 4                                      # every model in every panel
    names = [t.name for t in fig.data if t.showlegend]
    assert [n.split(":")[0] for n in names[:1]] == ["full model (112)"]
    assert names[1].startswith("npca:5 (7)") and names[2].startswith("oracle_best:3 (3, oracle)")
    oracle = [t for t in fig.data if t.legendgroup == names[2]]
    assert len(oracle) == 4 and all(t.line.dash == "dash" for t in oracle)
    full = [t for t in fig.data if t.legendgroup == names[0]]
    assert [list(t.x) for t in full] == [curves[k]["x"] for k in ("image_roc", "roc", "pr", "pro")]
    assert [a.text for a in fig.layout.annotations][:4] == ["image ROC", "pixel ROC", "PR (pixels)", "PRO (to FPR 0.3)"]
    # the one-model figure keeps its three panels, its metrics in the titles
    one = curves_figure(curves, lm.metrics)
    assert len(one.data) == 4 and not one.layout.showlegend
    assert one.layout.annotations[0].text.startswith(f"ROC: pixel {lm.metrics['pixel_auroc']:.3f}")
