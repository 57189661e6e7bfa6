"""The Streamlit viewer (app.py) driven by streamlit.testing.v1.AppTest on the demo data."""

import json
import os
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from mvgviz.cache import Store
from mvgviz.inspect import decompose_pixel
from mvgviz.selection import parse_components
from mvgviz.viewer.tables import merge_components

from conftest import write_category

APP = str(Path(__file__).resolve().parents[1] / "app.py")
TIMEOUT = 60
OTHER = "other folder ..."


def _new(monkeypatch, data, cache, *, autofit=True, fast_grid=False) -> AppTest:
    monkeypatch.setenv("MVGVIZ_DATA", os.pathsep.join(map(str, data)) if isinstance(data, (list, tuple)) else str(data))
    monkeypatch.setenv("MVGVIZ_CACHE", str(cache))
    monkeypatch.setenv("MVGVIZ_AUTOFIT", "1" if autofit else "0")
    # the Grid drawn by the server (st.image, the Components box a page control): AppTest runs no
    # browser, so the fastgrid component (the default) is tested in tests/test_browser.py
    monkeypatch.setenv("MVGVIZ_FAST_GRID", "0" if not fast_grid else "1")
    return AppTest.from_file(APP, default_timeout=TIMEOUT)


def _ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def _goto(at: AppTest, page: str) -> AppTest:
    at.sidebar.radio(key="page").set_value(page).run()
    return _ok(at)


def _errors(at: AppTest) -> str:
    """The page's error boxes as plain text (the app escapes markdown in messages)."""
    return re.sub(r"\\(.)", r"\1", " | ".join(e.value for e in at.error))


def _run_until(at: AppTest, cond, timeout=90.0) -> AppTest:
    t0 = time.time()
    while True:
        at.run()
        _ok(at)
        if cond(at):
            return at
        assert time.time() - t0 < timeout, f"condition not reached; errors: {_errors(at)}"
        time.sleep(0.3)


def _table(at: AppTest, column: str):
    for df in at.dataframe:
        if column in df.value.columns:
            return df.value
    raise AssertionError(f"no table with a column {column!r}")


@pytest.fixture
def app(monkeypatch, demo_model, demo_root, demo_cache):
    at = _new(monkeypatch, demo_root, demo_cache)
    _ok(at.run())
    return at


def _layer(at, model):
    return model.layer(at.sidebar.selectbox(key="layer::efficientnet_lite0").value)


# ---------------------------------------------------------------------------------------
# Pages on the demo data
# ---------------------------------------------------------------------------------------

def test_overview(app, demo_model, demo_root):
    at = app
    assert at.sidebar.radio(key="page").options == ["Overview", "Components", "Grid", "Inspect", "Diagnostics",
                                                    "Methods"]
    assert at.sidebar.selectbox(key="root_choice").value == str(demo_root)
    assert at.sidebar.selectbox(key=f"category::{demo_root}").options == ["brick", "coffee"]
    assert at.sidebar.selectbox(key="backbone").value == "efficientnet_lite0"
    assert at.sidebar.radio(key="split").options == ["test", "train"]
    assert "4 layers fitted" in at.sidebar.success[0].value
    df = _table(at, "pixel AUROC")
    assert list(df["layer"]) == list(demo_model.layers)
    for i, lm in enumerate(demo_model.layers.values()):
        m = lm.metrics
        assert df["channels"][i] == lm.channels
        assert df["feature size"][i].startswith(f"{lm.feature_size[0]}x{lm.feature_size[1]}")
        for col, k in (("image AUROC", "image_auroc"), ("pixel AUROC", "pixel_auroc"),
                       ("AUPR", "pixel_aupr"), ("AUPRO", "aupro")):
            assert df[col][i] == pytest.approx(m[k], abs=1e-12)


def test_components_selection_feeds_the_grid(app, demo_model):
    at = _goto(app, "Components")
    lm = _layer(at, demo_model)
    df = _table(at, "eigenvalue")
    assert len(df) == lm.channels
    np.testing.assert_allclose(df["AUROC"], lm.component_auroc)
    np.testing.assert_allclose(df["eigenvalue"], lm.eigvals)
    at.radio(key="comp_mode").set_value("worst k")
    at.number_input(key="comp_k").set_value(3)
    _ok(at.run())
    assert at.session_state["grid_components"] == "worst:3"
    worst = parse_components("worst:3", lm)
    assert ", ".join(f"c {i}" for i in worst) in at.success[0].value
    at.radio(key="comp_mode").set_value("indices")
    at.text_input(key="comp_indices").input("5,2")
    _ok(at.run())
    assert at.session_state["grid_components"] == "5,2"
    at = _goto(at, "Grid")
    assert at.text_input(key="grid_components").value == "5,2"
    cols = list(_table(at, "max (colour scale)")["column"])
    assert cols[0].startswith("c 5 ") and cols[1].startswith("c 2 ") and cols[-1] == "M2"


def test_grid_fast_component_and_fallback(monkeypatch, demo_model, demo_root, demo_cache):
    """The Grid drawn in the browser (MVGVIZ_FAST_GRID=1, the default): the page holds the fastgrid
    component instead of the server picture and the Components box; the scale table and the exports
    follow the session state's components (set by the Components page). The toggle off: the server
    picture and the box again."""
    at = _new(monkeypatch, demo_root, demo_cache, fast_grid=True)
    _ok(at.run())
    lm = _layer(at, demo_model)
    at.session_state["grid_components"] = "5,2"
    at = _goto(at, "Grid")
    assert not at.error, _errors(at)
    assert len(at.image) == 0
    assert not [t for t in at.text_input if t.key == "grid_components"]
    assert at.toggle(key="grid_fast").value is True
    cols = list(_table(at, "max (colour scale)")["column"])
    assert cols[0].startswith("c 5 ") and cols[1].startswith("c 2 ") and cols[-1] == "M2"
    per = _table(at, "max (colour scale)")
    assert per["max (colour scale)"][0] == pytest.approx(lm.stats("test").per_component_p99[5])
    assert any("Drawn in the browser" in c.value for c in at.caption)
    # the tiles come from mvgviz.render: every component of the layer, one per shown image
    from mvgviz.render import GridSpec
    from mvgviz.viewer.fastgrid import grid_payload
    pay = grid_payload(demo_model, GridSpec(layer=lm.name, images=(0, 3), components=(0,)))
    assert len(pay["tiles"]) == lm.channels and all(len(t) == 2 for t in pay["tiles"])
    assert pay["tiles"][0][0].startswith("data:image/jpeg;base64,") and len(pay["m2"]["tiles"]) == 2
    assert pay["ranking"] == [int(i) for i in lm.ranking()]
    # fallback: the server picture and the page's Components box
    at.toggle(key="grid_fast").set_value(False)
    _ok(at.run())
    assert len(at.image) == 1
    assert at.text_input(key="grid_components").value == "5,2"


