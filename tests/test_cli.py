"""The command line: exact forms of the issue, JSON on stdout, and every bad input of the issue.

Each bad input must exit non-zero (2) with one message naming the file or argument and what was
expected, and leave no cache entry behind.
"""

import json
import shutil

import cv2
import numpy as np
import pytest

from mvgviz.cache import Store
from mvgviz.cli import main

from conftest import write_category

LAYERS = "_blocks[4],_blocks[10]"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_data")
    write_category(root, "widget", n_train=8, n_good=2, defects=("scratch", "hole"), n_defect=2, size=(64, 80))
    return root, tmp_path_factory.mktemp("cli_cache")


def test_report_json_schema_on_stdout_progress_on_stderr(fitted, capsys):
    root, cache = fitted
    code, out, err = run(capsys, "report", "--data", root, "--category", "widget", "--layers", LAYERS,
                         "--cache", cache, "--device", "cpu", "--json")
    assert code == 0
    rep = json.loads(out)  # stdout is exactly one JSON object
    assert {"category", "backbone", "weights", "image_size", "layers"} <= rep.keys()
    assert rep["category"] == "widget" and rep["backbone"] == "efficientnet_lite0" and rep["image_size"] == 224
    for lay in rep["layers"]:
        assert {"name", "channels", "feature_size", "image_auroc", "pixel_auroc", "pixel_aupr", "aupro",
                "components"} <= lay.keys()
        assert [c["index"] for c in lay["components"]] == list(range(lay["channels"]))
        eig = [c["eigenvalue"] for c in lay["components"]]
        assert eig == sorted(eig)  # index order = ascending eigenvalue
        assert all(0.0 <= c["auroc"] <= 1.0 for c in lay["components"])
    assert "backbone" in err  # progress bars went to stderr

    # warm: the same numbers from the cache, and --quiet leaves stderr empty
    code, out2, err2 = run(capsys, "report", "--data", root, "--category", "widget", "--layers", LAYERS,
                           "--cache", cache, "--json", "--quiet")
    assert code == 0 and json.loads(out2) == rep and err2 == ""


def test_fit_prints_one_line_per_layer_and_cache_ls_clear(fitted, capsys, tmp_path):
    root, _ = fitted
    cache = tmp_path / "c"
    code, out, _ = run(capsys, "fit", "--data", root, "--category", "widget", "--layers", "_blocks[4]",
                       "--cache", cache, "--quiet")
    assert code == 0 and "_blocks[4]" in out and "pixel AUROC" in out
    code, out, _ = run(capsys, "cache", "ls", "--cache", cache, "--json")
    rows = json.loads(out)
    assert sorted(r["kind"] for r in rows) == ["data", "features", "layer"] and all(r["valid"] for r in rows)
    code, out, _ = run(capsys, "cache", "clear", "--cache", cache)
    assert code == 0 and "removed 3" in out
    assert Store(cache).ls() == []


def test_random_weights_are_labelled(fitted, capsys, tmp_path):
    root, _ = fitted
    code, out, err = run(capsys, "report", "--data", root, "--category", "widget", "--layers", "_blocks[4]",
                         "--weights", "random", "--cache", tmp_path, "--json", "--quiet")
    assert code == 0 and "RANDOM" in json.loads(out)["weights"]


