"""Publication figures of the Diagnostics views (mvgviz.render.charts) in every format."""

import json

import cv2
import numpy as np
import pytest

from mvgviz.conventions import ParamError
from mvgviz.render.charts import agreement_figure_mpl, chart_manifest, spectrum_figure
from mvgviz.viewer.tables import chart_file_bytes, chart_manifest_bytes


@pytest.mark.parametrize("fmt", ["png", "pdf", "svg"])
def test_both_views_export_in_every_format(demo_model, fmt):
    lm = demo_model.layer("_blocks[10]")
    for view, params in (("spectrum", {}), ("agreement", {"image": 7, "components": [1, 2, 3], "rule": "x"})):
        data = chart_file_bytes(demo_model, lm, view, fmt, **params)
        head = {"png": b"\x89PNG", "pdf": b"%PDF", "svg": b"<?xml"}[fmt]
        assert data.startswith(head), view
        if fmt == "png":
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            assert img is not None and img.shape[1] >= 1000  # >= 200 dpi on a 6-7 inch figure


def test_spectrum_plots_every_live_component(demo_model):
    lm = demo_model.layer("_blocks[10]")
    fig = spectrum_figure(demo_model, lm)
    ax = fig.axes[0]
    pts = ax.collections[0].get_offsets()
    live = lm.eigvals > 0
    np.testing.assert_allclose(np.asarray(pts)[:, 0], lm.eigvals[live])
    np.testing.assert_allclose(np.asarray(pts)[:, 1], lm.component_auroc[live])
    assert ax.get_xscale() == "log"


def test_agreement_figure_shows_the_agreement_map(demo_model):
    from mvgviz.agreement import agreement_map
    lm = demo_model.layer("_blocks[4]")
    fig = agreement_figure_mpl(demo_model, lm, 7, [0, 5, 9])
    shown = fig.axes[1].images[0].get_array()
    np.testing.assert_array_equal(np.asarray(shown), agreement_map(lm, "test", 7, np.array([0, 5, 9])))


def test_manifest(demo_model):
    lm = demo_model.layer("_blocks[10]")
    m = json.loads(chart_manifest_bytes(demo_model, lm, "agreement", image=3, components=np.array([1, 4]), rule="npca:5"))
    assert m["view"] == "agreement" and m["layer"] == "_blocks[10]" and m["params"]["components"] == [1, 4]
    assert m["metrics"] == lm.metrics and m["model"]["backbone"] == "efficientnet_lite0"
    with pytest.raises(ParamError, match="`view` must be one of spectrum, agreement"):
        chart_manifest(demo_model, lm, "grid")