def test_grid_scale_switch_changes_the_maxima(app, demo_model):
    at = _goto(app, "Grid")
    lm = _layer(at, demo_model)
    assert len(at.image) == 1
    at.text_input(key="grid_components").input("1,3")
    at.text_input(key="grid_images").input("0,7")
    _ok(at.run())
    st_test = lm.stats("test")
    per = _table(at, "max (colour scale)")
    np.testing.assert_allclose(per["max (colour scale)"],
                               [st_test.per_component_p99[1], st_test.per_component_p99[3], st_test.m2_p99])
    url_per = at.image[0].value
    at.radio(key="grid_scale").set_value("cross-component")
    _ok(at.run())
    cross = _table(at, "max (colour scale)")
    np.testing.assert_allclose(cross["max (colour scale)"],
                               [st_test.cross_component_p99] * 2 + [st_test.m2_p99])
    assert not np.allclose(per["max (colour scale)"][:2], cross["max (colour scale)"][:2])
    assert at.image[0].value != url_per, "the rendered grid must change"
    assert any("cross-component scale" in c.value for c in at.caption)
    # the train split uses the train statistics
    at.sidebar.radio(key="split").set_value("train")
    _ok(at.run())
    tr = _table(at, "max (colour scale)")["max (colour scale)"]
    np.testing.assert_allclose(tr, [lm.stats("train").cross_component_p99] * 2 + [lm.stats("train").m2_p99])
    # export buttons
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Download PNG", "Download PDF", "Download SVG", "Download manifest (JSON)"]


def test_grid_bad_selection_shows_an_error(app, demo_model):
    at = _goto(app, "Grid")
    lm = _layer(at, demo_model)
    at.text_input(key="grid_components").input("999")
    _ok(at.run())
    assert f"0..{lm.channels - 1}" in _errors(at) and "out of range" in _errors(at)
    assert len(at.image) == 0
    at.text_input(key="grid_components").input("best:2")
    at.text_input(key="grid_images").input("abc")
    _ok(at.run())
    # the page names its own control, not the CLI's option or the Python parameter
    assert _errors(at).startswith("Images must be indices like 0,5,9"), _errors(at)
    assert "--images" not in _errors(at) and "`images`" not in _errors(at)
    at.text_input(key="grid_images").input("0-2")
    _ok(at.run())
    assert not at.error and len(at.image) == 1


def test_layer_switch_rerenders(app, demo_model):
    at = _goto(app, "Grid")
    at.text_input(key="grid_components").input("0")
    _ok(at.run())
    first = at.image[0].value
    at.sidebar.selectbox(key="layer::efficientnet_lite0").set_value("_blocks[15]")
    _ok(at.run())
    assert at.image[0].value != first
    assert _table(at, "max (colour scale)")["max (colour scale)"][0] == pytest.approx(
        demo_model.layer("_blocks[15]").stats("test").per_component_p99[0])


def test_inspect_pixel(app, demo_model):
    at = _goto(app, "Inspect")
    lm = _layer(at, demo_model)
    image = at.selectbox(key="insp_image_test").value
    types = demo_model.data.defect_types("test")
    assert types[image] != "good", "starts on a defect image"
    at.number_input(key="insp_row").set_value(100)
    at.number_input(key="insp_col").set_value(57)
    _ok(at.run())
    d = decompose_pixel(lm, "test", image, 100, 57, top=8)
    df = _table(at, "y2 at pixel")
    assert list(df["component"]) == list(d.top)
    np.testing.assert_allclose(df["y2 at pixel"], d.top_values, rtol=1e-6)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["M2 at the pixel"] == f"{d.m2:.4g}"
    assert metrics["Share of the top 8"] == f"{d.top_share:.1%}"
    # add these components to the grid (after its current selection, without repeats)
    at.button(key="insp_add").click().run()
    _ok(at)
    text = at.session_state["grid_components"]
    assert text == merge_components(parse_components("best:4", lm), d.top)
    assert "Grid components" in at.success[0].value
    at = _goto(at, "Grid")
    assert at.text_input(key="grid_components").value == text
    assert not at.error


# ---------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------

def test_root_without_categories(monkeypatch, tmp_path):
    junk = tmp_path / "junk"
    (junk / "notes").mkdir(parents=True)
    (junk / "readme.txt").write_text("not a data set")
    at = _ok(_new(monkeypatch, junk, tmp_path / "cache").run())
    assert "no category in data root" in _errors(at) and str(junk) in _errors(at)
    assert at.sidebar.radio(key="page").value == "Overview"
    _goto(at, "Grid")  # the rest keeps working
    assert "no category" in _errors(at)


def test_path_outside_roots_is_refused(monkeypatch, tmp_path, demo_model, demo_root, demo_cache):
    data, outside = tmp_path / "data", tmp_path / "outside"
    write_category(outside, "secret")
    data.mkdir()
    (data / "escape").symlink_to(outside)
    at = _ok(_new(monkeypatch, [data, demo_root], demo_cache, autofit=False).run())
    at.sidebar.selectbox(key="root_choice").set_value(OTHER)
    _ok(at.run())
    for bad in ("/etc", str(outside), str(data / "escape"), f"{data}/../outside"):
        at.sidebar.text_input(key="root_typed").input(bad)
        _ok(at.run())
        assert "outside the allowed data roots" in _errors(at), bad
        assert "Refused" in at.sidebar.error[0].value
        assert len(at.dataframe) == 0
    # a folder inside an allowed root is accepted
    at.sidebar.text_input(key="root_typed").input(f"{data}/../{demo_root.name}" if demo_root.parent == data.parent
                                                   else str(demo_root))
    _ok(at.run())
    assert not at.error
    assert _table(at, "pixel AUROC") is not None


