"""Background jobs and their progress (mvgviz.viewer.jobs)."""

import threading
import time
from pathlib import Path

import numpy as np
import pytest

import mvgviz.viewer.config as C
import mvgviz.viewer.jobs as J
import mvgviz.viewer.tables as T
from mvgviz.data import DataError

from conftest import write_category


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
    assert T.error_message(RuntimeError("boom")) == "RuntimeError: boom"
    assert T.error_message(KeyError("layer 'x' was not fitted")) == "layer 'x' was not fitted"


def test_add_done_and_forget():
    jobs = J.Jobs()
    j = jobs.add_done("m", "model", label="cached")
    assert j.state == J.DONE and j.result == "model" and j.wait(0)
    assert jobs.add_done("m", "other") is j
    jobs.forget("m")
    assert jobs.get("m") is None


def test_probe_then_fit_then_cached(tiny_root, tmp_path):
    jobs = J.Jobs()
    key = J.ModelKey(str(tiny_root), "widget", "efficientnet_lite0", str(tmp_path / "cache"))
    assert J.probe_model(jobs, key, timeout=30).state == "missing"
    assert list(Path(key.cache).glob("entries/*")) == [], "a probe computes nothing"
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
    assert C.discover_categories(tmp_path / "demo", [tmp_path]).names == ("coffee",)
    assert job.status().fraction == 1.0 and "images" in job.status().step


def test_demo_job_rewrites_a_deleted_folder(tmp_path, monkeypatch):
    import shutil

    import mvgviz.demo
    orig = mvgviz.demo.make_demo_dataset
    gate = threading.Event()  # holds the first job until the test has seen it running

    def make(root, **kw):
        assert gate.wait(60), "the test never released the demo job"
        return orig(root, categories=("brick",), n_train=2, n_test_good=1, n_per_defect=1, **kw)

    monkeypatch.setattr(mvgviz.demo, "make_demo_dataset", make)
    jobs = J.Jobs()
    root = tmp_path / "demo"
    first = J.demo_job(jobs, root)
    _wait_state(first, J.RUNNING)
    assert J.demo_running(jobs, root)
    gate.set()
    assert first.wait(60) and first.state == J.DONE, first.error
    assert not J.demo_running(jobs, root)
    assert J.demo_job(jobs, root) is first  # done and present: nothing to do
    shutil.rmtree(root)
    second = J.demo_job(jobs, root)
    assert second is not first and second.wait(60) and (root / "brick").is_dir()


def _category_leaking_a_file(tmp_path):
    """A category inside the data root whose train/good/000.png is a symlink to a file outside."""
    root, outside = tmp_path / "data", tmp_path / "outside"
    cat = write_category(root, "widget", n_train=4, n_good=1, n_defect=2)
    secret = outside / "secret.png"
    outside.mkdir()
    (cat / "train" / "good" / "000.png").rename(secret)
    (cat / "train" / "good" / "000.png").symlink_to(secret)
    return root, outside


def test_cached_path_is_confined_like_fitting(tmp_path):
    """Fitting from the viewer refuses the leaking category; once another program (the CLI) has fitted
    it into the same cache, the viewer's look-up refuses it too, and never registers the model."""
    from mvgviz.pipeline import fit
    root, outside = _category_leaking_a_file(tmp_path)
    cache = str(tmp_path / "cache")
    key = J.ModelKey(str(root), "widget", "efficientnet_lite0", cache)
    jobs = J.Jobs()
    job = J.model_job(jobs, key, allowed=[root])
    assert job.wait(60) and job.state == J.FAILED
    assert "000.png" in job.error and "outside the allowed data roots" in job.error
    assert list(Path(cache).glob("entries/*")) == [], "the refused fit wrote nothing"
    fit(root, "widget", cache=cache, device="cpu")  # the CLI's fit: no confinement there
    fresh = J.Jobs()
    probe = J.probe_model(fresh, key, allowed=[root], timeout=60)
    assert probe.state == "error" and probe.model is None
    assert "000.png" in probe.error and "outside the allowed data roots" in probe.error
    assert fresh.get(key.job_key()) is None, "the refused model must not be registered"
    # with the outside folder allowed too, the same cache entry is shown
    assert J.probe_model(J.Jobs(), key, allowed=[root, outside], timeout=60).state == "cached"
    # and a library caller that passes no roots reads it (no confinement asked for)
    assert J.probe_model(J.Jobs(), key, timeout=60).state == "cached"
    # a model registered without confinement (here: by a caller passing no roots) is still refused
    # to a caller with roots: what the page shows is checked, whoever loaded it
    shared = J.Jobs()
    assert J.probe_model(shared, key, timeout=60).state == "cached"
    refused = J.probe_model(shared, key, allowed=[root], timeout=60)
    assert refused.state == "error" and "outside the allowed data roots" in refused.error


