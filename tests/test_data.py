import cv2
import numpy as np
import pytest
import torch

from mvgviz.data import (DataError, Preprocessing, list_categories, load_category, load_split_arrays,
                         preprocess_image, read_image, read_mask, to_network_input)

from conftest import write_category


def test_layout_and_index_order(tiny_root):
    write_category(tiny_root, "other", defects=("crack", "bent"))
    assert list_categories(tiny_root) == ["other", "widget"]
    cat = load_category(tiny_root, "other")
    assert len(cat.train) == 6
    # MVTec order: test folders sorted by name, files sorted by name
    assert list(cat.test.defect_types) == ["bent"] * 2 + ["crack"] * 2 + ["good"] * 2
    assert [p.name for p in cat.test.paths[:2]] == ["000.png", "001.png"]
    assert cat.test.mask_paths[0].name == "000_mask.png" and cat.test.mask_paths[-1] is None
    np.testing.assert_array_equal(cat.test.labels, [1, 1, 1, 1, 0, 0])


def test_fingerprint_changes_with_content(tiny_root):
    a = load_category(tiny_root, "widget").fingerprint
    p = tiny_root / "widget" / "train" / "good" / "000.png"
    cv2.imwrite(str(p), np.zeros((40, 48, 3), np.uint8))
    assert load_category(tiny_root, "widget").fingerprint != a


@pytest.mark.parametrize("kind", ["gray", "rgba", "gray16", "rgb16", "graya"])
def test_read_image_formats(tmp_path, kind):
    rng = np.random.default_rng(0)
    p = tmp_path / "x.png"
    if kind == "gray":
        arr = rng.integers(0, 255, (10, 12), dtype=np.uint8)
        expect = np.repeat(arr[:, :, None], 3, 2) / 255
    elif kind == "rgba":
        arr = rng.integers(0, 255, (10, 12, 4), dtype=np.uint8)  # BGRA on disk
        expect = arr[:, :, [2, 1, 0]] / 255
    elif kind == "gray16":
        arr = rng.integers(0, 65535, (10, 12), dtype=np.uint16)
        expect = np.repeat(arr[:, :, None], 3, 2) / 65535
    elif kind == "rgb16":
        arr = rng.integers(0, 65535, (10, 12, 3), dtype=np.uint16)
        expect = arr[:, :, ::-1] / 65535
    else:  # gray + alpha through PIL
        from PIL import Image
        arr = rng.integers(0, 255, (10, 12, 2), dtype=np.uint8)
        Image.fromarray(arr, mode="LA").save(p)
        expect = np.repeat(arr[:, :, :1], 3, 2) / 255
    if kind != "graya":
        cv2.imwrite(str(p), arr)
    img = read_image(p)
    assert img.shape == (10, 12, 3) and img.dtype == np.float32
    np.testing.assert_allclose(img, expect, atol=1e-6)


def test_preprocess_varying_sizes_to_crop():
    pre = Preprocessing()
    for shape in [(300, 200, 3), (256, 256, 3), (64, 500, 3)]:
        out = preprocess_image(np.random.default_rng(0).random(shape, dtype=np.float32), pre)
        assert out.shape == (224, 224, 3) and out.dtype == np.uint8


def test_preprocess_is_resize_then_centre_crop():
    pre = Preprocessing(resize=8, crop=4)
    img = np.zeros((8, 8, 3), np.float32)
    img[2:6, 2:6] = 1.0  # the central 4x4
    out = preprocess_image(img, pre)
    assert np.all(out == 255)


def test_masks_resized_nearest_and_binarised(tiny_root):
    cat = load_category(tiny_root, "widget")
    images, masks = load_split_arrays(cat.test, Preprocessing(resize=64, crop=48))
    assert images.shape == (4, 48, 48, 3) and masks.dtype == bool
    assert masks[2:].any(axis=(1, 2)).all() and not masks[:2].any()  # good < scratch
    m = read_mask(cat.test.mask_paths[2])
    assert m.dtype == bool and m.sum() == 100


def test_network_input_normalised():
    pre = Preprocessing()
    x = to_network_input(np.full((2, 4, 4, 3), 255, np.uint8), pre, torch.device("cpu"))
    assert x.shape == (2, 3, 4, 4)
    np.testing.assert_allclose(x[0, :, 0, 0].numpy(), (1 - np.array(pre.mean)) / np.array(pre.std), rtol=1e-6)


# ---- bad input: each names the file or argument ------------------------------------------

def test_truncated_png(tiny_root):
    p = tiny_root / "widget" / "train" / "good" / "001.png"
    p.write_bytes(p.read_bytes()[:200])
    cat = load_category(tiny_root, "widget")
    with pytest.raises(DataError, match=r"001\.png.*truncated"):
        load_split_arrays(cat.train, Preprocessing())


def test_corrupt_file(tiny_root):
    p = tiny_root / "widget" / "train" / "good" / "002.png"
    p.write_bytes(b"this is not an image")
    with pytest.raises(DataError, match=r"002\.png"):
        read_image(p)
    p.write_bytes(b"")
    with pytest.raises(DataError, match=r"002\.png.*empty"):
        read_image(p)


def test_missing_mask(tiny_root):
    (tiny_root / "widget" / "ground_truth" / "scratch" / "001_mask.png").unlink()
    with pytest.raises(DataError, match=r"test/scratch/001\.png.*no mask.*001_mask\.png"):
        load_category(tiny_root, "widget")


def test_mask_of_other_size(tiny_root):
    cv2.imwrite(str(tiny_root / "widget" / "ground_truth" / "scratch" / "000_mask.png"), np.zeros((20, 20), np.uint8))
    cat = load_category(tiny_root, "widget")
    with pytest.raises(DataError, match=r"000_mask\.png.*20x20.*48x40.*same size"):
        load_split_arrays(cat.test, Preprocessing())


def test_missing_train_good(tmp_path):
    (tmp_path / "cat" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match=r"train/good"):
        load_category(tmp_path, "cat")


def test_empty_splits(tiny_root):
    for p in (tiny_root / "widget" / "train" / "good").iterdir():
        p.unlink()
    with pytest.raises(DataError, match=r"empty split.*train/good"):
        load_category(tiny_root, "widget")


def test_empty_test_split(tmp_path):
    write_category(tmp_path, "c", n_good=0, defects=())
    with pytest.raises(DataError, match=r"empty split.*test"):
        load_category(tmp_path, "c")


def test_unknown_category_lists_known(tiny_root):
    with pytest.raises(DataError, match=r"--category: unknown category 'nope'.*found widget"):
        load_category(tiny_root, "nope")


def test_missing_root(tmp_path):
    with pytest.raises(DataError, match=r"--data.*not a folder"):
        load_category(tmp_path / "absent", "x")


def test_hidden_folders_are_not_categories(tmp_path):
    write_category(tmp_path, "widget")
    write_category(tmp_path, ".widget.partial-123")
    assert list_categories(tmp_path) == ["widget"]