def test_failed_fit_shows_the_error(monkeypatch, tmp_path):
    root = tmp_path / "data"
    write_category(root, "broken")
    bad = root / "broken" / "test" / "good" / "001.png"
    bad.write_bytes(bad.read_bytes()[:50])
    at = _new(monkeypatch, root, tmp_path / "cache")  # the default model is fitted at once
    _run_until(at, lambda a: "failed" in _errors(a))
    assert "Fitting broken / efficientnet_lite0 failed" in _errors(at)
    assert "001.png" in _errors(at) and "truncated" in _errors(at)
    assert at.button(key="retry_button").label == "Retry the fit"
    assert "fit failed" in at.sidebar.error[0].value
    _goto(at, "Components")  # still usable
    assert "failed" in _errors(at)


def test_not_fitted_button_and_older_cache(monkeypatch, tmp_path, demo_root):
    cache = tmp_path / "cache"
    store = Store(cache)
    store.put("old", {"kind": "layer", "category": "coffee", "backbone": "efficientnet_lite0",
                      "layer": "_blocks[2]", "dataset": "x", "version": "0.0.0"}, {}, {"a": np.zeros(1)})
    store.close()
    at = _ok(_new(monkeypatch, demo_root, cache, autofit=False).run())
    assert at.button(key="fit_button").label == "Fit brick / efficientnet_lite0"
    assert "not fitted" in at.sidebar.warning[0].value
    at.sidebar.selectbox(key=f"category::{demo_root}").set_value("coffee")
    _ok(at.run())
    assert at.button(key="fit_button").label == "Fit coffee / efficientnet_lite0"
    assert any("older mvgviz version" in w.value and "will refit" in w.value for w in at.warning)
    assert not at.error


def test_fit_button_runs_in_the_background(monkeypatch, tmp_path):
    root = tmp_path / "data"
    write_category(root, "widget", n_train=4, n_good=2, n_defect=2)
    import mvgviz.pipeline
    orig = mvgviz.pipeline.fit
    gate = threading.Event()  # holds the fit until the test has seen the page come back

    def gated_fit(*args, **kw):
        assert gate.wait(60), "the test never released the fit"
        return orig(*args, **kw)

    monkeypatch.setattr(mvgviz.pipeline, "fit", gated_fit)
    at = _ok(_new(monkeypatch, root, tmp_path / "cache", autofit=False).run())
    at.button(key="fit_button").click()
    _ok(at.run())
    # right after the click the page is back at once, with the job's progress
    assert "Fitting widget / efficientnet_lite0" in [h.value for h in at.subheader]
    assert len(at.dataframe) == 0
    gate.set()
    _run_until(at, lambda a: len(a.dataframe) == 1)
    assert list(_table(at, "pixel AUROC")["layer"]) == ["_blocks[2]", "_blocks[4]", "_blocks[10]", "_blocks[15]"]


def test_first_start_writes_the_demo_data(monkeypatch, tmp_path):
    import mvgviz.demo
    orig = mvgviz.demo.make_demo_dataset
    gate = threading.Event()  # holds the writer until the test has seen the first page

    def make(root, **kw):
        assert gate.wait(60), "the test never released the demo data job"
        return orig(root, categories=("brick", "grass"), n_train=2, n_test_good=1, n_per_defect=1, **kw)

    monkeypatch.setattr(mvgviz.demo, "make_demo_dataset", make)
    root = tmp_path / "fresh" / "demo"
    at = _new(monkeypatch, root, tmp_path / "cache", autofit=False)
    _ok(at.run())
    assert any("First start" in i.value for i in at.info)
    assert not root.exists()
    gate.set()
    _run_until(at, lambda a: any(s.label == "Category" for s in a.sidebar.selectbox))
    assert at.sidebar.selectbox(key=f"category::{root}").options == ["brick", "grass"]
    assert at.button(key="fit_button").label == "Fit brick / efficientnet_lite0"


def test_category_without_masks_is_fitted_and_browsed(monkeypatch, tmp_path):
    """Normal images and unlabelled test images, no masks: the app fits it as unlabelled data, says
    why the metrics are n/a, and every page works."""
    import shutil
    root = tmp_path / "data"
    cat = write_category(root, "nomasks", n_train=4, n_good=1, n_defect=2)
    shutil.rmtree(cat / "ground_truth")
    for img in sorted((cat / "test").rglob("*.png")):  # every test image straight into test/
        img.rename(cat / "test" / f"{img.parent.name}_{img.name}")
    for sub in [p for p in (cat / "test").iterdir() if p.is_dir()]:
        sub.rmdir()
    at = _new(monkeypatch, root, tmp_path / "cache")  # the default model is fitted at once
    _run_until(at, lambda a: len(a.dataframe) == 1)
    table = _table(at, "pixel AUROC")
    assert table["pixel AUROC"].isna().all() and table["image AUROC"].isna().all()
    assert not at.error
    assert any("Unlabelled data" in i.value and "test" in i.value for i in at.sidebar.info)
    texts = [m.value for m in [*at.markdown, *at.caption, *at.info, *at.warning]]
    assert any("Metrics not available" in t for t in texts), texts
    _goto(at, "Components")
    assert _table(at, "AUROC")["AUROC"].isna().all() and not at.error
    _goto(at, "Grid")
    assert not at.error and at.session_state["grid_components"] == "0-3"
    assert at.image  # the grid is drawn
    _goto(at, "Inspect")
    assert not at.error
    # Diagnostics without masks: AUROC n/a, no oracle, no error
    _goto(at, "Diagnostics")
    assert not at.error
    assert _table(at, "border score")["AUROC"].isna().all()
    assert "n/a" in json.loads(_chart(at, "diag_spectrum"))["layout"]["title"]["text"]
    at.button(key="diag_variants_button").click().run()
    _ok(at)
    assert not at.error
    v = _table(at, "kept components")
    assert "oracle_best" not in " ".join(v["rule"]) and not v["oracle (reads test labels)"].any()
    assert v["rule"][0] == "full" and v["pixel AUROC"].isna().all()


# ---------------------------------------------------------------------------------------
# Issue 9: confinement on the cached path (item 11), a typed folder waits for Fit (item 12)
# ---------------------------------------------------------------------------------------

