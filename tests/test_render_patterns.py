"""The input-independent pattern grid (mvgviz.render.patterns) against the diagnostics it shows."""

import json

import cv2
import numpy as np
import pytest

from mvgviz.conventions import ParamError
from mvgviz.render import colormap_lut, pattern_data, pattern_manifest, render_pattern_raster, top_components


def test_top_components_order():
    s = np.array([1.0, np.nan, 3.0, 3.0, 0.5])
    assert top_components(s, 5).tolist() == [2, 3, 0, 4, 1]  # highest first, ties by index, NaN last


def test_pattern_data_shows_the_worst_components_at_their_own_scale(demo_model):
    lm = demo_model.layer("_blocks[10]")
    d = lm.diagnostics
    data = pattern_data(lm, 5)
    for r, name in enumerate(("border_score", "position_score")):
        score = getattr(d, name)
        ref = sorted(range(lm.channels), key=lambda c: (-score[c] if np.isfinite(score[c]) else np.inf, c))[:5]
        assert data.components[r].tolist() == ref
        np.testing.assert_array_equal(data.scores[r], score[ref])
        up = lm.to_pixels(d.pattern_mean[ref][None].astype(np.float32))[0]     # (5, S, S)
        np.testing.assert_allclose(data.maps[r], up, rtol=1e-6)
        np.testing.assert_allclose(data.vmax[r], up.reshape(5, -1).max(1), rtol=1e-6)
    # the raster: every panel's brightest pixel is the top colour (its own maximum)
    rgb = render_pattern_raster(data)
    assert rgb.dtype == np.uint8 and rgb.ndim == 3
    top = colormap_lut()[255]
    assert (np.abs(rgb.astype(int) - top).sum(-1) < 40).sum() >= 10
    man = pattern_manifest(demo_model, lm, data)
    json.dumps(man)
    assert [row["components"] for row in man["rows"]] == data.components.tolist()
    with pytest.raises(ParamError, match="n"):
        pattern_data(lm, 0)
    with pytest.raises(ParamError, match="n"):
        pattern_data(lm, lm.channels + 1)


def test_pattern_exports_open(demo_model):
    from mvgviz.viewer.tables import pattern_file_bytes, pattern_manifest_bytes
    lm = demo_model.layer("_blocks[4]")
    png = pattern_file_bytes(lm, "png", 4)
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.shape[1] > 600 and img.std() > 10
    assert pattern_file_bytes(lm, "pdf", 4)[:5] == b"%PDF-"
    assert b"<svg" in pattern_file_bytes(lm, "svg", 4)[:2000]
    man = json.loads(pattern_manifest_bytes(demo_model, lm, 4))
    assert man["kind"] == "mvgviz-pattern-grid" and len(man["rows"][0]["components"]) == 4
