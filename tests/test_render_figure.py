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
