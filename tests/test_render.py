"""mvgviz.render: selections, grid data read from the cache, colour scales, raster and figure."""

import dataclasses

import numpy as np
import pytest
from matplotlib import colormaps
from matplotlib.colors import Normalize
from matplotlib.image import AxesImage

from mvgviz import pipeline
from mvgviz.render import (SCALES, GridSpec, colormap_lut, colour_index, format_value, grid_data,
                           panel_rgb, raster_layout, render_figure,
                           render_raster)

LAYER = "_blocks[10]"


@pytest.fixture(scope="module")
def lm(demo_model):
    return demo_model.layer(LAYER)


@pytest.fixture(scope="module")
def defect_images(demo_model):
    types = demo_model.data.defect_types("test")
    return [i for i, t in enumerate(types) if t != "good"]


def small_spec(demo_model, defect_images, **kw):
    lm = demo_model.layer(kw.get("layer", LAYER))
    good = demo_model.data.defect_types("test").index("good")
    base = dict(layer=LAYER, images=(defect_images[0], good, defect_images[-1]),
                components=tuple(int(c) for c in lm.ranking()[:3]))
    return GridSpec(**{**base, **kw})


def heatmap_images(fig):
    """{(row, col): AxesImage} of the heatmaps of a render_figure figure."""
    out = {}
    for ax in fig.axes:
        for im in ax.get_images():
            gid = im.get_gid() or ""
            if gid.startswith("heatmap-"):
                r, c = gid.split("-")[1:]
                out[int(r[1:]), int(c[1:])] = im
    return out


def colourbar_limits(fig):
    """{gid: (lo, hi)} of the colour-bar axes."""
    return {ax.get_gid(): ax.get_xlim() for ax in fig.axes if (ax.get_gid() or "").startswith("colorbar-")}


# -- GridSpec --------------------------------------------------------------------------

def test_gridspec_round_trip_and_coercion():
    s = GridSpec(layer="_blocks[4]", split="train", images=[3, 1], components=np.array([5, 0]),
                 scale="cross-component", show_m2=False, alpha=1)
    assert s.images == (3, 1) and s.components == (5, 0) and isinstance(s.alpha, float)
    d = s.to_dict()
    assert d["images"] == [3, 1] and d["components"] == [5, 0]
    assert GridSpec.from_dict(d) == s
    assert GridSpec.from_dict({"layer": "x"}) == GridSpec(layer="x")


@pytest.mark.parametrize("kw, match", [
    ({"scale": "log"}, "--scale must be one of per-component, cross-component"),
    ({"split": "val"}, "--split must be one of train, test"),
    ({"alpha": 1.5}, "`alpha` must be a number in \\[0, 1\\]"),
    ({"images": ()}, "`images` is empty"),
    ({"components": (-1,)}, "`components` indices must be >= 0"),
    ({"components": (1.5,)}, "`components` must hold integer"),
    ({"images": "0,1"}, "`images` must be a sequence"),
    ({"outline": "yes"}, "`outline` must be true or false"),
])
def test_gridspec_rejects_bad_values(kw, match):
    with pytest.raises(ValueError, match=match):
        GridSpec(layer="x", **kw)


def test_gridspec_from_dict_names_bad_keys():
    with pytest.raises(ValueError, match="unknown grid spec key.*'colour'"):
        GridSpec.from_dict({"layer": "x", "colour": 1})
    with pytest.raises(ValueError, match="missing key 'layer'"):
        GridSpec.from_dict({"split": "test"})


# -- grid data -------------------------------------------------------------------------

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
    with pytest.raises(ValueError, match=rf"--images: index {n} is out of range.*valid: 0\.\.{n - 1}"):
        grid_data(demo_model, GridSpec(layer=LAYER, images=(n,)))
    with pytest.raises(ValueError, match=r"--components: index 112 is out of range.*0\.\.111"):
        grid_data(demo_model, GridSpec(layer=LAYER, components=(112,)))
    with pytest.raises(ValueError, match="--layer: `layer` must be one of"):
        grid_data(demo_model, GridSpec(layer="layer9"))