def _leaking_category(tmp_path):
    """A category in the data root whose train/good/000.png is a symlink to a file outside every root."""
    root, outside = tmp_path / "data", tmp_path / "outside"
    cat = write_category(root, "widget", n_train=4, n_good=1, n_defect=2)
    outside.mkdir()
    secret = outside / "secret.png"
    (cat / "train" / "good" / "000.png").rename(secret)
    (cat / "train" / "good" / "000.png").symlink_to(secret)
    return root


def test_leaking_category_is_refused_when_fitted_by_the_app(monkeypatch, tmp_path):
    root = _leaking_category(tmp_path)
    at = _new(monkeypatch, root, tmp_path / "cache")  # autofit: the app tries to fit it
    _run_until(at, lambda a: "outside the allowed data roots" in _errors(a))
    assert "000.png" in _errors(at) and len(at.dataframe) == 0 and not at.image
    assert Store(tmp_path / "cache").ls() == []


def test_leaking_category_fitted_by_the_cli_is_refused_from_the_cache(monkeypatch, tmp_path, capsys):
    from mvgviz.cli import main
    root = _leaking_category(tmp_path)
    cache = tmp_path / "cache"
    assert main(["fit", "--data", str(root), "--category", "widget", "--cache", str(cache), "--quiet"]) == 0
    assert [r["kind"] for r in Store(cache).ls()].count("layer") == 4
    at = _new(monkeypatch, root, cache, autofit=False)
    _run_until(at, lambda a: bool(a.error))
    assert "outside the allowed data roots" in _errors(at) and "000.png" in _errors(at)
    assert len(at.dataframe) == 0 and not at.image
    for page in ("Components", "Grid", "Inspect"):
        _goto(at, page)
        assert "outside the allowed data roots" in _errors(at) and len(at.dataframe) == 0 and not at.image


def test_typed_folder_waits_for_the_fit_button(monkeypatch, tmp_path):
    data = tmp_path / "data"
    write_category(data / "typed", "widget", n_train=4, n_good=1, n_defect=2)
    (data / "notes").mkdir()  # the configured root itself holds no category
    cache = tmp_path / "cache"
    at = _ok(_new(monkeypatch, data, cache, autofit=True).run())
    at.sidebar.selectbox(key="root_choice").set_value(OTHER)
    _ok(at.run())
    at.sidebar.text_input(key="root_typed").input(str(data / "typed"))
    _ok(at.run())
    time.sleep(1.0)
    _ok(at.run())
    assert at.button(key="fit_button").label == "Fit widget / efficientnet_lite0"
    assert "Fitting widget / efficientnet_lite0" not in [h.value for h in at.subheader]
    assert not list((cache / "entries").glob("*")) and not list((cache / "tmp").glob("*")), "a fit started"
    at.button(key="fit_button").click()  # the user asks: now it fits
    _ok(at.run())
    _run_until(at, lambda a: len(a.dataframe) == 1)


# Issue 10: the app's language, the image filter, weights, Inspect -> Grid
# ---------------------------------------------------------------------------------------

def _plain(at: AppTest) -> str:
    """Every message box of the page (errors, warnings, infos, successes), unescaped."""
    boxes = [*at.error, *at.warning, *at.info, *at.success, *at.sidebar.error, *at.sidebar.warning]
    return re.sub(r"\\(.)", r"\1", " | ".join(b.value for b in boxes))


def test_image_filter_says_what_it_keeps(app, demo_model):
    at = _goto(app, "Grid")
    types = demo_model.data.defect_types("test")
    f = at.selectbox(key="grid_filter_test")
    defects = sorted({t for t in types if t != "good"})
    assert f.options == ["all images", "good", "all defects", *defects]
    assert f.value == "all images"  # the default hides nothing
    at.text_input(key="grid_components").input("0")
    at.text_input(key="grid_images").input("all")
    _ok(at.run())
    assert "16 images selected" in _plain(at) or len(types) <= 16
    good = [i for i, t in enumerate(types) if t == "good"]
    bad = [i for i, t in enumerate(types) if t != "good"]
    # "all defects" + a typed good image: that image is left out, the page says so, the grid stays
    at.selectbox(key="grid_filter_test").set_value("all defects")
    at.text_input(key="grid_images").input(f"{good[0]},{bad[0]}")
    _ok(at.run())
    assert not at.error and len(at.image) == 1
    msg = _plain(at)
    assert f"{good[0]} (good) left out" in msg and "all defects" in msg, msg
    assert "--" not in msg and "'any'" not in msg
    assert list(_table(at, "max (colour scale)")["column"])[-1] == "M2"
    # only good images typed: the grid still shows them and explains why
    at.text_input(key="grid_images").input(str(good[0]))
    _ok(at.run())
    assert not at.error and len(at.image) == 1
    assert "showing them anyway" in _plain(at)
    # "good": random:N draws only good images
    at.selectbox(key="grid_filter_test").set_value("good")
    at.text_input(key="grid_images").input("random:2")
    _ok(at.run())
    assert not at.error and "left out" not in _plain(at)


def test_messages_speak_the_app(monkeypatch, tmp_path, demo_model, demo_root, demo_cache):
    """No command-line flag, no literal backtick, no '--' turned into a dash in what the app says."""
    at = _ok(_new(monkeypatch, demo_root, demo_cache).run())
    at.sidebar.selectbox(key="root_choice").set_value(OTHER)
    _ok(at.run())
    at.sidebar.text_input(key="root_typed").input("/etc")
    _ok(at.run())
    shown = _plain(at)
    assert "outside the allowed data roots" in shown
    assert "`" not in shown and "--" not in shown, shown
    # the markdown source escapes every '-' (markdown would make '--' a dash)
    assert all(re.search(r"(?<!\\)-", e.value) is None for e in at.error), [e.value for e in at.error]
    # every library error names the app's control
    at.sidebar.selectbox(key="root_choice").set_value(str(demo_root))
    _ok(at.run())
    at = _goto(at, "Grid")
    at.text_input(key="grid_components").input("0")
    at.text_input(key="grid_images").input("random:x")
    _ok(at.run())
    assert _errors(at).startswith("Images:"), _errors(at)
    assert "--" not in _errors(at) and "`" not in _errors(at)


