"""Configuration of the viewer, path confinement, category discovery, cache notes (mvgviz.viewer.config)."""

import os

import numpy as np
import pytest

import mvgviz.viewer.config as C
from mvgviz import __version__
from mvgviz.cache import Store
from mvgviz.data import DataError

from conftest import write_category


def test_config_defaults(tmp_path, monkeypatch):
    cfg = C.parse_app_args([], {}, app_dir=tmp_path)
    assert cfg.data_roots == ()
    assert cfg.demo_root == tmp_path / "demo_data"
    assert cfg.roots == (tmp_path / "demo_data",)
    assert cfg.autofit is True
    monkeypatch.setenv("MVGVIZ_CACHE", str(tmp_path / "c"))
    assert C.parse_app_args([], None, app_dir=tmp_path).cache == tmp_path / "c"


def test_config_env_and_cli(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    env = {"MVGVIZ_DATA": f"{a}{os.pathsep}{b}", "MVGVIZ_CACHE": str(tmp_path / "envcache"),
           "MVGVIZ_AUTOFIT": "0"}
    cfg = C.parse_app_args([], env, app_dir=tmp_path)
    assert cfg.data_roots == (a, b) and cfg.cache == tmp_path / "envcache" and cfg.autofit is False
    assert cfg.roots == (a, b, tmp_path / "demo_data")
    # the command line wins; unknown arguments (pytest's own) are ignored
    cfg = C.parse_app_args(["-q", "tests/x.py", "--data", str(c), "--cache", str(tmp_path / "cli"),
                            "--cache-clear"], env, app_dir=tmp_path)
    assert cfg.data_roots == (c,) and cfg.cache == tmp_path / "cli"
    cfg = C.parse_app_args(["--data", str(a), "--data", str(b), "--no-autofit"], {}, app_dir=tmp_path)
    assert cfg.data_roots == (a, b) and cfg.autofit is False


def test_config_roots_without_repeats(tmp_path):
    demo = tmp_path / "demo_data"
    cfg = C.parse_app_args(["--data", str(demo)], {}, app_dir=tmp_path)
    assert cfg.roots == (demo,)
    assert cfg.allowed == (demo.resolve(),)


@pytest.fixture
def roots(tmp_path):
    allowed = tmp_path / "allowed"
    outside = tmp_path / "outside"
    write_category(allowed, "widget")
    write_category(outside, "secret")
    return allowed, outside


def test_resolve_inside_accepts_root_and_subfolders(roots):
    allowed, _ = roots
    assert C.resolve_inside(allowed, [allowed]) == allowed.resolve()
    assert C.resolve_inside(str(allowed / "widget"), [allowed]) == (allowed / "widget").resolve()
    assert C.resolve_inside(f"  {allowed}/widget/../widget ", [allowed]) == (allowed / "widget").resolve()


def test_resolve_inside_refuses_outside(roots, tmp_path):
    allowed, outside = roots
    with pytest.raises(C.PathNotAllowed, match="outside the allowed data roots"):
        C.resolve_inside(outside, [allowed])
    with pytest.raises(C.PathNotAllowed, match="resolves to"):
        C.resolve_inside(f"{allowed}/../outside", [allowed])
    with pytest.raises(C.PathNotAllowed, match="outside"):
        C.resolve_inside("/etc", [allowed])
    with pytest.raises(C.PathNotAllowed, match="empty"):
        C.resolve_inside("  ", [allowed])
    # a sibling whose name starts like the root is not inside it
    (tmp_path / "allowed2").mkdir()
    with pytest.raises(C.PathNotAllowed):
        C.resolve_inside(tmp_path / "allowed2", [allowed])
    assert issubclass(C.PathNotAllowed, DataError)


def test_symlinks_out_of_the_roots_are_refused(roots):
    allowed, outside = roots
    (allowed / "link").symlink_to(outside)
    with pytest.raises(C.PathNotAllowed, match="resolves to"):
        C.resolve_inside(allowed / "link", [allowed])
    # a symlinked category is skipped by discovery, with the reason
    (allowed / "secret").symlink_to(outside / "secret")
    cats = C.discover_categories(allowed, [allowed])
    assert cats.names == ("widget",)
    assert [n for n, _ in cats.skipped] == ["secret"] and "outside" in cats.skipped[0][1]
    # a symlinked image inside a category is refused before fitting
    C.check_category_files(allowed, "widget", [allowed])
    img = next((outside / "secret" / "train" / "good").iterdir())
    (allowed / "widget" / "train" / "good" / "zzz.png").symlink_to(img)
    with pytest.raises(C.PathNotAllowed, match="zzz.png"):
        C.check_category_files(allowed, "widget", [allowed])
    # allowed when the target's root is allowed too
    C.check_category_files(allowed, "widget", [allowed, outside])


def test_discovery_and_demo_detection(tmp_path, roots):
    allowed, _ = roots
    assert C.discover_categories(allowed, [allowed]).names == ("widget",)
    assert C.needs_demo_data(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    assert C.needs_demo_data(tmp_path / "empty")
    junk = tmp_path / "junk"
    (junk / "notes").mkdir(parents=True)
    assert not C.needs_demo_data(junk)
    assert C.discover_categories(junk, [junk]).names == ()
    assert "no category" in C.no_category_message(junk)
    with pytest.raises(DataError, match="not a folder"):
        C.discover_categories(tmp_path / "missing", [tmp_path])


def test_hidden_and_partial_folders_are_not_categories(tmp_path):
    root = tmp_path / "data"
    write_category(root, "widget")
    write_category(root, ".widget.partial-123-abc")
    assert C.discover_categories(root, [root]).names == ("widget",)


def test_cache_notes_old_version(demo_root, tmp_path):
    store = Store(tmp_path / "cache")
    assert C.cache_notes(store, demo_root, "coffee", "efficientnet_lite0") == []
    parts = {"kind": "layer", "category": "coffee", "backbone": "efficientnet_lite0", "layer": "_blocks[2]",
             "dataset": "x", "version": "0.0.1"}
    store.put("old", parts, {}, {"a": np.zeros(1)})
    notes = C.cache_notes(store, demo_root, "coffee", "efficientnet_lite0")
    assert len(notes) == 1 and "older mvgviz version" in notes[0] and "0.0.1" in notes[0]
    assert "will refit" in notes[0]
    store.put("changed", {**parts, "version": __version__}, {}, {"a": np.zeros(1)})
    notes = C.cache_notes(store, demo_root, "coffee", "efficientnet_lite0")
    assert any("data changed" in n for n in notes)
    assert C.cache_notes(store, demo_root, "brick", "efficientnet_lite0") == []
