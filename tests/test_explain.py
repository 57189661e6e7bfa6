"""Explanations of the Gaussian methods (mvgviz.explain) against computations from the cached arrays."""

import cv2
import numpy as np
import pytest

from mvgviz.conventions import ParamError
from mvgviz.explain import (basis_note, cell_figure, component_maps, component_names, component_scale, decompose_cell,
                            decompose_image, image_figure, top_images, top_images_figure)
from mvgviz.results import Names

from methods_helpers import fit_methods

PIXELS = ((0, 0), (223, 223), (0, 223), (100, 57), (13, 200), (112, 112))


@pytest.fixture(scope="module")
def results(demo_root, demo_cache, demo_model):
    """The demo category's methods with explanations, fitted once into the session's demo cache."""
    return fit_methods(demo_root, demo_cache)


def _raw(r, name):
    """An array of the entry as stored (the reference: no accessor in between)."""
    return np.asarray(r.entry.array(name))


# ---------------------------------------------------------------------------------------
# Per-position components
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mvg", "mvg-concat", "padim"])
def test_a_cells_components_square_to_its_map_value(results, name):
    r = results[name]
    for split, image in (("test", 7), ("train", 2)):
        y = _raw(r, Names.components(split))[image].astype(np.float64)     # (C, h, w)
        m2 = _raw(r, Names.maps(split))[image]                             # (h, w)
        c, h, w = y.shape
        scored = r.maps(split, [image])[0]
        for row, col in PIXELS:
            d = decompose_cell(r, split, image, row, col, top=5)
            i, j = row * h // 224, col * w // 224
            assert d.cell == (i, j) and d.grid == (h, w) and d.cell_pixels == 224 // h
            np.testing.assert_array_equal(d.y2, y[:, i, j] ** 2)
            assert d.m2 == float(m2[i, j])
            assert d.total == pytest.approx(d.m2, rel=1e-4)           # sum of squares = the map (float32)
            assert d.shares.sum() == pytest.approx(1.0, abs=1e-12)
            ref = np.argsort(-d.y2, kind="stable")[:5]
            assert list(d.top) == ref.tolist()
            assert d.top_share == pytest.approx(d.y2[ref].sum() / d.y2.sum())
            assert d.pixel_value == float(scored[row, col])
    assert decompose_cell(r, "test", 0, 5, 5, top=10_000).top_share == pytest.approx(1.0)


def test_the_papers_gaussian_is_explained_as_its_layer_model(results, demo_model):
    r = results["mvg"]
    lm = demo_model.layer(r.options["layer"])
    d = decompose_cell(r, "test", 3, 150, 40)
    np.testing.assert_array_equal(d.y2, lm.y("test", [3])[0][:, d.cell[0], d.cell[1]].astype(np.float64) ** 2)


def test_per_position_components_are_flagged(results):
    assert results["padim"].components_per_position          # one Gaussian per position
    assert not results["mvg"].components_per_position
    assert not results["mvg-concat"].components_per_position
    assert decompose_cell(results["padim"], "test", 0, 10, 10).per_position
    assert not results["mvg-sum"].has_components and not results["gaussian-ad"].has_components
    # how the components were whitened, read from the fitted state
    assert results["mvg"].component_basis == "pca" and results["mvg-concat"].component_basis == "pca"
    assert results["padim"].component_basis == "cholesky"
    assert results["gaussian-ad"].component_basis is None
    assert "the same channel at every position" in basis_note(True, "cholesky")
    assert "different direction at each position" in basis_note(True, "pca")
    assert "the same at every position" in basis_note(False, "pca")


@pytest.mark.parametrize("name", ["mvg", "padim"])
def test_component_maps_add_up_to_the_bilinear_map(results, name):
    r = results[name]
    c = _raw(r, Names.components("test")).shape[1]
    maps = component_maps(r, "test", [4], list(range(c)))                 # (1, C, S, S)
    assert maps.shape == (1, c, 224, 224)
    m2 = _raw(r, Names.maps("test"))[4].astype(np.float32)
    ref = cv2.resize(m2, (224, 224), interpolation=cv2.INTER_LINEAR)      # OpenCV: independent upsampling
    np.testing.assert_allclose(maps[0].sum(0), ref, rtol=2e-4, atol=1e-3 * ref.max())
    small = component_maps(r, "test", 4, [2, 0], upsampled=False)
    np.testing.assert_array_equal(small[0], _raw(r, Names.components("test"))[4][[2, 0]] ** 2)


def test_component_scale_is_the_p99_of_its_squares(results):
    r = results["padim"]
    y = _raw(r, Names.components("test"))[:, 3].astype(np.float32)
    assert component_scale(r, "test", 3) == pytest.approx(float(np.percentile(y ** 2, 99)), rel=1e-6)