def _resnet18_weights(path: Path) -> Path:
    import torch
    import torchvision
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def test_weights_file_from_a_data_root_and_by_upload(monkeypatch, tmp_path):
    import torch
    root = tmp_path / "data"
    write_category(root, "widget", n_train=4, n_good=1, n_defect=2)
    wfile = _resnet18_weights(root / "r18-test.pth")   # inside the data root
    cache = tmp_path / "cache"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # no standard resnet18 weights here
    at = _ok(_new(monkeypatch, root, cache, autofit=False).run())
    at.sidebar.selectbox(key="backbone").set_value("resnet18")
    _ok(at.run())
    assert at.sidebar.radio(key="weights_source").options == ["standard (ImageNet)", "file in a data root",
                                                               "upload a file"]
    # the standard weights are missing: the app says so in its own words
    text = _plain(at)
    assert "Weights: no pretrained weights" in text and "--weights" not in text, text
    at.sidebar.radio(key="weights_source").set_value("file in a data root")
    _ok(at.run())
    outside = _resnet18_weights(tmp_path / "outside.pth")
    at.sidebar.text_input(key="weights_typed").input(str(outside))
    _ok(at.run())
    assert "Weights: " in _errors(at) and "outside the allowed data roots" in _errors(at)
    at.sidebar.text_input(key="weights_typed").input(str(wfile))
    _ok(at.run())
    assert at.button(key="fit_button").label == "Fit widget / resnet18 (r18-test.pth)"
    at.button(key="fit_button").click()
    _ok(at.run())
    _run_until(at, lambda a: len(a.dataframe) == 1, timeout=180)
    caption = " ".join(c.value for c in [*at.caption, *at.sidebar.caption])
    assert "file:r18-test.pth:" in caption.replace("\\", ""), caption   # labelled on the page
    assert list(_table(at, "pixel AUROC")["layer"]) == ["layer1", "layer2", "layer3", "layer4"]
    # the same weights by upload: kept in the cache folder under their content hash
    import hashlib
    data = wfile.read_bytes()
    at.sidebar.radio(key="weights_source").set_value("upload a file")
    _ok(at.run())
    at.sidebar.get("file_uploader")[0].upload("r18-test.pth", data).run()
    _ok(at)
    saved = cache / "uploads" / hashlib.sha256(data).hexdigest()[:16] / "r18-test.pth"
    assert saved.is_file() and saved.read_bytes() == data
    assert at.button(key="fit_button").label == "Fit widget / resnet18 (r18-test.pth)"
    # an upload that is not a state dict of tensors is refused by torch.load(weights_only=True)
    import io
    import pickle
    buf = io.BytesIO()
    pickle.dump({"conv1.weight": _Evil(tmp_path / "pwned")}, buf)
    at.sidebar.get("file_uploader")[0].upload("evil.pth", buf.getvalue()).run()
    _ok(at)
    at.button(key="fit_button").click()
    _ok(at.run())
    _run_until(at, lambda a: "failed" in _errors(a), timeout=120)
    assert "Weights: " in _errors(at) and "cannot load" in _errors(at), _errors(at)
    assert not (tmp_path / "pwned").exists()
    assert torch is not None


class _Evil:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):  # runs os.system on an unsafe unpickling
        return (os.system, (f"touch '{self.path}'",))


def test_inspect_adds_its_image_to_the_grid(app, demo_model):
    at = _goto(app, "Inspect")
    types = demo_model.data.defect_types("test")
    good = next(i for i, t in enumerate(types) if t == "good")
    at.selectbox(key="insp_image_test").set_value(good)
    _ok(at.run())
    # the ground-truth outline: none on a good image, drawn on a defect image
    assert '"ground truth"' not in at.get("plotly_chart")[0].proto.spec
    defect = next(i for i, t in enumerate(types) if t != "good")
    at.selectbox(key="insp_image_test").set_value(defect)
    _ok(at.run())
    assert '"ground truth"' in at.get("plotly_chart")[0].proto.spec
    at.toggle(key="insp_outline").set_value(False)
    _ok(at.run())
    assert '"ground truth"' not in at.get("plotly_chart")[0].proto.spec
    at.selectbox(key="insp_image_test").set_value(good)
    _ok(at.run())
    at.session_state["grid_filter_test"] = "all defects"   # a filter that would hide this image
    at.button(key="insp_add").click().run()
    _ok(at)
    images = at.session_state["grid_images"]
    assert str(good) in images.split(",")
    assert "grid images" in at.success[0].value
    at = _goto(at, "Grid")
    assert at.selectbox(key="grid_filter_test").value == "all images"
    assert at.text_input(key="grid_images").value == images
    assert not at.error and "left out" not in _plain(at)
    assert any(c.startswith("c ") for c in _table(at, "max (colour scale)")["column"])


# ---------------------------------------------------------------------------------------
# Issue 11: the Diagnostics page
# ---------------------------------------------------------------------------------------

def _chart(at: AppTest, key: str) -> str:
    """The plotly figure JSON of the chart with widget key ``key``."""
    for el in at.get("plotly_chart"):
        if el.proto.id.endswith(key) or key in el.proto.id:
            return el.proto.spec
    raise AssertionError(f"no plotly chart {key!r}: {[el.proto.id for el in at.get('plotly_chart')]}")


def _arr(v) -> np.ndarray:
    """A plotly JSON array: a list, or a typed array ``{"dtype", "bdata"[, "shape"]}``."""
    if isinstance(v, dict) and "bdata" in v:
        import base64
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        shape = v.get("shape")
        if shape:
            a = a.reshape([int(x) for x in str(shape).split(",")])
        return a
    return np.asarray(v, dtype=float)


