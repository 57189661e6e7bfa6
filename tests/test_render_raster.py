"""mvgviz.render.raster: the OpenCV raster of a grid and its JPEG encoding."""

import numpy as np
import pytest

from mvgviz.render import (GridSpec, colormap_lut, colour_index, encode_raster, grid_data, panel_rgb, raster_layout,
                           render_raster)

from render_helpers import small_spec


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


def test_encode_raster_is_a_faithful_jpeg():
    import cv2
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


def ink_rows(strip):
    """Rows of a label strip that hold dark text pixels (labels are drawn in near-black)."""
    dark = (strip.max(axis=-1) < 128).any(axis=1)
    rows = np.flatnonzero(dark)
    return 0 if rows.size == 0 else int(rows[-1] - rows[0] + 1)


@pytest.mark.parametrize("n, k, width", [(2, 3, 900), (4, 8, 900), (11, 16, 900), (11, 16, 700), (4, 8, None)])
def test_labels_are_readable_at_the_display_size(demo_model, n, k, width):
    """Shown at ``width`` px, every label's digits are >= 11 px tall (before: ~7 px at 11 columns)."""
    from mvgviz.render import raster_layout
    nt = len(demo_model.data.files("test"))
    d = grid_data(demo_model, GridSpec(layer="_blocks[10]", images=tuple(i % nt for i in range(n)),
                                       components=tuple(range(k - 1))))
    img = render_raster(d, width=width)
    lay = raster_layout(d, width=width)
    assert img.shape == (lay.height, lay.width, 3)
    if width is not None:
        assert img.shape[1] <= width                     # shown 1:1 (or enlarged), never shrunk
    s = lay.size
    heights = []
    for j in range(d.n_cols):                            # column headers, all drawn
        x = lay.panel_x[j]
        assert lay.headers[j]
        heights.append(ink_rows(img[lay.header_y:lay.header_y + 2 * 11, x:x + s]))
    for i in range(d.n_rows):
        for j in range(d.n_cols):
            if lay.panel_labels[i][j]:                   # panel labels start with the in-plot index
                assert lay.panel_labels[i][j].split(" | ")[0] == d.panel_labels[i][j].split(" | ")[0]
                x, y = lay.panel_x[j], lay.panel_y[i]
                heights.append(ink_rows(img[y - lay.label_h:y, x:x + s]))
    assert len(heights) >= d.n_cols + (d.n_rows * d.n_cols if s >= 40 else 0)
    assert min(heights) >= 11, sorted(heights)[:5]
    # the panels keep their place: nothing is drawn over them but the contour
    if width is not None and s < 224:
        y0, x0 = lay.panel_y[1], lay.panel_x[1]
        import cv2
        ref = cv2.resize(panel_rgb(d, 1, 1, outline=False), (s, s), interpolation=cv2.INTER_AREA)
        if d.defects[1] == "good" or not d.spec.outline:
            np.testing.assert_array_equal(img[y0:y0 + s, x0:x0 + s], ref)


def test_default_raster_text_is_11_px(demo_model, defect_images):
    d = grid_data(demo_model, small_spec(demo_model, defect_images))
    from mvgviz.render import raster_layout
    lay = raster_layout(d)
    img = render_raster(d)
    x, y = lay.panel_x[0], lay.panel_y[0]
    assert lay.size == 224 and lay.panel_labels[0][0] == d.panel_labels[0][0]   # full labels at native size
    assert ink_rows(img[y - lay.label_h:y, x:x + 224]) >= 11