def test_warm_up_applies_the_roots(tmp_path):
    """The launcher's warm-up (before any browser) reads the default model from the cache through
    the same confinement: the page then refuses the leaking category (found in a real browser)."""
    from mvgviz.pipeline import fit
    from mvgviz.viewer.config import parse_app_args
    root, _ = _category_leaking_a_file(tmp_path)
    cache = tmp_path / "cache"
    fit(root, "widget", cache=cache, device="cpu")  # the CLI filled the cache
    cfg = parse_app_args(["--data", str(root), "--cache", str(cache), "--no-autofit"], {}, app_dir=tmp_path)
    jobs = J.Jobs()
    J.warm_up(jobs, cfg, say=lambda text: None).join(120)
    key = J.ModelKey(str(root), "widget", "efficientnet_lite0", str(cache))
    assert jobs.get(key.job_key()) is None, "the warm-up registered a model outside the roots"
    probe = J.probe_model(jobs, key, allowed=cfg.allowed, timeout=60)
    assert probe.state == "error" and "000.png" in probe.error


# ---------------------------------------------------------------------------------------
# Issue 10 item 8: progress weighted by measured cost, time left, the server-start warm-up
# ---------------------------------------------------------------------------------------

def test_fit_progress_weighted_by_measured_cost():
    from mvgviz.backbones import get_spec
    p = J.FitProgress.for_backbone("efficientnet_lite0")
    layers = [l.name for l in get_spec("efficientnet_lite0").layers]
    ends = {}
    with p.task("decode", total=4) as t:
        t.update(4)
    ends["decode"] = p.fraction
    with p.task("backbone", total=4) as t:
        t.update(4)
    ends["backbone"] = p.fraction
    for name in layers:
        with p.task(f"layer {name}", total=5) as t:
            t.update(5)
        ends[name] = p.fraction
    assert p.fraction == pytest.approx(1.0)
    shares = np.diff([0.0, *ends.values()])
    share = dict(zip(ends, shares))
    # measured on the demo data: the backbone takes far more than decoding and is about a third
    # of a fit (the old plan gave it 20 % and decoding 15 %) ...
    assert share["backbone"] > 4 * share["decode"] and 0.3 < share["backbone"] < 0.5
    # ... and a layer costs ~ channels x (positions + 950): _blocks[15] (320 @ 7x7) the most
    assert max(layers, key=share.get) == "_blocks[15]"
    assert share["_blocks[15]"] > 2 * share["_blocks[4]"]
    assert np.all(np.diff(p.history) >= 0)
    # a heavier backbone gets a larger share
    r = J.FitProgress.for_backbone("wide_resnet50_2")
    with r.task("decode", total=1) as t:
        t.update(1)
    d = r.fraction
    with r.task("backbone", total=1) as t:
        t.update(1)
    assert r.fraction - d > share["backbone"]


def test_time_left():
    assert J.estimate_left(1.0, 0.5) is None          # too early to tell
    assert J.estimate_left(10.0, 0.01) is None
    assert J.estimate_left(10.0, 0.25) == pytest.approx(30.0)
    assert J.estimate_left(10.0, 1.0) == 0.0
    status = J.JobStatus(key=("fit",), label="fit x", state=J.RUNNING, step="backbone (3/9)", fraction=0.4,
                         error=None, created=0.0, started=time.time() - 20.0, finished=None)
    assert status.seconds_left == pytest.approx(30.0, abs=1.0)
    text = T.progress_text(status, "Fitting x")
    assert text.startswith("Fitting x: backbone (3/9) (40%, 20 s, about 30 s left)") or \
        text.startswith("Fitting x: backbone (3/9) (40%, 20 s, about 31 s left)"), text


def test_warm_up_prepares_the_first_page_with_progress_lines(tmp_path, monkeypatch):
    """At server start, before any browser: the demo data set, then the default model, with
    progress lines in the terminal; the app then finds both done."""
    import io

    import mvgviz.demo
    orig = mvgviz.demo.make_demo_dataset
    monkeypatch.setattr(mvgviz.demo, "make_demo_dataset",
                        lambda root, **kw: orig(root, categories=("brick",), n_train=4, n_test_good=1,
                                                n_per_defect=1, **kw))
    out = io.StringIO()
    jobs = J.Jobs(echo=out)
    cfg = C.AppConfig(data_roots=(tmp_path / "fresh",), demo_root=tmp_path / "demo", cache=tmp_path / "cache")
    t = J.warm_up(jobs, cfg)
    t.join(300)
    assert not t.is_alive()
    key = J.default_model_key(cfg)
    assert key == J.ModelKey(str(tmp_path / "fresh"), "brick", "efficientnet_lite0", str(tmp_path / "cache"))
    job = jobs.get(key.job_key())
    assert job is not None and job.state == J.DONE, job and job.error
    lines = out.getvalue().splitlines()
    text = "\n".join(lines)
    assert "demo data in" in text and "fit brick / efficientnet_lite0: started" in text
    assert any("backbone" in l and "%" in l for l in lines), text
    assert "fit brick / efficientnet_lite0: done in" in text
    # a second server start finds the model in the cache and fits nothing
    out2 = io.StringIO()
    jobs2 = J.Jobs(echo=out2)
    J.warm_up(jobs2, cfg).join(120)
    assert "read from the cache" in out2.getvalue() and "started" not in out2.getvalue()
    assert jobs2.get(key.job_key()).state == J.DONE


def test_model_key_carries_the_weights(tmp_path):
    a = J.ModelKey("r", "c", "resnet18", "k")
    b = J.ModelKey("r", "c", "resnet18", "k", str(tmp_path / "w.pth"))
    assert a.job_key() != b.job_key() and b.job_key()[-1] == str(tmp_path / "w.pth")
    assert b.label == "c / resnet18 (w.pth)" and a.label == "c / resnet18"