# -- colours ---------------------------------------------------------------------------

def test_colours_match_matplotlib_and_clip_above_vmax():
    vmax = np.array([2.0, 10.0])
    x = np.array([[[[0, 0.3, 1.0, 1.999, 2.0, 50.0, -1.0]], [[0, 1.0, 5.0, 9.99, 10.0, 1e9, 3.3]]]],
                 dtype=np.float32)  # (1, 2, 1, 7)
    idx = colour_index(x, vmax)
    lut = colormap_lut()
    cmap = colormaps["inferno"].resampled(256)
    for j in range(2):
        ref = cmap(Normalize(0, vmax[j])(x[0, j, 0].astype(np.float64)))[:, :3]
        np.testing.assert_allclose(lut[idx[0, j, 0]] / 255.0, ref, atol=0.5 / 255 + 1e-9)
    assert idx[0, 0, 0, 5] == 255 and idx[0, 1, 0, 5] == 255  # above vmax -> top colour
    assert idx[0, 0, 0, 4] == 255 and idx[0, 0, 0, 6] == 0   # vmax itself top, negatives bottom
    assert format_value(0) == "0" and format_value(14.2857) == "14.3" and format_value(12345) == "1.23e4"


# -- raster ----------------------------------------------------------------------------

def test_render_raster_pixels_are_the_blend(demo_model, defect_images):
    spec = small_spec(demo_model, defect_images, outline=False)
    d = grid_data(demo_model, spec)
    img = render_raster(d)
    lay = raster_layout(d)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape == (lay.height, lay.width, 3)
    lut = colormap_lut()
    rng = np.random.default_rng(0)
    for i, j in [(0, 0), (2, 1), (1, 3)]:
        x0, y0 = lay.panel_x[j], lay.panel_y[i]
        panel = img[y0:y0 + 224, x0:x0 + 224]
        np.testing.assert_array_equal(panel, panel_rgb(d, i, j))
        for py, px in rng.integers(0, 224, size=(5, 2)):
            v = d.maps[i, j, py, px]
            heat = lut[min(int(np.floor(256 * v / d.vmax[j])), 255)].astype(float)
            expected = 0.5 * d.images[i, py, px] + 0.5 * heat
            assert np.abs(panel[py, px] - expected).max() <= 1.0
    # heatmap alone
    alone = grid_data(demo_model, spec.replace(show_image=False))
    lay2 = raster_layout(alone)
    p = render_raster(alone)[lay2.panel_y[0]:lay2.panel_y[0] + 224, lay2.panel_x[0]:lay2.panel_x[0] + 224]
    np.testing.assert_array_equal(p, lut[colour_index(alone.maps[0, :1], alone.vmax[:1])[0]])


def test_render_raster_outline_and_scale_switch(demo_model, defect_images):
    spec = small_spec(demo_model, defect_images)
    d = grid_data(demo_model, spec)
    lay = raster_layout(d)
    img = render_raster(d)
    cyan = np.all(img == (0, 255, 255), axis=-1)
    y0, x0 = lay.panel_y[0], lay.panel_x[0]
    assert cyan[y0:y0 + 224, x0:x0 + 224].sum() > 10         # defect row: contour drawn
    y1 = lay.panel_y[1]                                        # image 1 is a good image: none
    assert d.defects[1] == "good" and not cyan[y1:y1 + 224, x0:x0 + 224].any()
    off = render_raster(grid_data(demo_model, spec.replace(outline=False)))
    assert not np.all(off[y0:y0 + 224, x0:x0 + 224] == (0, 255, 255), axis=-1).any()
    dc = grid_data(demo_model, spec.replace(scale="cross-component"))
    cross, lc = render_raster(dc), raster_layout(dc)

    def panel(im, la, i, j):
        return im[la.panel_y[i]:la.panel_y[i] + 224, la.panel_x[j]:la.panel_x[j] + 224]

    assert not np.array_equal(panel(cross, lc, 0, 0), panel(img, lay, 0, 0))
    np.testing.assert_array_equal(panel(cross, lc, 0, 3), panel(img, lay, 0, 3))  # M2: m2 p99 in both modes


