"""mvgviz.render.figure: the matplotlib figure of a grid (colour limits, colour bars, labels)."""

import dataclasses

import numpy as np
import pytest
from matplotlib.image import AxesImage

from mvgviz.render import SCALES, GridSpec, grid_data, render_figure

from render_helpers import LAYER, small_spec


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


def test_figure_text_stays_legible_on_a_large_grid(demo_model):
    """11 x 16 panels: every text >= 5 pt and every panel label inside its panel's width."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text
    from mvgviz.conventions import ParamError
    nt = len(demo_model.data.files("test"))
    d = grid_data(demo_model, GridSpec(layer=LAYER, images=tuple(i % nt for i in range(11)),
                                       components=tuple(range(15))))
    fig = render_figure(d)
    renderer = FigureCanvasAgg(fig).get_renderer()
    texts = [t for t in fig.findobj(Text) if t.get_text().strip()]
    assert len(texts) > 11 * 16
    assert min(t.get_fontsize() for t in texts) >= 5.0
    for ax in fig.axes:
        if ax.get_images() and (ax.get_images()[0].get_gid() or "").startswith("heatmap-"):
            box = ax.get_window_extent(renderer)
            lab = ax.title.get_window_extent(renderer)
            assert ax.title.get_text() and lab.width <= box.width and lab.height >= 5 / 72 * fig.dpi
    with pytest.raises(ParamError, match="`font_size` must be >= 5.5 pt"):
        render_figure(d, font_size=4)
