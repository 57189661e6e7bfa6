"""Background jobs, configuration, path checks and the viewer's tables (mvgviz.jobs)."""

import json
import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from mvgviz import __version__
from mvgviz import jobs as J
from mvgviz.cache import Store
from mvgviz.data import DataError

from conftest import write_category


# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------

def test_config_defaults(tmp_path, monkeypatch):
    cfg = J.parse_app_args([], {}, app_dir=tmp_path)
    assert cfg.data_roots == ()
    assert cfg.demo_root == tmp_path / "demo_data"
    assert cfg.roots == (tmp_path / "demo_data",)
    assert cfg.autofit is True
    monkeypatch.setenv("MVGVIZ_CACHE", str(tmp_path / "c"))
    assert J.parse_app_args([], None, app_dir=tmp_path).cache == tmp_path / "c"


def test_config_env_and_cli(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    env = {"MVGVIZ_DATA": f"{a}{os.pathsep}{b}", "MVGVIZ_CACHE": str(tmp_path / "envcache"),
           "MVGVIZ_AUTOFIT": "0"}
    cfg = J.parse_app_args([], env, app_dir=tmp_path)
    assert cfg.data_roots == (a, b) and cfg.cache == tmp_path / "envcache" and cfg.autofit is False
    assert cfg.roots == (a, b, tmp_path / "demo_data")
    # the command line wins; unknown arguments (pytest's own) are ignored
    cfg = J.parse_app_args(["-q", "tests/x.py", "--data", str(c), "--cache", str(tmp_path / "cli"),
                            "--cache-clear"], env, app_dir=tmp_path)
    assert cfg.data_roots == (c,) and cfg.cache == tmp_path / "cli"
    cfg = J.parse_app_args(["--data", str(a), "--data", str(b), "--no-autofit"], {}, app_dir=tmp_path)
    assert cfg.data_roots == (a, b) and cfg.autofit is False


def test_config_roots_without_repeats(tmp_path):
    demo = tmp_path / "demo_data"
    cfg = J.parse_app_args(["--data", str(demo)], {}, app_dir=tmp_path)
    assert cfg.roots == (demo,)
    assert cfg.allowed == (demo.resolve(),)


# ---------------------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------------------

@pytest.fixture
def roots(tmp_path):
    allowed = tmp_path / "allowed"
    outside = tmp_path / "outside"
    write_category(allowed, "widget")
    write_category(outside, "secret")
    return allowed, outside


def test_resolve_inside_accepts_root_and_subfolders(roots):
    allowed, _ = roots
    assert J.resolve_inside(allowed, [allowed]) == allowed.resolve()
    assert J.resolve_inside(str(allowed / "widget"), [allowed]) == (allowed / "widget").resolve()
    assert J.resolve_inside(f"  {allowed}/widget/../widget ", [allowed]) == (allowed / "widget").resolve()


def test_resolve_inside_refuses_outside(roots, tmp_path):
    allowed, outside = roots
    with pytest.raises(J.PathNotAllowed, match="outside the allowed data roots"):
        J.resolve_inside(outside, [allowed])
    with pytest.raises(J.PathNotAllowed, match="resolves to"):
        J.resolve_inside(f"{allowed}/../outside", [allowed])
    with pytest.raises(J.PathNotAllowed, match="outside"):
        J.resolve_inside("/etc", [allowed])
    with pytest.raises(J.PathNotAllowed, match="empty"):
        J.resolve_inside("  ", [allowed])
    # a sibling whose name starts like the root is not inside it
    (tmp_path / "allowed2").mkdir()
    with pytest.raises(J.PathNotAllowed):
        J.resolve_inside(tmp_path / "allowed2", [allowed])
    assert issubclass(J.PathNotAllowed, DataError)


def test_symlinks_out_of_the_roots_are_refused(roots):
    allowed, outside = roots
    (allowed / "link").symlink_to(outside)
    with pytest.raises(J.PathNotAllowed, match="resolves to"):
        J.resolve_inside(allowed / "link", [allowed])
    # a symlinked category is skipped by discovery, with the reason
    (allowed / "secret").symlink_to(outside / "secret")
    cats = J.discover_categories(allowed, [allowed])
    assert cats.names == ("widget",)
    assert [n for n, _ in cats.skipped] == ["secret"] and "outside" in cats.skipped[0][1]
    # a symlinked image inside a category is refused before fitting
    J.check_category_files(allowed, "widget", [allowed])
    img = next((outside / "secret" / "train" / "good").iterdir())
    (allowed / "widget" / "train" / "good" / "zzz.png").symlink_to(img)
    with pytest.raises(J.PathNotAllowed, match="zzz.png"):
        J.check_category_files(allowed, "widget", [allowed])
    # allowed when the target's root is allowed too
    J.check_category_files(allowed, "widget", [allowed, outside])


def test_discovery_and_demo_detection(tmp_path, roots):
    allowed, _ = roots
    assert J.discover_categories(allowed, [allowed]).names == ("widget",)
    assert J.needs_demo_data(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    assert J.needs_demo_data(tmp_path / "empty")
    junk = tmp_path / "junk"
    (junk / "notes").mkdir(parents=True)
    assert not J.needs_demo_data(junk)
    assert J.discover_categories(junk, [junk]).names == ()
    assert "no category" in J.no_category_message(junk)
    with pytest.raises(DataError, match="not a folder"):
        J.discover_categories(tmp_path / "missing", [tmp_path])


# ---------------------------------------------------------------------------------------
# Progress
# ---------------------------------------------------------------------------------------

def test_job_progress_is_monotone_and_clipped():
    p = J.JobProgress({"a": (0.0, 0.5), "b": (0.5, 1.0)})
    with p.task("a", total=4) as t:
        for _ in range(4):
            t.update()
            assert p.step.startswith("a (")
    assert p.fraction == pytest.approx(0.5)
    with p.task("a", total=4) as t:  # a repeated task never moves the fraction back
        t.update()
    assert p.fraction == pytest.approx(0.5)
    with p.task("unknown"):
        pass
    with p.task("b", total=None):
        assert p.step == "b"
    assert p.fraction == pytest.approx(1.0)
    p.update(1, 10, "text")
    assert p.fraction == 1.0 and p.step == "text"
    assert np.all(np.diff(p.history) >= 0)
    p.message("hello")
    assert p.messages == ("hello",)


@pytest.mark.parametrize("per_layer_tasks", [True, False])
def test_fit_progress_plan(per_layer_tasks):
    p = J.FitProgress(n_layers=2)
    with p.task("decode", total=10) as t:
        t.update(10)
    assert p.fraction == pytest.approx(0.15)
    with p.task("backbone", total=10) as t:
        t.update(5)
        assert p.fraction == pytest.approx(0.25)
        t.update(5)
    for layer in ("L1", "L2"):
        if per_layer_tasks:
            with p.task(f"layer {layer}", total=5) as t:
                for _ in range(5):
                    t.update()
        else:
            for kind in ("fit", "whitening", "metrics", "ranking"):
                with p.task(f"{kind} {layer}"):
                    pass
        assert p.fraction == pytest.approx(0.35 + 0.325 * (1 + (layer == "L2")))
    assert np.all(np.diff(p.history) >= 0)


def test_fit_progress_on_a_real_fit(tiny_root, tmp_path):
    from mvgviz.pipeline import fit
    p = J.FitProgress(n_layers=1)
    fit(tiny_root, "widget", layers="_blocks[4]", cache=tmp_path / "cache", device="cpu", progress=p)
    assert len(p.history) > 5
    assert np.all(np.diff(p.history) >= 0), "the fraction went back"
    assert 0.9 <= p.fraction <= 1.0


# ---------------------------------------------------------------------------------------
# Jobs
# ---------------------------------------------------------------------------------------

def _wait_state(job, state, timeout=10.0):
    t0 = time.time()
    while job.state != state:
        assert time.time() - t0 < timeout, f"job stayed {job.state}, expected {state}"
        time.sleep(0.01)


def test_job_states_and_queue():
    jobs = J.Jobs(slots=1)
    gate1, gate2 = threading.Event(), threading.Event()
    calls = []

    def work(gate, name):
        def fn(progress):
            calls.append(name)
            with progress.task("step", total=2) as t:
                t.update()
                gate.wait(10)
                t.update()
            return name
        return fn

    a = jobs.submit("a", work(gate1, "a"), label="A")
    _wait_state(a, J.RUNNING)
    b = jobs.submit("b", work(gate2, "b"), label="B")
    time.sleep(0.1)
    assert b.state == J.QUEUED, "one slot: the second job waits"
    assert a.status().active and a.status().step == "step (1/2)"
    gate1.set()
    assert a.wait(10) and a.state == J.DONE and a.result == "a"
    assert a.status().fraction == 1.0 and a.status().finished >= a.status().started
    gate2.set()
    assert b.wait(10) and b.result == "b"
    assert calls == ["a", "b"]
    assert {s.key: s.state for s in jobs.statuses()} == {"a": J.DONE, "b": J.DONE}


def test_same_key_shares_one_job():
    jobs = J.Jobs()
    gate = threading.Event()
    n_calls = []

    def fn(progress):
        n_calls.append(1)
        gate.wait(10)
        return 42

    first = jobs.submit(("fit", "x"), fn)
    second = jobs.submit(("fit", "x"), fn)  # another session asking for the same model
    assert second is first
    gate.set()
    assert first.wait(10)
    assert jobs.submit(("fit", "x"), fn) is first  # done jobs are kept: the model stays cached
    assert len(n_calls) == 1 and first.result == 42


def test_failure_is_captured_and_retried():
    jobs = J.Jobs()

    def bad(progress):
        raise DataError("image '/x/001.png' is truncated or corrupt")

    job = jobs.submit("k", bad, label="bad")
    assert job.wait(10)
    s = job.status()
    assert s.state == J.FAILED and not s.active
    assert s.error == "image '/x/001.png' is truncated or corrupt"
    assert isinstance(job.exception, DataError)
    retry = jobs.submit("k", lambda p: "ok")
    assert retry is not job and retry.wait(10) and retry.result == "ok"
    # other exception types keep their name; KeyError its message
    assert J.error_message(RuntimeError("boom")) == "RuntimeError: boom"
    assert J.error_message(KeyError("layer 'x' was not fitted")) == "layer 'x' was not fitted"


def test_add_done_and_forget():
    jobs = J.Jobs()
    j = jobs.add_done("m", "model", label="cached")
    assert j.state == J.DONE and j.result == "model" and j.wait(0)
    assert jobs.add_done("m", "other") is j
    jobs.forget("m")
    assert jobs.get("m") is None


# ---------------------------------------------------------------------------------------
# Model jobs on real (tiny) data
# ---------------------------------------------------------------------------------------

def test_probe_then_fit_then_cached(tiny_root, tmp_path):
    jobs = J.Jobs()
    key = J.ModelKey(str(tiny_root), "widget", "efficientnet_lite0", str(tmp_path / "cache"))
    assert J.probe_model(jobs, key, timeout=30).state == "missing"
    assert not (Path(key.cache) / "entries").exists() or not any((Path(key.cache) / "entries").iterdir()), \
        "a probe computes nothing"
    job = J.model_job(jobs, key, allowed=[tiny_root])
    assert J.model_job(jobs, key) is job
    assert job.wait(120), "fit did not finish"
    assert job.state == J.DONE, job.error
    model = job.result
    assert list(model.layers) == ["_blocks[2]", "_blocks[4]", "_blocks[10]", "_blocks[15]"]
    # a fresh registry (a new server) finds it in the cache
    fresh = J.Jobs()
    probe = J.probe_model(fresh, key, timeout=30)
    assert probe.state == "cached" and list(probe.model.layers) == list(model.layers)
    assert fresh.get(key.job_key()).state == J.DONE
    assert fresh.get(J.probe_key(key)) is None


def test_fit_job_failure_names_the_file(tmp_path):
    root = tmp_path / "data"
    write_category(root, "broken")
    bad = root / "broken" / "train" / "good" / "002.png"
    bad.write_bytes(bad.read_bytes()[:60])  # truncated
    jobs = J.Jobs()
    key = J.ModelKey(str(root), "broken", "efficientnet_lite0", str(tmp_path / "cache"))
    job = J.model_job(jobs, key, allowed=[root])
    assert job.wait(60)
    assert job.state == J.FAILED
    assert "002.png" in job.error and "truncated" in job.error


def test_probe_reports_missing_weights(tiny_root, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    jobs = J.Jobs()
    key = J.ModelKey(str(tiny_root), "widget", "resnet18", str(tmp_path / "cache"))
    probe = J.probe_model(jobs, key, timeout=30)
    assert probe.state == "error" and "no pretrained weights" in probe.error


def test_demo_job(tmp_path, monkeypatch):
    import mvgviz.demo
    orig = mvgviz.demo.make_demo_dataset
    monkeypatch.setattr(mvgviz.demo, "make_demo_dataset",
                        lambda root, **kw: orig(root, categories=("coffee",), n_train=2, n_test_good=1,
                                                n_per_defect=1, **kw))
    jobs = J.Jobs()
    job = J.demo_job(jobs, tmp_path / "demo")
    assert job.wait(60) and job.state == J.DONE, job.error
    assert J.discover_categories(tmp_path / "demo", [tmp_path]).names == ("coffee",)
    assert job.status().fraction == 1.0 and "images" in job.status().step


def test_cache_notes_old_version(demo_root, tmp_path):
    store = Store(tmp_path / "cache")
    assert J.cache_notes(store, demo_root, "coffee", "efficientnet_lite0") == []
    parts = {"kind": "layer", "category": "coffee", "backbone": "efficientnet_lite0", "layer": "_blocks[2]",
             "dataset": "x", "version": "0.0.1"}
    store.put("old", parts, {}, {"a": np.zeros(1)})
    notes = J.cache_notes(store, demo_root, "coffee", "efficientnet_lite0")
    assert len(notes) == 1 and "older mvgviz version" in notes[0] and "0.0.1" in notes[0]
    assert "will refit" in notes[0]
    store.put("changed", {**parts, "version": __version__}, {}, {"a": np.zeros(1)})
    notes = J.cache_notes(store, demo_root, "coffee", "efficientnet_lite0")
    assert any("data changed" in n for n in notes)
    assert J.cache_notes(store, demo_root, "brick", "efficientnet_lite0") == []


# ---------------------------------------------------------------------------------------
# Tables, selections, export
# ---------------------------------------------------------------------------------------

def test_overview_and_component_tables(demo_model):
    t = J.overview_table(demo_model)
    assert t["layer"] == list(demo_model.layers)
    for i, lm in enumerate(demo_model.layers.values()):
        assert t["pixel AUROC"][i] == lm.metrics["pixel_auroc"]
        assert t["AUPRO"][i] == lm.metrics["aupro"]
        assert t["channels"][i] == lm.channels
    assert any("32x32" in n for n in J.overview_notes(demo_model))
    lm = demo_model.layer("_blocks[10]")
    c = J.component_table(lm)
    assert c["component"] == list(range(lm.channels))
    assert c["AUROC"] == [float(v) for v in lm.component_auroc]
    best = int(lm.ranking()[0])
    assert c["rank"][best] == 1 and sorted(c["rank"]) == list(range(1, lm.channels + 1))


def test_selection_helpers():
    assert J.merge_components((3, 1), (1, 7, 2)) == "3,1,7,2"
    assert J.merge_components((), (5,)) == "5"
    assert J.image_choices(["crack", "good", "hole"]) == ["all images", "any", "crack", "good", "hole"]
    assert J.image_choices(["good", "good"]) == ["all images", "good"]


def test_export_bytes(demo_model):
    from mvgviz.render import GridSpec
    spec = GridSpec(layer="_blocks[10]", images=(0, 7), components=(1, 2))
    png = J.grid_file_bytes(demo_model, spec, "png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.shape[0] > 200 and img.shape[1] > 300
    man = json.loads(J.grid_manifest_bytes(demo_model, spec))
    assert man["spec"] == spec.to_dict()
    with pytest.raises(ValueError, match="fmt"):
        J.grid_file_bytes(demo_model, spec, "gif")
    assert J.export_name(demo_model, spec) == "brick_efficientnet_lite0_blocks10_test"


def test_hidden_and_partial_folders_are_not_categories(tmp_path):
    root = tmp_path / "data"
    write_category(root, "widget")
    write_category(root, ".widget.partial-123-abc")
    assert J.discover_categories(root, [root]).names == ("widget",)


def test_demo_job_rewrites_a_deleted_folder(tmp_path, monkeypatch):
    import shutil

    import mvgviz.demo
    orig = mvgviz.demo.make_demo_dataset
    monkeypatch.setattr(mvgviz.demo, "make_demo_dataset",
                        lambda root, **kw: orig(root, categories=("brick",), n_train=2, n_test_good=1,
                                                n_per_defect=1, **kw))
    jobs = J.Jobs()
    root = tmp_path / "demo"
    first = J.demo_job(jobs, root)
    assert J.demo_running(jobs, root) or first.state == J.DONE
    assert first.wait(60) and not J.demo_running(jobs, root)
    assert J.demo_job(jobs, root) is first  # done and present: nothing to do
    shutil.rmtree(root)
    second = J.demo_job(jobs, root)
    assert second is not first and second.wait(60) and (root / "brick").is_dir()


def test_escape_markdown():
    text = "ground_truth/<defect>/*_mask.png [2] $x$ a\\b"
    esc = J.escape_markdown(text)
    assert "_" not in esc.replace("\\_", "") and "*" not in esc.replace("\\*", "")
    import re
    assert re.sub(r"\\(.)", r"\1", esc) == text
