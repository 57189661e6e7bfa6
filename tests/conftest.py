"""Shared fixtures: tiny MVTec-layout data sets written with OpenCV."""

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy import ndimage

os.environ.setdefault("OMP_NUM_THREADS", "2")
# No test may write into the repository's cache/ (or a developer's $MVGVIZ_CACHE): a test that
# forgets --cache lands in a throw-away folder.
os.environ["MVGVIZ_CACHE"] = tempfile.mkdtemp(prefix="mvgviz-test-default-cache-")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def blob_masks(rng, n, h, w, *, fraction=0.08, n_good=1, sigma=2.0):
    """(n, h, w) bool masks made of a few blobs each; the last ``n_good`` images are defect-free."""
    noise = ndimage.gaussian_filter(rng.standard_normal((n, h, w)), sigma=(0, sigma, sigma))
    masks = noise > np.quantile(noise, 1 - fraction)
    masks[n - n_good:] = False
    return masks


def write_category(root: Path, name: str = "widget", *, n_train=6, n_good=2, defects=("scratch",),
                   n_defect=2, size=(40, 48), seed=0) -> Path:
    """A small category: noisy textures, defects as bright squares with exact masks."""
    rng = np.random.default_rng(seed)
    cat = root / name
    (cat / "train" / "good").mkdir(parents=True)
    for i in range(n_train):
        cv2.imwrite(str(cat / "train" / "good" / f"{i:03d}.png"), rng.integers(60, 120, (*size, 3), dtype=np.uint8))
    (cat / "test" / "good").mkdir(parents=True)
    for i in range(n_good):
        cv2.imwrite(str(cat / "test" / "good" / f"{i:03d}.png"), rng.integers(60, 120, (*size, 3), dtype=np.uint8))
    for d in defects:
        (cat / "test" / d).mkdir(parents=True)
        (cat / "ground_truth" / d).mkdir(parents=True)
        for i in range(n_defect):
            img = rng.integers(60, 120, (*size, 3), dtype=np.uint8)
            mask = np.zeros(size, np.uint8)
            y, x = rng.integers(5, size[0] - 15), rng.integers(5, size[1] - 15)
            img[y:y + 10, x:x + 10] = 250
            mask[y:y + 10, x:x + 10] = 255
            cv2.imwrite(str(cat / "test" / d / f"{i:03d}.png"), img)
            cv2.imwrite(str(cat / "ground_truth" / d / f"{i:03d}_mask.png"), mask)
    return cat


def unlabelled_copy(src, dst, *, keep_defect_folders: bool, name: str = "widget"):
    """The tiny category without ground truth: either defect folders without masks, or every
    test image directly in test/ (no labels at all)."""
    import shutil
    shutil.copytree(src / name / "train", dst / name / "train")
    test = dst / name / "test"
    for folder in sorted((src / name / "test").iterdir()):
        for img in sorted(folder.iterdir()):
            target = test / folder.name / img.name if keep_defect_folders else test / f"{folder.name}_{img.name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(img, target)
    return dst


@pytest.fixture
def tiny_root(tmp_path):
    write_category(tmp_path / "data")
    return tmp_path / "data"


@pytest.fixture(scope="session")
def shared_data():
    if not (SHARED_DATA / "magnetic_tile" / "train" / "good").is_dir():
        pytest.skip("../shared/data/magnetic_tile is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """The generated demo data set, two categories, smaller than the default (fast to fit)."""
    from mvgviz.demo import make_demo_dataset
    root = tmp_path_factory.mktemp("demo")
    make_demo_dataset(root, categories=("brick", "coffee"), n_train=16, n_test_good=4, n_per_defect=3)
    return root


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("demo_cache")


@pytest.fixture(scope="session")
def demo_model(demo_root, demo_cache):
    """brick, efficientnet_lite0, all four layers, fitted once per test session into demo_cache."""
    from mvgviz.pipeline import fit
    return fit(demo_root, "brick", cache=demo_cache, device="cpu")


@pytest.fixture(scope="session")
def defect_images(demo_model):
    """Indices of the anomalous test images of demo_model."""
    types = demo_model.data.defect_types("test")
    return [i for i, t in enumerate(types) if t != "good"]


def write_png_bomb(path: Path, width: int = 40000, height: int = 40000) -> Path:
    """A valid 1-bit grayscale PNG of ``width`` x ``height`` black pixels: a decompression bomb
    (40000x40000: 1.6 gigapixels, ~0.2 MB on disk), written row block by row block."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = (b"\x00" + b"\x00" * ((width + 7) // 8)) * 1000  # filter byte + packed bits, 1000 rows
    z = zlib.compressobj(9)
    parts = [z.compress(rows) for _ in range(height // 1000)]
    parts.append(z.compress((b"\x00" + b"\x00" * ((width + 7) // 8)) * (height % 1000)))
    parts.append(z.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts))
                     + chunk(b"IEND", b""))
    return path
