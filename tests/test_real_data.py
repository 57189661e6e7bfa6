"""Real defects: a subset of Magnetic-Tile (../shared/data), skipped cleanly when it is absent.

Grayscale PNGs of varying size with 0/255 masks, some defect masks (nearly) empty upstream: the
loader must read them all, and a fit on a subset must give metrics equal to sklearn's on the same
maps.
"""

import os

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from mvgviz.data import Preprocessing, load_category, load_split_arrays, read_image
from mvgviz.pipeline import fit


def test_loader_reads_every_magnetic_tile_file(shared_data):
    cat = load_category(shared_data, "magnetic_tile")
    assert len(cat.train) == 300 and len(cat.test) == 160
    sizes = {read_image(p).shape[:2] for p in cat.test.paths[::10]}
    assert len(sizes) > 1  # varying sizes, all resized to 224x224 below
    images, masks = load_split_arrays(cat.test, Preprocessing())
    assert images.shape == (160, 224, 224, 3) and images.dtype == np.uint8
    assert np.array_equal(images[..., 0], images[..., 2])  # grayscale replicated to RGB
    defect = np.array([d != "good" for d in cat.test.defect_types])
    assert not masks[~defect].any()
    assert masks[defect].any(axis=(1, 2)).mean() > 0.8  # a few upstream masks are (nearly) empty


@pytest.fixture(scope="module")
def subset(shared_data, tmp_path_factory):
    """30 train images, 6 good and 3 of each defect type in test, as symlinks (MVTec layout)."""
    src = shared_data / "magnetic_tile"
    root = tmp_path_factory.mktemp("mt") / "data"
    dst = root / "magnetic_tile"
    picks = {("train", "good"): 30}
    picks.update({("test", d.name): (6 if d.name == "good" else 3) for d in (src / "test").iterdir() if d.is_dir()})
    for (split, kind), n in picks.items():
        (dst / split / kind).mkdir(parents=True)
        for p in sorted((src / split / kind).glob("*.png"))[:n]:
            os.symlink(p, dst / split / kind / p.name)
            if kind != "good":
                m = src / "ground_truth" / kind / f"{p.stem}_mask.png"
                (dst / "ground_truth" / kind).mkdir(parents=True, exist_ok=True)
                os.symlink(m, dst / "ground_truth" / kind / m.name)
    return root


def test_fit_on_real_defects_matches_sklearn(subset, tmp_path):
    model = fit(subset, "magnetic_tile", layers="_blocks[10]", cache=tmp_path, device="cpu")
    lm = model.layer("_blocks[10]")
    masks = np.asarray(model.data.masks("test"))
    labels = model.data.labels("test")
    m2 = lm.m2("test")  # (N, 224, 224), OpenCV bilinear
    assert lm.metrics["pixel_auroc"] == pytest.approx(roc_auc_score(masks.ravel(), m2.ravel()), abs=1e-5)
    assert lm.metrics["pixel_aupr"] == pytest.approx(average_precision_score(masks.ravel(), m2.ravel()), abs=1e-5)
    assert lm.metrics["image_auroc"] == pytest.approx(roc_auc_score(labels, m2.reshape(len(m2), -1).max(1)), abs=1e-5)
    assert 0.5 < lm.metrics["pixel_auroc"] < 1.0 and 0.0 < lm.metrics["aupro"] < 1.0
    best = int(lm.ranking()[0])
    for c in (best, 0, lm.channels - 1):
        ref = roc_auc_score(masks.ravel(), lm.y2("test", None, [c])[:, 0].ravel())
        assert abs(lm.component_auroc[c] - ref) <= lm.component_auroc_error[c] + 1e-5
    # the best component is decided exactly: computed exactly, or its interval clears every other one
    auc, err = lm.component_auroc, lm.component_auroc_error
    others = np.delete(np.arange(lm.channels), best)
    assert err[best] == 0.0 or auc[best] - err[best] > np.max(auc[others] + err[others])
