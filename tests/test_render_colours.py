"""mvgviz.render.colours: the colour table and bin rule are matplotlib's."""

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import Normalize

from mvgviz.render import colormap_lut, colour_index, format_value


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
