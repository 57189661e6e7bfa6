"""Tests of the offline demo data set (mvgviz.demo)."""

from __future__ import annotations

import hashlib
import json
import pathlib
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from mvgviz import demo
from mvgviz.demo import DEMO_CATEGORIES, DEMO_DEFECTS, make_demo_dataset

SMALL = dict(n_train=3, n_test_good=2, n_per_defect=2)
TEXTURES = ("brick", "grass", "gravel")


def _hashes(root: pathlib.Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _read(path: pathlib.Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    return img


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> pathlib.Path:
    return make_demo_dataset(tmp_path_factory.mktemp("demo") / "data", seed=0, **SMALL)


def test_constants():
    assert set(("brick", "grass", "gravel")) <= set(DEMO_CATEGORIES)
    assert any(c not in TEXTURES for c in DEMO_CATEGORIES)  # an object category
    assert set(DEMO_DEFECTS) == set(DEMO_CATEGORIES)
    for kinds in DEMO_DEFECTS.values():
        assert 3 <= len(kinds) <= 4
        assert "good" not in kinds
    assert len({k for kinds in DEMO_DEFECTS.values() for k in kinds}) >= 3


def test_layout_is_mvtec(small):
    root = small
    assert (root / "README.txt").is_file()
    for cat in DEMO_CATEGORIES:
        d = root / cat
        train = sorted((d / "train" / "good").glob("*.png"))
        assert [p.name for p in train] == [f"{i:03d}.png" for i in range(SMALL["n_train"])]
        test_dirs = sorted(p.name for p in (d / "test").iterdir())
        assert test_dirs == sorted(("good",) + DEMO_DEFECTS[cat])
        assert len(list((d / "test" / "good").glob("*.png"))) == SMALL["n_test_good"]
        gt_dirs = sorted(p.name for p in (d / "ground_truth").iterdir())
        assert gt_dirs == sorted(DEMO_DEFECTS[cat])  # no masks for test/good
        for kind in DEMO_DEFECTS[cat]:
            imgs = sorted((d / "test" / kind).glob("*.png"))
            masks = sorted((d / "ground_truth" / kind).glob("*.png"))
            assert len(imgs) == SMALL["n_per_defect"]
            assert [m.name for m in masks] == [f"{p.stem}_mask.png" for p in imgs]
            for p, mp in zip(imgs, masks):
                img, mask = _read(p), _read(mp)
                assert img.dtype == np.uint8 and img.shape[:2] == (256, 256)
                assert mask.dtype == np.uint8 and mask.shape == img.shape[:2]
                assert set(np.unique(mask)) == {0, 255}, mp  # binary and non-empty
        for p in (d / "train" / "good").glob("*.png"):
            assert _read(p).shape[:2] == (256, 256)


def test_object_is_rgb_and_textures_grayscale(small):
    from PIL import Image

    for cat in DEMO_CATEGORIES:
        for p in sorted((small / cat).rglob("test/*/000.png")) + [small / cat / "train/good/000.png"]:
            with Image.open(p) as im:
                mode = im.mode
            if cat in TEXTURES:
                assert mode == "L", p
            else:
                assert mode == "RGB", p
                arr = _read(p).astype(int)
                assert np.abs(arr[..., 0] - arr[..., 2]).mean() > 5  # a real colour image


def test_masks_area_and_inside_central_crop(small):
    lo, hi = 16, 240  # resize 256 -> centre crop 224
    for cat in DEMO_CATEGORIES:
        for mp in (small / cat / "ground_truth").rglob("*_mask.png"):
            m = _read(mp) > 0
            frac = m.mean()
            assert 0.0005 <= frac <= 0.15, (mp, frac)
            assert m[lo:hi, lo:hi].sum() >= 0.95 * m.sum(), mp


def test_files_equal_render(small):
    """The written files are exactly the rendered images and masks."""
    for cat in DEMO_CATEGORIES:
        kind = DEMO_DEFECTS[cat][0]
        s = demo._render(cat, 0, "test", kind, 1)
        img = _read(small / cat / "test" / kind / "001.png")
        if img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        assert np.array_equal(img, s.image)
        assert np.array_equal(_read(small / cat / "ground_truth" / kind / "001_mask.png"), s.mask)
        g = demo._render(cat, 0, "train", "good", 0)
        assert g.mask is None and np.array_equal(g.image, g.clean)


@pytest.mark.parametrize("cat", DEMO_CATEGORIES)
def test_masks_mark_changed_pixels(cat):
    """Compare each defect image with its clean version (same geometry, lighting, noise)."""
    for kind in DEMO_DEFECTS[cat]:
        for i in range(3):
            s = demo._render(cat, 0, "test", kind, i)
            diff = np.abs(s.image.astype(int) - s.clean.astype(int))
            if diff.ndim == 3:
                diff = diff.max(axis=-1)
            mask = s.mask > 0
            assert np.array_equal(mask, s.alpha >= 0.5)
            # nothing changes where the defect has no coverage
            assert not np.any((diff > 0) & (s.alpha == 0)), (cat, kind, i)
            # changed pixels outside the mask are a thin fringe around it
            dist = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)
            assert dist[diff > 0].max() <= 3.0, (cat, kind, i)
            # the defect is visible inside its mask, and the mask is not much larger than it
            assert diff[mask].mean() >= 4.0, (cat, kind, i)
            assert (diff[mask] >= 2).mean() >= 0.6, (cat, kind, i)


def test_deterministic_and_seeded(tmp_path):
    kw = dict(categories=("brick", "coffee"), n_train=2, n_test_good=1, n_per_defect=1)
    a = _hashes(make_demo_dataset(tmp_path / "a", seed=3, **kw))
    b = _hashes(make_demo_dataset(tmp_path / "b", seed=3, **kw))
    c = _hashes(make_demo_dataset(tmp_path / "c", seed=4, **kw))
    assert a == b
    assert set(a) == set(c)
    pngs = [k for k in a if k.endswith(".png")]
    assert len(pngs) == 2 * (2 + 1) + 4 * 2 + 4 * 2  # images + masks
    assert all(a[k] != c[k] for k in pngs if "_mask" not in k)
    assert any(a[k] != c[k] for k in pngs if "_mask" in k)


def test_no_global_random_state(tmp_path):
    np.random.seed(1)
    a = _hashes(make_demo_dataset(tmp_path / "a", categories=("grass",), n_train=1, n_test_good=1, n_per_defect=1))
    state = np.random.get_state()[1].copy()
    np.random.seed(2)
    np.random.random(10)
    b = _hashes(make_demo_dataset(tmp_path / "b", categories=("grass",), n_train=1, n_test_good=1, n_per_defect=1))
    assert a == b
    np.random.seed(1)
    assert np.array_equal(np.random.get_state()[1], state)  # untouched by the generator


def test_progress_and_skip_existing(tmp_path):
    kw = dict(categories=("gravel",), n_train=2, n_test_good=1, n_per_defect=1)
    calls = []
    root = make_demo_dataset(tmp_path / "d", progress=lambda *a: calls.append(a), **kw)
    total = 2 + 1 + len(DEMO_DEFECTS["gravel"])
    assert [c[0] for c in calls] == list(range(1, total + 1))
    assert all(c[1] == total and isinstance(c[2], str) for c in calls)
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*.png")}

    calls.clear()
    make_demo_dataset(root, progress=lambda *a: calls.append(a), **kw)
    assert calls == [(0, 0, calls[0][2])]  # nothing to write
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*.png")} == before

    # another seed or other counts: the category is regenerated
    calls.clear()
    make_demo_dataset(root, seed=1, progress=lambda *a: calls.append(a), **kw)
    assert calls and calls[-1][0] == calls[-1][1] == total
    assert json.loads((root / "gravel" / demo.MARKER_NAME).read_text())["seed"] == 1

    # overwrite=True rewrites identical bytes
    h = _hashes(root)
    calls.clear()
    make_demo_dataset(root, seed=1, overwrite=True, progress=lambda *a: calls.append(a), **kw)
    assert len(calls) == total
    assert _hashes(root) == h


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_interrupted_category_is_repaired(tmp_path):
    kw = dict(categories=("brick", "coffee"), n_train=2, n_test_good=1, n_per_defect=1)
    ref = _hashes(make_demo_dataset(tmp_path / "ref", **kw))

    root = tmp_path / "d"
    make_demo_dataset(root, **kw)
    # 1) a half-written category (old non-atomic run killed): files and the marker missing
    shutil.rmtree(root / "brick" / "test" / "hole")
    (root / "brick" / demo.MARKER_NAME).unlink()
    # 2) a category with its marker but a missing image
    (root / "coffee" / "train" / "good" / "001.png").unlink()
    # 3) the temporary folder of a killed run
    stale = root / f".brick.partial-{_dead_pid()}-abc"
    (stale / "train" / "good").mkdir(parents=True)
    (stale / "train" / "good" / "000.png").write_bytes(b"junk")

    calls = []
    make_demo_dataset(root, progress=lambda *a: calls.append(a), **kw)
    assert calls and calls[-1][1] > 0
    assert not stale.exists()
    assert _hashes(root) == ref
    assert not [p for p in root.iterdir() if p.name.startswith(".")]


def test_corrupt_marker_and_foreign_files(tmp_path):
    kw = dict(categories=("grass",), n_train=1, n_test_good=1, n_per_defect=1)
    ref = _hashes(make_demo_dataset(tmp_path / "ref", **kw))
    root = tmp_path / "d"
    (root / "grass" / "train" / "good").mkdir(parents=True)
    (root / "grass" / "train" / "good" / "999.png").write_bytes(b"not a demo image")
    make_demo_dataset(root, **kw)
    assert _hashes(root) == ref
    (root / "grass" / demo.MARKER_NAME).write_text("{broken")
    make_demo_dataset(root, **kw)
    assert _hashes(root) == ref


def test_readme(small):
    text = (small / "README.txt").read_text()
    assert "mvgviz" in text and "seed 0" in text
    assert "skimage.data.brick()" in text and "skimage.data.coffee()" in text


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        make_demo_dataset(tmp_path, categories=("carpet",))
    with pytest.raises(ValueError):
        make_demo_dataset(tmp_path, n_train=-1)
    with pytest.raises(ValueError):
        make_demo_dataset(tmp_path, n_per_defect=0)


def test_default_counts():
    import inspect

    params = inspect.signature(make_demo_dataset).parameters
    assert params["n_train"].default == 40
    assert params["n_test_good"].default == 10
    assert params["n_per_defect"].default == 6
    assert params["seed"].default == 0 and params["overwrite"].default is False