def test_diagnostics_page(app, demo_model):
    from mvgviz.agreement import agreement_map
    from mvgviz.render import pattern_data
    from mvgviz.variants import select, variants
    at = _goto(app, "Diagnostics")
    assert not at.error
    lm = _layer(at, demo_model)
    d = lm.diagnostics
    # 1. the component table: the library's scores, row i = component i
    df = _table(at, "border score")
    assert list(df["component"]) == list(range(lm.channels))
    np.testing.assert_allclose(df["eigenvalue"], lm.eigvals)
    np.testing.assert_allclose(df["AUROC"], lm.component_auroc)
    for col, ref in (("border score", d.border_score), ("corner score", d.corner_score),
                     ("position score", d.position_score), ("share y2 > 6.63 (train)", d.above_chi2_99),
                     ("excess kurtosis", d.excess_kurtosis),
                     ("p99 y2 train (chi2(1): 6.63)", lm.stats("train").per_component_p99)):
        np.testing.assert_allclose(df[col].astype(float), ref, equal_nan=True, err_msg=col)
    # 2. the pattern grid: the first picture (the second is the chosen image in every layer), its scale
    # said, exports offered
    assert len(at.image) == 2
    assert any("own maximum" in c.value for c in at.caption)
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Download PNG", "Download PDF", "Download SVG", "Download manifest (JSON)",
                      "Spectrum PNG", "Spectrum PDF", "Spectrum SVG", "Spectrum manifest (JSON)",
                      "Agreement PNG", "Agreement PDF", "Agreement SVG", "Agreement manifest (JSON)"]
    jpeg = at.image[0].value
    at.slider(key="diag_n").set_value(3).run()
    _ok(at)
    assert at.image[0].value != jpeg, "fewer components: another picture"
    assert pattern_data(lm, 3).components.shape == (2, 3)
    # the chosen test image in every layer (render.layers draws it; tested there)
    chosen = int(at.selectbox(key="diag_image").value)
    assert any(m.value == f"**Test image {chosen} in every layer**" for m in at.markdown)
    # curves, score histograms and the ranked images
    assert _chart(at, "diag_curves") and _chart(at, "diag_hist")
    ranked = _table(at, "rank")
    scores = lm.image_scores("test")
    assert list(ranked["image"]) == list(np.lexsort((np.arange(scores.size), -scores)))
    # 3. the spectrum: eigenvalues on a log axis, AUROC on y
    spec = json.loads(_chart(at, "diag_spectrum"))
    assert spec["layout"]["xaxis"]["type"] == "log"
    keep = lm.eigvals > 0
    np.testing.assert_allclose(_arr(spec["data"][0]["x"]), lm.eigvals[keep])
    np.testing.assert_allclose(_arr(spec["data"][0]["y"]), lm.component_auroc[keep])
    # 4. the agreement map of the chosen image, beside its M2
    image = at.selectbox(key="diag_image").value
    assert demo_model.data.defect_types("test")[image] != "good"
    comps = select(lm, "npca:5")
    z = _arr(json.loads(_chart(at, "diag_agreement"))["data"][0]["z"])
    np.testing.assert_array_equal(z, agreement_map(lm, "test", image, comps))
    assert '"M2"' in _chart(at, "diag_m2")
    other = next(i for i, t in enumerate(demo_model.data.defect_types("test")) if t == "good")
    at.selectbox(key="diag_image").set_value(other).run()
    _ok(at)
    z2 = _arr(json.loads(_chart(at, "diag_agreement"))["data"][0]["z"])
    np.testing.assert_array_equal(z2, agreement_map(lm, "test", other, comps))
    # 5. the variants: nothing before the button, then the library's rows, the oracle labelled
    assert not any("kept components" in t.value.columns for t in at.dataframe)
    at.button(key="diag_variants_button").click().run()
    _ok(at)
    v = _table(at, "kept components")
    rows = variants(demo_model, lm)
    assert list(v["rule"]) == [r["rule"] for r in rows]
    assert list(v["kept components"]) == [r["n_components"] for r in rows]
    assert list(v["oracle (reads test labels)"]) == [r["rule"].startswith("oracle") for r in rows]
    assert v["oracle (reads test labels)"].any()
    for col, k in (("image AUROC", "image_auroc"), ("pixel AUROC", "pixel_auroc"), ("AUPR", "pixel_aupr"),
                   ("AUPRO", "aupro")):
        np.testing.assert_allclose(v[col].astype(float), [r[k] for r in rows], rtol=1e-9, err_msg=col)
    # their curves beside the table: every model in the four panels (image ROC, pixel ROC, PR, PRO)
    from mvgviz.inspect import variant_name
    with_curves = variants(demo_model, lm, curves=True)
    fig = json.loads(_chart(at, "diag_variant_curves"))
    assert len(fig["data"]) == 4 * len(with_curves)
    legend = [t["name"] for t in fig["data"] if t.get("showlegend")]
    assert [n.split(": pixel AUROC")[0] for n in legend] == [variant_name(r) for r in with_curves]
    assert any("oracle" in n for n in legend)
    for r in with_curves:
        traces = [t for t in fig["data"] if t["legendgroup"].startswith(variant_name(r) + ":")]
        assert len(traces) == 4, r["rule"]
        for t, key in zip(traces, ("image_roc", "roc", "pr", "pro")):
            np.testing.assert_allclose(_arr(t["x"]), r["curves"][key]["x"], err_msg=f"{r['rule']} {key}")
            np.testing.assert_allclose(_arr(t["y"]), r["curves"][key]["y"], err_msg=f"{r['rule']} {key}")
        assert all(t["line"].get("dash") == "dash" for t in traces) == bool(r["oracle"])
    # the table stays on reruns of the same layer, and is gone on another layer until asked for
    at.slider(key="diag_n").set_value(4).run()
    assert any("kept components" in t.value.columns for t in _ok(at).dataframe)
    names = list(demo_model.layers)
    other_layer = next(n for n in names if n != lm.name)
    at.sidebar.selectbox(key="layer::efficientnet_lite0").set_value(other_layer).run()
    _ok(at)
    assert not at.error
    assert not any("kept components" in t.value.columns for t in at.dataframe)



# ---------------------------------------------------------------------------------------
# Issue 11: a component subset is a model option (the sidebar's "Model: M2 over")
# ---------------------------------------------------------------------------------------