def test_render_raster_small_grid_keeps_text_inside(demo_model):
    d = grid_data(demo_model, GridSpec(layer="_blocks[15]", images=(0,), components=(3,), show_m2=False))
    img = render_raster(d)
    assert img.shape[1] >= 224 and img.shape[0] > 224
    assert (img[:, -3:] == 255).all() and (img[-3:] == 255).all()  # margins stay blank: nothing cut off


# -- figure ----------------------------------------------------------------------------

@pytest.mark.parametrize("scale", SCALES)
def test_render_figure_clims_and_colour_bars(demo_model, defect_images, scale):
    spec = small_spec(demo_model, defect_images, scale=scale)
    d = grid_data(demo_model, spec)
    fig = render_figure(d)
    ims = heatmap_images(fig)
    n, m = d.n_rows, d.n_cols
    assert set(ims) == {(i, j) for i in range(n) for j in range(m)}
    st = demo_model.layer(LAYER).stats("test")
    comps = list(spec.components)
    expected = (st.per_component_p99[comps] if scale == "per-component"
                else np.full(len(comps), st.cross_component_p99))
    for (i, j), im in ims.items():
        assert isinstance(im, AxesImage) and im.get_cmap().name.startswith("inferno")
        lo, hi = im.get_clim()
        assert lo == 0.0
        assert hi == pytest.approx(st.m2_p99 if j == m - 1 else expected[j], rel=1e-12)
        assert im.get_alpha() == 0.5
        np.testing.assert_array_equal(im.get_array(), d.maps[i, j])
    bars = colourbar_limits(fig)
    if scale == "per-component":
        assert set(bars) == {f"colorbar-{j}" for j in range(m)}
        for j in range(m):
            assert bars[f"colorbar-{j}"] == pytest.approx((0.0, d.vmax[j]))
    else:
        assert set(bars) == {"colorbar-0-1-2", "colorbar-3"}
        assert bars["colorbar-0-1-2"] == pytest.approx((0.0, st.cross_component_p99))
        assert bars["colorbar-3"] == pytest.approx((0.0, st.m2_p99))
    texts = {t.get_text() for ax in fig.axes for t in (ax.title, *ax.texts)}
    assert d.panel_labels[1][2] in texts and d.column_labels[0] in texts
    assert fig._suptitle.get_text() == d.title
    # contours only on defect rows
    assert [len(fig.axes[i * m].collections) > 0 for i in range(n)] == [t != "good" for t in d.defects]


def test_random_weights_are_visible_in_the_title(demo_model):
    fake = dataclasses.replace(demo_model, weights="RANDOM-INIT(seed=0), not pretrained")
    d = grid_data(fake, GridSpec(layer=LAYER))
    assert "RANDOM-INIT" in d.title
    fig = render_figure(d)
    assert "RANDOM-INIT" in fig._suptitle.get_text()


def test_encode_raster_is_a_faithful_jpeg():
    import cv2
    from mvgviz.render import encode_raster
    rng = np.random.default_rng(0)
    rgb = cv2.GaussianBlur(rng.integers(0, 256, (60, 90, 3), dtype=np.uint8), (7, 7), 2)
    rgb[10:20, 10:40] = (255, 0, 0)  # a red bar: channel order must survive
    data = encode_raster(rgb)
    assert data[:2] == b"\xff\xd8"
    back = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    assert back.shape == rgb.shape
    assert np.abs(back.astype(int) - rgb).mean() < 3
    assert back[15, 25, 0] > 200 and back[15, 25, 2] < 60
    with pytest.raises(ValueError, match="rgb"):
        encode_raster(rgb[..., 0])
