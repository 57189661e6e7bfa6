"""One image across all layers (mvgviz.render.layers)."""

import numpy as np
import pytest

from mvgviz.conventions import ParamError
from mvgviz.render.colours import blend, heat_rgb
from mvgviz.render.layers import LABEL_H, cell_lines, layers_panel


def test_cell_lines():
    assert cell_lines(224, 7).tolist() == [32, 64, 96, 128, 160, 192]
    assert cell_lines(224, 1).tolist() == []
    assert len(cell_lines(224, 56)) == 55


def test_panel_shows_each_layer_as_scored(demo_model):
    out = layers_panel(demo_model, "test", 3, grid=False, gap=4)
    s, k = demo_model.image_size, len(demo_model.layers)
    assert out.shape == (LABEL_H + s, k * (s + 4) - 4, 3) and out.dtype == np.uint8
    rgb = np.asarray(demo_model.data.images("test")[3])
    for i, lm in enumerate(demo_model.layers.values()):
        ref = blend(rgb, heat_rgb(lm.m2("test", [3]), np.array([lm.stats("test").m2_p99]))[0], 0.5)
        np.testing.assert_array_equal(out[LABEL_H:, i * (s + 4):i * (s + 4) + s], ref)


def test_grid_lines_follow_the_cells(demo_model):
    plain = layers_panel(demo_model, "test", 0, grid=False)
    lined = layers_panel(demo_model, "test", 0, grid=True)
    s = demo_model.image_size
    last = list(demo_model.layers.values())[-1]               # the coarsest layer, 7x7
    x0 = (len(demo_model.layers) - 1) * (s + 6)
    diff = np.any(plain[LABEL_H:, x0:x0 + s] != lined[LABEL_H:, x0:x0 + s], axis=2)  # (S, S) changed pixels
    lines = cell_lines(s, last.feature_size[0])
    on_line = np.zeros((s, s), bool)
    on_line[lines, :] = on_line[:, lines] = True
    assert not diff[~on_line].any()          # nothing changes off the cell borders
    assert diff[lines].mean() > 0.9          # and the borders are drawn (white at half opacity)


def test_bad_arguments(demo_model):
    with pytest.raises(ParamError, match="`image` must be an index"):
        layers_panel(demo_model, "test", 10_000)
    with pytest.raises(ParamError, match="`alpha`"):
        layers_panel(demo_model, "test", 0, alpha=2)
    with pytest.raises(ParamError, match="`split`"):
        layers_panel(demo_model, "val", 0)