def test_model_control_subset_changes_grid_overview_and_inspect(app, demo_model):
    from mvgviz.inspect import argmax_pixel
    from mvgviz.variants import evaluate_subset, select, subset_of
    at = _goto(app, "Grid")
    lm = _layer(at, demo_model)
    control = at.sidebar.selectbox(key="model_subset")
    assert control.label == "Model: M2 over" and control.value == "all components"
    assert "oracle_best:5 (oracle: reads test labels)" in control.options   # the oracle only labelled so
    at.text_input(key="grid_components").input("1,3")
    at.text_input(key="grid_images").input("0,7")
    _ok(at.run())
    before = at.image[0].value
    full_table = _table(at, "max (colour scale)")
    assert list(full_table["column"])[-1] == "M2"
    # the Grid: its M2 column is the subset model's M2_S, on the p99 of M2_S over the split
    at.sidebar.selectbox(key="model_subset").set_value("npca:5").run()
    _ok(at)
    assert not at.error
    assert at.image[0].value != before, "the picture must change"
    comps = select(lm, "npca:5")
    t = _table(at, "max (colour scale)")
    assert list(t["column"])[-1] == "M2 [npca:5]" and list(t["scale"])[-1] == "M2 [npca:5]"
    assert t["max (colour scale)"].iloc[-1] == pytest.approx(lm.m2_subset_p99("test", comps), rel=1e-12)
    np.testing.assert_allclose(t["max (colour scale)"].iloc[:2], full_table["max (colour scale)"].iloc[:2])
    sub = subset_of(lm, "npca:5")
    assert any(sub.description in re.sub(r"\\(.)", r"\1", c.value) for c in at.sidebar.caption)
    assert any("M2 column: the subset model" in c.value for c in at.caption)
    # the Overview: the subset's metrics beside the full model's, as evaluate_subset computes them
    at = _goto(at, "Overview")
    assert at.sidebar.selectbox(key="model_subset").value == "npca:5"        # kept across pages
    df = _table(at, "rule reads")
    m = evaluate_subset(demo_model, lm, comps)
    assert list(df["model"]) == ["M2 (all components)", "M2 [npca:5]"]
    assert list(df["components"]) == [lm.channels, len(comps)]
    assert list(df["rule reads"]) == ["-", "train split only"]
    for col, k in (("image AUROC", "image_auroc"), ("pixel AUROC", "pixel_auroc"), ("AUPR", "pixel_aupr"),
                   ("AUPRO", "aupro")):
        assert df[col][0] == pytest.approx(lm.metrics[k], abs=1e-12), col
        assert df[col][1] == pytest.approx(m[k], abs=1e-12), col
    assert df["pixel AUROC"][1] != pytest.approx(df["pixel AUROC"][0], abs=1e-9)
    # Inspect: the map is M2_S, the pixel starts at its maximum, the bars hold the subset's components
    at = _goto(at, "Inspect")
    assert not at.error
    image = at.selectbox(key="insp_image_test").value
    r, c = int(at.session_state["insp_row"]), int(at.session_state["insp_col"])
    assert (r, c) == argmax_pixel(lm, "test", image, subset=sub)
    d = decompose_pixel(lm, "test", image, r, c, top=8, subset=sub)
    assert {x.label: x.value for x in at.metric}["M2_S at the pixel"] == f"{d.m2:.4g}"
    tab = _table(at, "y2 at pixel")
    assert list(tab["component"]) == list(d.top) and set(d.top) <= set(comps.tolist())
    assert "share of M2 [npca:5]" in tab.columns
    chart = json.loads(_chart(at, "insp_chart"))
    heat = next(tr for tr in chart["data"] if tr.get("type") == "heatmap")
    assert heat["name"] == "M2 [npca:5]"
    np.testing.assert_array_equal(_arr(heat["z"]).astype(np.float32), lm.m2_subset("test", comps, [image])[0])
    # the oracle: labelled as such wherever it shows
    at.sidebar.selectbox(key="model_subset").set_value("oracle_best:5").run()
    _ok(at)
    assert any("oracle: reads test labels" in w.value for w in at.sidebar.warning)
    at = _goto(at, "Overview")
    assert list(_table(at, "rule reads")["rule reads"]) == ["-", "test labels (oracle)"]
    # back to all components: the full model, no subset table
    at.sidebar.selectbox(key="model_subset").set_value("all components").run()
    _ok(at)
    assert not any("rule reads" in x.value.columns for x in at.dataframe)


def test_model_control_bad_rule_names_the_control(app, demo_model):
    from mvgviz.variants import default_rules
    at = _goto(app, "Grid")
    lm = _layer(at, demo_model)
    at.sidebar.selectbox(key="model_subset").set_value("a typed rule ...").run()
    _ok(at)
    assert not at.error and list(_table(at, "max (colour scale)")["column"])[-1] == "M2"   # nothing typed yet
    for typed, msg in (("bogus:2", "Model: M2 over must be one of drop_border:N"),
                       ("npca:", "Model: M2 over: 'npca:' needs a number after 'npca:'"),
                       ("drop_border:999", f"Model: M2 over: drop_border:N needs an integer N in 0..{lm.channels - 1}")):
        at.sidebar.text_input(key="model_subset_typed").input(typed).run()
        _ok(at)                                                                # no traceback
        assert msg in _errors(at), _errors(at)
        assert "--subset" not in _errors(at) and "`subset`" not in _errors(at)
        assert "full model" in _errors(at)
        assert len(at.image) == 1 and list(_table(at, "max (colour scale)")["column"])[-1] == "M2"
    at.sidebar.text_input(key="model_subset_typed").input("Drop_Border: 3").run()
    _ok(at)
    assert not at.error and list(_table(at, "max (colour scale)")["column"])[-1] == "M2 [drop_border:3]"
    # the Diagnostics page's variants add the control's rule to the default ones
    at = _goto(at, "Diagnostics")
    at.button(key="diag_variants_button").click().run()
    _ok(at)
    assert list(_table(at, "kept components")["rule"]) == ["full", *default_rules(lm.channels), "drop_border:3"]


# ---------------------------------------------------------------------------------------
# The Methods page: several methods on the same data
# ---------------------------------------------------------------------------------------

@pytest.fixture
def methods_app(monkeypatch, demo_model, demo_root, demo_cache):
    """The app on the demo data (the Methods page reads methods through the registry only)."""
    at = _new(monkeypatch, demo_root, demo_cache)
    _ok(at.run())
    return at


def _run_methods(at: AppTest, names) -> AppTest:
    at.multiselect(key="methods_selected").set_value(list(names)).run()
    _ok(at)
    at.button(key="methods_run").click().run()
    _ok(at)
    return _run_until(at, lambda a: a.dataframe and "not run" not in list(_table(a, "status")["status"])
                      and not a.get("progress"), timeout=240)


