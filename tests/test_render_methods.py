"""Several methods' heatmaps side by side (mvgviz.render.methods) and their files (mvgviz.viewer.methods)."""

import json

import numpy as np
import pytest

from mvgviz.conventions import ParamError
from mvgviz.render import render_figure, render_raster
from mvgviz.render.methods import MethodsSpec, map_scale, methods_data, methods_manifest

from methods_helpers import fit_methods

NAMES = ("mvg", "padim", "gaussian-ad", "opca")


@pytest.fixture(scope="module")
def results(demo_root, demo_cache, demo_model):
    return fit_methods(demo_root, demo_cache, NAMES)


def test_each_column_has_its_methods_p99_scale(results):
    for name in ("mvg", "padim", "opca"):
        r = results[name]
        for split in ("test", "train"):
            ref = np.percentile(r.maps(split).ravel(), 99)             # every value, as scored
            assert map_scale(r, split) == pytest.approx(float(ref), rel=1e-6)
    spec = MethodsSpec(images=(0, 3, 9), scale_split="train")
    d = methods_data(results, spec)
    assert d.maps.shape == (3, 4, 224, 224) and d.n_cols == 4
    for j, name in enumerate(NAMES):
        r = results[name]
        if r.has_maps:
            np.testing.assert_array_equal(d.maps[:, j], r.maps("test", [0, 3, 9]))
            assert d.vmax[j] == pytest.approx(map_scale(r, "train"))
            assert d.scale_label((j,)) == "max = p99 (train)"
    assert d.blank_columns == (2,)                                    # gaussian-ad: no pixel map
    assert d.scale_groups == ((0,), (1,), (3,))
    score = results["gaussian-ad"].image_scores("test")[3]
    assert d.blank_texts[1][2] == f"no pixel map | image score {score:.4g}"
    assert d.column_labels[2] == "gaussian-ad (no pixel map)"
    assert d.column_labels[1].startswith("padim (AUROC 0.")
    assert d.panel_labels[1][3] == "8 | img 3 | opca"
    assert "p99 of that method's maps (as scored) over the train split" in d.scale_note
    given = methods_data(results, spec, scales={"mvg": 7.0})
    assert given.vmax[0] == 7.0


def test_raster_and_figure_draw_every_column(results):
    d = methods_data(results, MethodsSpec(images=(0, 5)))
    raster = render_raster(d, width=920)
    assert raster.shape[1] <= 920 and raster.std() > 10
    fig = render_figure(d)
    assert len([a for a in fig.axes if a.get_gid() and a.get_gid().startswith("colorbar")]) == 3
    texts = [t.get_text() for a in fig.axes for t in a.texts]
    assert any(t.startswith("no pixel map") for t in texts)
    blank = [im for a in fig.axes for im in a.images if im.get_gid() == "heatmap-r0-c2"][0]
    px = blank._pixels.get_array()
    img = d.images[0].astype(np.float64)
    assert np.abs(px.astype(np.float64) - (0.35 * img + 0.65 * 255)).max() <= 1   # the faded image


def test_manifest_and_errors(results):
    spec = MethodsSpec(images=(1, 2))
    d = methods_data(results, spec)
    man = methods_manifest(results, spec, d, root="/data")
    json.dumps(man)
    assert man["kind"] == "mvgviz-methods-figure" and man["spec"]["images"] == [1, 2]
    assert [m["label"] for m in man["methods"]] == list(NAMES)
    assert man["methods"][2]["vmax"] is None and man["scale"]["vmax"][2] is None
    assert man["methods"][1]["vmax"] == pytest.approx(float(d.vmax[1]))
    assert man["methods"][1]["cache_key"] == results["padim"].cache_key
    assert MethodsSpec.from_dict(man["spec"]) == spec
    with pytest.raises(ParamError, match="images"):
        methods_data(results, MethodsSpec(images=(10_000,)))
    with pytest.raises(ParamError, match="scale_split"):
        MethodsSpec(scale_split="val")
    with pytest.raises(ParamError, match="methods"):
        methods_data({}, spec)


def test_files_of_every_format(results):
    from mvgviz.viewer.methods import methods_file_bytes, methods_manifest_bytes
    spec = MethodsSpec(images=(0, 4))
    png = methods_file_bytes(results, spec, "png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert methods_file_bytes(results, spec, "pdf")[:5] == b"%PDF-"
    assert b"<svg" in methods_file_bytes(results, spec, "svg")[:1000]
    man = json.loads(methods_manifest_bytes(results, spec, root="/r"))
    assert man["data"]["root"] == "/r"
    with pytest.raises(ValueError, match="fmt"):
        methods_file_bytes(results, spec, "gif")