def _bad(kind, root):
    """Make data root ``root`` bad in one way; returns (extra CLI args, expected message regex)."""
    cat = write_category(root, "widget", n_train=3, n_good=1, n_defect=2)
    args = []
    if kind == "missing train/good":
        shutil.rmtree(cat / "train" / "good")
        return args, r"missing folder '.*train/good'.*MVTec layout"
    if kind == "empty split":
        for p in (cat / "train" / "good").glob("*.png"):
            p.unlink()
        return args, r"empty split: '.*train/good' holds no images"
    if kind == "corrupt png":
        (cat / "test" / "scratch" / "001.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
        return args, r"001\.png.*(truncated|corrupt)"
    if kind == "truncated png":
        p = cat / "train" / "good" / "002.png"
        p.write_bytes(p.read_bytes()[:-20])
        return args, r"002\.png.*truncated"
    if kind == "missing mask":
        (cat / "ground_truth" / "scratch" / "001_mask.png").unlink()
        return args, r"defect image '.*001\.png' has no mask: expected '.*001_mask\.png'"
    if kind == "mask size":
        cv2.imwrite(str(cat / "ground_truth" / "scratch" / "000_mask.png"), np.zeros((20, 30), np.uint8))
        return args, r"mask '.*000_mask\.png' is 30x20 but its image '.*000\.png' is 48x40"
    if kind == "unknown category":
        return ["--category", "gadget"], r"--category: unknown category 'gadget'.*found widget"
    if kind == "unknown layer":
        return ["--layers", "layer9"], r"--layers must be one of _blocks\[2\].*got 'layer9'"
    if kind == "unknown backbone":
        return ["--backbone", "vgg16"], r"--backbone must be one of efficientnet_lite0, resnet18.*got 'vgg16'"
    if kind == "missing weights":
        return ["--backbone", "resnet18"], r"no pretrained weights for 'resnet18': expected .*resnet18-.*\.pth"
    if kind == "missing weights file":
        return ["--weights", str(root / "nope.pth")], r"--weights: file '.*nope\.pth' does not exist"
    if kind == "cuda without cuda":
        return ["--device", "cuda"], r"--device 'cuda': CUDA is not available"
    if kind == "bad regulariser":
        return ["--reg", "ridge:-1"], r"--reg"
    raise AssertionError(kind)


BAD = ["missing train/good", "empty split", "corrupt png", "truncated png", "missing mask", "mask size",
       "unknown category", "unknown layer", "unknown backbone", "missing weights", "missing weights file",
       "cuda without cuda", "bad regulariser"]


@pytest.mark.parametrize("kind", BAD)
def test_bad_input_exits_2_with_a_message_and_no_cache_entry(kind, tmp_path, capsys, monkeypatch):
    if kind == "cuda without cuda":
        import torch
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))  # no torchvision weights here
    root = tmp_path / "data"
    extra, pattern = _bad(kind, root)
    argv = ["fit", "--data", root, "--category", "widget", "--layers", "_blocks[4]", "--cache", tmp_path / "cache",
            "--quiet", *extra]
    if kind in ("unknown layer", "unknown backbone", "missing weights"):
        argv.remove("--layers"), argv.remove("_blocks[4]")
        if kind == "unknown layer":
            argv += ["--layers", "layer9"]
    code, out, err = run(capsys, *argv)
    assert code == 2, err
    assert err.startswith("mvgviz: error: ") and err.count("\n") == 1  # one line, no traceback
    import re
    assert re.search(pattern, err), err
    assert out == ""
    assert Store(tmp_path / "cache").ls() == []  # nothing cached, valid or not


def test_missing_data_root_and_empty_category_folder(tmp_path, capsys):
    code, _, err = run(capsys, "fit", "--data", tmp_path / "nowhere", "--category", "x", "--cache", tmp_path / "c")
    assert code == 2 and "--data" in err and "nowhere" in err
    (tmp_path / "root" / "x").mkdir(parents=True)
    code, _, err = run(capsys, "fit", "--data", tmp_path / "root", "--category", "x", "--cache", tmp_path / "c")
    assert code == 2 and "train/good" in err


def test_demo_data_command_writes_the_layout(tmp_path, capsys):
    code, out, _ = run(capsys, "demo-data", tmp_path / "d", "--categories", "grass", "--n-train", "2",
                       "--n-test-good", "1", "--n-per-defect", "1", "--quiet")
    assert code == 0 and out.strip() == str(tmp_path / "d")
    assert sorted(p.name for p in (tmp_path / "d").iterdir() if p.is_dir()) == ["grass"]
    assert sorted(p.name for p in (tmp_path / "d" / "grass" / "train" / "good").iterdir()) == ["000.png", "001.png"]
    assert len(list((tmp_path / "d" / "grass" / "test" / "good").iterdir())) == 1
    assert (tmp_path / "d" / "grass" / "ground_truth").is_dir()