def test_methods_page_compares_and_shows_errors(methods_app, demo_root, demo_cache, monkeypatch):
    from mvgviz.compare import label
    from mvgviz.models.spade import SPADE
    from mvgviz.pipeline import load_method
    from mvgviz.viewer.methods import TABLE_COLUMNS
    # SPADE asked for the seeds' K = 50 explicitly (its default caps K at the train set's size):
    # it cannot run on the 16 train images, and the page must say so
    seeds = SPADE.for_backbone.__func__
    monkeypatch.setattr(SPADE, "for_backbone", classmethod(lambda cls, spec, **kw: seeds(cls, spec, **{"k": 50, **kw})))
    at = _goto(methods_app, "Methods")
    assert at.multiselect(key="methods_selected").value == at.multiselect(key="methods_selected").options
    names = ["mvg", "padim", "spade", "gaussian-ad"]
    at = _run_methods(at, names)
    df = _table(at, "status")
    assert list(df.columns) == [c for c, _ in TABLE_COLUMNS]
    assert list(df["method"]) == names
    assert list(df["status"]) == ["ok", "ok", "error", "ok"]
    # the rows are the cached results' (the JSON schema of mvgviz compare), with numeric, sortable metrics
    for name in ("mvg", "padim", "gaussian-ad"):
        r = load_method(demo_root, "brick", name, cache=demo_cache)
        row = df[df["method"] == label(name, r.options, "efficientnet_lite0")].iloc[0]
        for col, k in (("image AUROC", "image_auroc"), ("pixel AUROC", "pixel_auroc"), ("AUPR", "pixel_aupr"),
                       ("AUPRO", "aupro"), ("fit s", "fit_seconds"), ("peak MB", "peak_memory_mb")):
            ref = r.summary()[k]
            assert (np.isnan(row[col]) if ref is None else row[col] == pytest.approx(ref)), (name, col)
    assert df["image AUROC"].dtype.kind == "f"
    by_auroc = df.sort_values("image AUROC", ascending=False, na_position="last")
    assert list(by_auroc["method"])[-1] == "spade"
    # SPADE cannot run on 16 train images (K = 50): its message, no traceback, the others shown
    assert "spade: option k must be at most the train set's size" in _errors(at)
    assert "Traceback" not in _errors(at)
    assert df[df["method"] == "spade"]["note"].iloc[0].startswith("spade: option k")
    # a null metric says why
    notes = " | ".join(c.value for c in at.caption)
    assert re.search(r"gaussian\\?-ad: pixel AUROC, AUPR, AUPRO n/a", notes), notes
    # the heatmaps: one picture, a scale per method with maps, exports like the Grid's
    assert len(at.image) == 1
    scale = _table(at, "max (colour scale)")
    assert list(scale["method"]) == ["mvg", "padim", "gaussian-ad"]
    assert scale["max (colour scale)"].iloc[2] is None or np.isnan(scale["max (colour scale)"].iloc[2])
    from mvgviz.render.methods import map_scale
    r = load_method(demo_root, "brick", "padim", cache=demo_cache)
    assert scale["max (colour scale)"].iloc[1] == pytest.approx(map_scale(r, "test"))
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Download PNG", "Download PDF", "Download SVG", "Download manifest (JSON)"]
    jpeg = at.image[0].value
    at.radio(key="methods_scale_split").set_value("train").run()
    _ok(at)
    assert at.image[0].value != jpeg
    assert _table(at, "max (colour scale)")["max (colour scale)"].iloc[1] == pytest.approx(map_scale(r, "train"))


def test_methods_page_explains_the_gaussians(methods_app, demo_root, demo_cache):
    from mvgviz.explain import decompose_cell, decompose_image, top_images
    from mvgviz.pipeline import load_method
    at = _goto(methods_app, "Methods")
    at = _run_methods(at, ["padim", "gaussian-ad"])
    assert at.selectbox(key="mx_method").options == ["padim", "gaussian-ad"]
    # PaDiM: one cell's M2 split into components; the per-position caveat said
    image = int(at.selectbox(key="mx_image").value)
    assert any("One Gaussian per position" in i.value for i in at.info)
    r = load_method(demo_root, "brick", "padim", cache=demo_cache)
    at.number_input(key="mx_row").set_value(60).run()
    at.number_input(key="mx_col").set_value(150).run()
    _ok(at)
    d = decompose_cell(r, "test", image, 60, 150, top=8)
    bars = json.loads(_chart(at, "mx_bars"))["data"][0]
    np.testing.assert_allclose(_arr(bars["y"]), d.top_values, rtol=1e-6)
    assert bars["x"] == [f"c {c}" for c in d.top]
    assert _chart(at, "mx_component_map")
    # Gaussian-AD: the components driving the image's score, and the images highest on one
    at.selectbox(key="mx_method").set_value("gaussian-ad").run()
    _ok(at)
    g = load_method(demo_root, "brick", "gaussian-ad", cache=demo_cache)
    e = decompose_image(g, "test", image, top=10)
    ibars = json.loads(_chart(at, "mx_ibars"))
    assert ibars["layout"]["xaxis"]["categoryarray"] == [e.names[k] for k in e.top]
    assert sorted(x for t in ibars["data"] for x in t["x"]) == sorted(e.names[k] for k in e.top)
    t = top_images(g, "test", e.top[0], n=8)
    top = json.loads(_chart(at, "mx_topimages"))["data"][0]
    types = g.data.defect_types("test")
    assert top["x"] == [f"img {i} | {types[i]}" for i in t.images]
    assert not at.error


def test_overview_compares_another_input_resolution(app, demo_model, demo_root, demo_cache):
    """Issue 11: the same layers at a larger input, fitted in the background, metrics beside the model's."""
    from mvgviz.data import Preprocessing
    from mvgviz.pipeline import load
    at = app
    at.selectbox(key="resolution_choice").set_value("320/288").run()
    _ok(at)
    at.button(key="resolution_fit").click().run()
    _ok(at)
    at = _run_until(at, lambda a: any("pixel AUROC @ 288" in d.value.columns for d in a.dataframe), timeout=240)
    df = _table(at, "pixel AUROC @ 288")
    other = load(demo_root, "brick", cache=demo_cache, preprocessing=Preprocessing(320, 288))
    assert other is not None and list(df["layer"]) == list(demo_model.layers)
    for i, (name, lm) in enumerate(demo_model.layers.items()):
        assert df["pixel AUROC @ 224"][i] == pytest.approx(lm.metrics["pixel_auroc"], abs=1e-12)
        assert df["pixel AUROC @ 288"][i] == pytest.approx(other.layer(name).metrics["pixel_auroc"], abs=1e-12)
        h, w = other.layer(name).feature_size
        assert df["cells @ 288"][i].startswith(f"{h}x{w}") and h > lm.feature_size[0]