# ---------------------------------------------------------------------------------------
# Image-level components
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["gaussian-ad", "opca"])
def test_an_images_components_make_its_score(results, name):
    r = results[name]
    groups = r.component_groups
    ic = _raw(r, Names.image_components("test")).astype(np.float64)       # (N, K)
    scores = _raw(r, Names.image_scores("test"))
    assert sum(n for _, n in groups) == ic.shape[1]
    assert len(component_names(r)) == ic.shape[1]
    for image in (0, 5, len(scores) - 1):
        d = decompose_image(r, "test", image, top=6)
        np.testing.assert_array_equal(d.y2, ic[image] ** 2)
        bounds = np.cumsum([0] + [n for _, n in groups])
        ref_m2 = np.array([ic[image, a:b].__pow__(2).sum() for a, b in zip(bounds[:-1], bounds[1:])])
        np.testing.assert_allclose(d.group_m2, ref_m2, rtol=1e-12)
        # the seeds' score: the sum of the levels' distances (components stored as float32)
        assert d.score == float(scores[image])
        assert d.group_distance.sum() == pytest.approx(d.score, rel=1e-4)
        assert list(d.top) == np.argsort(-d.y2, kind="stable")[:6].tolist()
        assert d.shares.sum() == pytest.approx(1.0)
        for g in range(len(groups)):
            assert d.group_shares[d.group == g].sum() == pytest.approx(1.0)
        k = d.top[0]
        assert d.names[k].startswith(d.groups[d.group[k]] + " #")


def test_images_highest_on_a_component(results):
    r = results["gaussian-ad"]
    ic = _raw(r, Names.image_components("test")).astype(np.float64)
    scores = _raw(r, Names.image_scores("test"))
    for k in (0, ic.shape[1] // 2, ic.shape[1] - 1):
        t = top_images(r, "test", k, n=5)
        ref = np.argsort(-(ic[:, k] ** 2), kind="stable")[:5]
        np.testing.assert_array_equal(t.images, ref)
        np.testing.assert_array_equal(t.y2, ic[ref, k] ** 2)
        np.testing.assert_array_equal(t.scores, scores[ref])
        rank = np.empty(len(scores), int)
        rank[np.argsort(-scores, kind="stable")] = np.arange(1, len(scores) + 1)
        np.testing.assert_array_equal(t.ranks, rank[ref])
        assert t.name == component_names(r)[k]
    assert len(top_images(r, "train", 0, n=10_000).images) == _raw(r, Names.image_scores("train")).shape[0]


# ---------------------------------------------------------------------------------------
# Errors and figures
# ---------------------------------------------------------------------------------------

def test_errors_name_the_argument(results):
    with pytest.raises(ParamError, match="method.*per-position components"):
        decompose_cell(results["mvg-sum"], "test", 0, 0, 0)
    with pytest.raises(ParamError, match="method.*image-level"):
        decompose_image(results["padim"], "test", 0)
    with pytest.raises(ParamError, match="row"):
        decompose_cell(results["padim"], "test", 0, 224, 0)
    with pytest.raises(ParamError, match="image"):
        decompose_cell(results["padim"], "test", 10_000, 0, 0)
    with pytest.raises(ParamError, match="split"):
        decompose_image(results["opca"], "val", 0)
    with pytest.raises(ParamError, match="component"):
        top_images(results["opca"], "test", 10_000)
    with pytest.raises(ParamError, match="top"):
        decompose_image(results["opca"], "test", 0, top=0)


def test_figures(results, demo_model):
    d = decompose_cell(results["padim"], "test", 7, 100, 100, top=6)
    fig = cell_figure(d, label="padim")
    assert len(fig.data[0].x) == 6 and "c = the c-th kept embedding channel" in fig.layout.title.text
    assert "same direction everywhere" in cell_figure(decompose_cell(results["mvg"], "test", 7, 1, 1)).layout.title.text
    np.testing.assert_allclose(fig.data[0].y, d.top_values)
    e = decompose_image(results["opca"], "test", 3, top=4)
    fig = image_figure(e)
    assert list(fig.layout.xaxis.categoryarray) == [e.names[k] for k in e.top]
    shown = {x: y for t in fig.data for x, y in zip(t.x, t.y)}
    assert shown == {e.names[k]: e.y2[k] for k in e.top}
    assert all(t.name.split(" (")[0] in e.groups for t in fig.data)
    types = demo_model.data.defect_types("test")
    t = top_images(results["opca"], "test", e.top[0], n=3)
    fig = top_images_figure(t, types)
    assert list(fig.data[0].x) == [f"img {i} | {types[i]}" for i in t.images]
