import shutil

import cv2
import numpy as np
import pytest
import torch

from mvgviz.data import (UNLABELLED, DataError, MissingLabels, Preprocessing, list_categories, load_category,
                         load_split_arrays, preprocess_image, preprocess_mask, read_image, read_mask, to_network_input)

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


@pytest.mark.parametrize("size,resize,crop", [(64, 32, 16), (32, 64, 40), (50, 80, 60)])
def test_preprocess_is_resize_then_centre_crop(size, resize, crop):
    """A linear ramp stays linear under bilinear (antialiased) resizing away from the borders: the
    output pixel i of the crop is the ramp at source coordinate (i + o + 0.5) * size / resize - 0.5,
    with o = (resize - crop) // 2."""
    src = np.arange(size, dtype=np.float64)
    ramp_x, ramp_y = 0.1 + 0.5 * src / size, 0.3 * src / size
    img = np.stack([ramp_y[:, None] + ramp_x[None, :], 0.2 + ramp_y[:, None] + 0 * ramp_x[None, :],
                    0.9 - ramp_x[None, :] + 0 * ramp_y[:, None]], axis=2).astype(np.float32)
    out = preprocess_image(img, Preprocessing(resize=resize, crop=crop))
    assert out.shape == (crop, crop, 3)
    o = (resize - crop) // 2
    c = (np.arange(crop) + o + 0.5) * size / resize - 0.5  # source coordinates of the crop's pixels
    f = lambda x: np.interp(x, src, ramp_x)  # noqa: E731
    g = lambda y: np.interp(y, src, ramp_y)  # noqa: E731
    expect = np.stack([g(c)[:, None] + f(c)[None, :], 0.2 + g(c)[:, None] + 0 * c[None, :],
                       0.9 - f(c)[None, :] + 0 * c[:, None]], axis=2) * 255
    np.testing.assert_allclose(out, expect, atol=0.5 + 1e-3)


def _tv_preprocess(img: np.ndarray, resize: int, crop: int) -> np.ndarray:
    """torchvision's reference: resize bilinear with antialias, centre crop, on float tensors."""
    from torchvision.transforms.v2 import functional as TF
    t = torch.from_numpy(img).permute(2, 0, 1)
    t = TF.resize(t, [resize, resize], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    return TF.center_crop(t, [crop, crop]).permute(1, 2, 0).numpy().astype(np.float64) * 255


@pytest.mark.parametrize("shape", [(100, 100), (97, 131), (300, 200), (1024, 1024), (230, 700), (256, 256)])
@pytest.mark.parametrize("resize,crop", [(256, 224), (64, 48)])
def test_preprocess_image_matches_torchvision_and_pil(shape, resize, crop):
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    u8 = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    img = u8.astype(np.float32) / 255
    out = preprocess_image(img, Preprocessing(resize=resize, crop=crop)).astype(np.float64)
    # torchvision on floats: ours only rounds to the nearest uint8 level
    np.testing.assert_allclose(out, _tv_preprocess(img, resize, crop), rtol=0, atol=0.5 + 1e-4)
    # PIL on uint8 (its own rounding of intermediate values): within one level
    from PIL import Image
    o = (resize - crop) // 2
    ref = np.asarray(Image.fromarray(u8).resize((resize, resize), Image.BILINEAR))[o:o + crop, o:o + crop]
    np.testing.assert_allclose(out, ref, rtol=0, atol=1)


def test_centre_crop_offset_for_odd_margins():
    """Offset (resize - crop) // 2; torchvision rounds half to even, so it agrees when the margin
    is 1 mod 4 and is one pixel further when it is 3 mod 4."""
    img = np.random.default_rng(3).random((40, 40, 3), dtype=np.float32)
    for crop, tv_shift in ((35, 0), (33, 1)):  # margins 5 (1 mod 4) and 7 (3 mod 4)
        out = preprocess_image(img, Preprocessing(resize=40, crop=crop)).astype(np.float64)
        full = _tv_preprocess(img, 40, 40)
        o = (40 - crop) // 2
        np.testing.assert_allclose(out, full[o:o + crop, o:o + crop], atol=0.5 + 1e-4)
        tv = _tv_preprocess(img, 40, crop)
        t = o + tv_shift
        np.testing.assert_allclose(tv, full[t:t + crop, t:t + crop])


# ---- masks: centre-aligned nearest, on their images ------------------------------------------

def _stripes(rng, shape, axis):
    """A random binary image that varies along one axis only: bilinear upscaling is then linear
    interpolation along that axis, and its threshold at 1/2 is exactly the nearest source pixel."""
    line = rng.random(shape[axis]) > 0.5
    return np.broadcast_to(line[:, None] if axis == 0 else line[None, :], shape)


@pytest.mark.parametrize("shape", [(100, 100), (97, 131), (61, 200)])
def test_mask_from_thresholded_image_stays_on_the_image(shape):
    """A mask made by thresholding an image equals the thresholded preprocessed image.

    Upscaling to 256 by a non-integer factor. Images varying along one axis: equal everywhere
    (no ties occur: the sampled source coordinates have no fractional part 1/2 for these sizes).
    A random 2-D binary image: equal wherever the bilinear value is decisive, below 1/4 or above
    3/4 (there the nearest of the four source pixels carries the largest weight and decides; the
    margin of 0.01 covers the rounding to uint8). OpenCV's INTER_NEAREST fails both (it samples
    each cell's top-left pixel)."""
    rng = np.random.default_rng(sum(shape))
    pre = Preprocessing()
    for binary, decisive_only in [(_stripes(rng, shape, 0), False), (_stripes(rng, shape, 1), False),
                                  (rng.random(shape) > 0.5, True)]:
        img = np.repeat(binary[:, :, None], 3, axis=2).astype(np.float32)
        pre_img = preprocess_image(img, pre)[:, :, 0].astype(np.float64) / 255
        mask = preprocess_mask(binary.copy(), pre)
        sel = (pre_img < 0.24) | (pre_img > 0.76) if decisive_only else np.ones(mask.shape, bool)
        assert sel.mean() > 0.3
        np.testing.assert_array_equal(mask[sel], pre_img[sel] > 0.5)


def test_mask_alignment_through_files(tmp_path):
    """The same through the files: a mask written as the threshold of its image stays on it."""
    cat = write_category(tmp_path, "c", size=(97, 131))
    rng = np.random.default_rng(5)
    masks = sorted((cat / "ground_truth" / "scratch").iterdir())
    for p, mp in zip(sorted(cat.glob("test/scratch/*.png")), masks):
        binary = np.asarray(_stripes(rng, (97, 131), 1))
        cv2.imwrite(str(p), np.repeat(binary[:, :, None] * 255, 3, axis=2).astype(np.uint8))
        cv2.imwrite(str(mp), binary.astype(np.uint8) * 255)
    c = load_category(tmp_path, "c")
    images, masks = load_split_arrays(c.test, Preprocessing())
    defect = c.test.labels == 1
    assert defect.sum() == 2
    np.testing.assert_array_equal(masks[defect], images[defect][..., 0] > 127)


@pytest.mark.parametrize("shape,resize,crop", [((100, 100), 256, 224), ((97, 131), 256, 224),
                                               ((1024, 1024), 256, 224), ((300, 200), 64, 48)])
def test_preprocess_mask_equals_pil_nearest(shape, resize, crop):
    """torchvision's path for PIL masks: Image.resize(NEAREST), then the centre crop."""
    from PIL import Image
    rng = np.random.default_rng(1)
    mask = rng.random(shape) > 0.7
    ref = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((resize, resize), Image.NEAREST)) > 0
    o = (resize - crop) // 2
    np.testing.assert_array_equal(preprocess_mask(mask, Preprocessing(resize=resize, crop=crop)),
                                  ref[o:o + crop, o:o + crop])


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


def test_network_input_matches_torchvision_normalize():
    from torchvision.transforms import v2
    pre = Preprocessing(mean=(0.3, 0.5, 0.7), std=(0.2, 0.25, 0.3))
    images = np.random.default_rng(2).integers(0, 256, (3, 20, 24, 3), dtype=np.uint8)
    ref = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(pre.mean, pre.std)])(
        torch.from_numpy(images).permute(0, 3, 1, 2))
    x = to_network_input(images, pre, torch.device("cpu"))
    assert x.shape == (3, 3, 20, 24) and x.dtype == torch.float32
    torch.testing.assert_close(x, ref, rtol=1e-6, atol=1e-6)


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
    with pytest.raises(MissingLabels, match=r"test/scratch/001\.png.*no mask.*001_mask\.png.*unlabelled"):
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
    with pytest.raises(DataError, match=r"`category`: unknown category 'nope'.*found widget"):
        load_category(tiny_root, "nope")


def test_missing_root(tmp_path):
    with pytest.raises(DataError, match=r"`root`: data root .* is not a folder"):
        load_category(tmp_path / "absent", "x")


def test_hidden_folders_are_not_categories(tmp_path):
    write_category(tmp_path, "widget")
    write_category(tmp_path, ".widget.partial-123")
    assert list_categories(tmp_path) == ["widget"]


# ---- data without labels -------------------------------------------------------------------

def _arrays(cat, pre=Preprocessing(resize=64, crop=48)):
    return load_split_arrays(cat.test, pre)


def test_labelled_data_load_the_same_as_unlabelled(tmp_path):
    write_category(tmp_path, "c", defects=("crack", "bent"))
    strict, loose = load_category(tmp_path, "c"), load_category(tmp_path, "c", unlabelled=True)
    assert not strict.unlabelled and loose.unlabelled
    for cat in (strict, loose):
        assert cat.test.image_labels and cat.test.pixel_labels and cat.test.label_note == ""
        assert cat.test.mask_known.all()
    assert strict.test.paths == loose.test.paths and strict.test.mask_paths == loose.test.mask_paths
    assert strict.fingerprint == loose.fingerprint
    np.testing.assert_array_equal(strict.test.labels, loose.test.labels)
    for a, b in zip(_arrays(strict), _arrays(loose)):
        np.testing.assert_array_equal(a, b)
    # the train split is good images only: no metrics there
    assert not strict.train.image_labels and (strict.train.labels == 0).all()


def _only_loose_test_images(root, n=5):
    cat = write_category(root, "c", n_good=0, defects=())
    (cat / "test" / "good").rmdir()
    rng = np.random.default_rng(1)
    for i in range(n):
        cv2.imwrite(str(cat / "test" / f"img{i}.png"), rng.integers(0, 255, (40, 48, 3), dtype=np.uint8))
    return cat


def test_only_test_images_no_folders_no_ground_truth(tmp_path):
    _only_loose_test_images(tmp_path)
    with pytest.raises(MissingLabels, match=r"5 test images lie directly in .*test.*img0\.png.*"
                                            r"test/good or test/<defect>.*unlabelled data"):
        load_category(tmp_path, "c")
    cat = load_category(tmp_path, "c", unlabelled=True)
    t = cat.test
    assert [p.name for p in t.paths] == [f"img{i}.png" for i in range(5)]
    assert t.defect_types == (UNLABELLED,) * 5 and t.mask_paths == (None,) * 5
    np.testing.assert_array_equal(t.labels, [-1] * 5)
    assert not t.image_labels and not t.pixel_labels and not t.mask_known.any()
    assert t.label_note == "5 test images lie directly in test/ and have no label"
    images, masks = _arrays(cat)
    assert images.shape == (5, 48, 48, 3) and masks.shape == (5, 48, 48) and not masks.any()


def test_loose_images_come_first_with_labelled_folders(tmp_path):
    cat = _only_loose_test_images(tmp_path, n=2)
    write_category(tmp_path, "c2")
    for p in (tmp_path / "c2" / "test").iterdir():
        p.rename(cat / "test" / p.name)
    (tmp_path / "c2" / "ground_truth").rename(cat / "ground_truth")
    t = load_category(tmp_path, "c", unlabelled=True).test
    assert list(t.defect_types) == [UNLABELLED] * 2 + ["good"] * 2 + ["scratch"] * 2
    np.testing.assert_array_equal(t.labels, [-1, -1, 0, 0, 1, 1])
    np.testing.assert_array_equal(t.mask_known, [False, False, True, True, True, True])
    assert not t.image_labels and not t.pixel_labels and "2 test images lie directly in test/" in t.label_note


def test_defect_folders_without_ground_truth(tmp_path):
    cat = write_category(tmp_path, "c", defects=("crack", "bent"))
    shutil.rmtree(cat / "ground_truth")
    with pytest.raises(MissingLabels, match=r"missing folder .*ground_truth.*4 defect images in "
                                            r"test/bent, test/crack have no masks.*unlabelled data"):
        load_category(tmp_path, "c")
    t = load_category(tmp_path, "c", unlabelled=True).test
    assert t.image_labels and not t.pixel_labels  # image labels known from the folders, pixel labels not
    np.testing.assert_array_equal(t.labels, [1, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(t.mask_known, [False] * 4 + [True] * 2)
    assert t.label_note == ("no ground_truth folder: the 4 defect images in test/bent, test/crack "
                            "have no masks")


def test_some_masks_missing(tmp_path):
    cat = write_category(tmp_path, "c", defects=("crack", "bent"), n_defect=3)
    (cat / "ground_truth" / "crack" / "001_mask.png").unlink()
    (cat / "ground_truth" / "crack" / "002_mask.png").unlink()
    with pytest.raises(MissingLabels, match=r"test/crack/001\.png.*has no mask: expected .*ground_truth/"
                                            r"crack/001_mask\.png'; 2 defect images in all have no mask"):
        load_category(tmp_path, "c")
    c = load_category(tmp_path, "c", unlabelled=True)
    t = c.test
    assert t.image_labels and not t.pixel_labels
    assert t.label_note == "2 defect images in test/crack have no mask in ground_truth/crack"
    assert [m is None for m in t.mask_paths] == [False] * 4 + [True] * 4  # bent 0-2, crack 0-2, good 0-1
    np.testing.assert_array_equal(t.mask_known, [True] * 4 + [False] * 2 + [True] * 2)
    images, masks = _arrays(c)
    np.testing.assert_array_equal(masks.any(axis=(1, 2)), t.mask_known & (t.labels == 1))
    # the fingerprint covers the masks present: adding one changes it
    fp = c.fingerprint
    cv2.imwrite(str(cat / "ground_truth" / "crack" / "001_mask.png"), np.zeros((40, 48), np.uint8))
    assert load_category(tmp_path, "c", unlabelled=True).fingerprint != fp


@pytest.mark.parametrize("kind", ["good", "defect"])
def test_test_split_of_one_kind(tmp_path, kind):
    good = kind == "good"
    write_category(tmp_path, "c", n_good=2 if good else 0, defects=() if good else ("dent",))
    if kind == "defect":
        (tmp_path / "c" / "test" / "good").rmdir()
    other = "defect" if kind == "good" else "good"
    with pytest.raises(MissingLabels, match=rf"has no {other} images.*unlabelled data"):
        load_category(tmp_path, "c")
    t = load_category(tmp_path, "c", unlabelled=True).test
    assert not t.image_labels and not t.pixel_labels and f"no {other} images" in t.label_note
    assert (t.labels == (0 if kind == "good" else 1)).all() and t.mask_known.all()


def test_unlabelled_folder_is_unknown(tmp_path):
    cat = write_category(tmp_path, "c")
    (cat / "test" / "scratch").rename(cat / "test" / UNLABELLED)
    with pytest.raises(MissingLabels, match=r"2 test images in .*test/unlabelled.* have no label"):
        load_category(tmp_path, "c")
    t = load_category(tmp_path, "c", unlabelled=True).test
    np.testing.assert_array_equal(t.labels, [0, 0, -1, -1])
    assert t.label_note == "2 test images in test/unlabelled have no label" and not t.image_labels


def test_unlabelled_mask_of_other_size_is_still_an_error(tmp_path):
    cat = write_category(tmp_path, "c", n_defect=3)
    (cat / "ground_truth" / "scratch" / "002_mask.png").unlink()
    cv2.imwrite(str(cat / "ground_truth" / "scratch" / "000_mask.png"), np.zeros((20, 20), np.uint8))
    c = load_category(tmp_path, "c", unlabelled=True)
    with pytest.raises(DataError, match=r"000_mask\.png.*20x20.*48x40.*same size"):
        _arrays(c)


def test_missing_labels_is_a_data_error():
    assert issubclass(MissingLabels, DataError)


# ---------------------------------------------------------------------------------------
# Bad input (issue 9, items 7-10): checked before decoding, one reason naming the file
# ---------------------------------------------------------------------------------------

def test_decompression_bomb_is_refused_from_its_header(tmp_path, monkeypatch):
    from conftest import write_png_bomb
    import mvgviz.data as D
    bomb = write_png_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 1_000_000
    with pytest.raises(cv2.error):  # what OpenCV alone does with it: a traceback
        cv2.imdecode(np.fromfile(bomb, np.uint8), cv2.IMREAD_UNCHANGED)
    monkeypatch.setattr(D.cv2, "imdecode", lambda *a: pytest.fail("decoded a decompression bomb"))
    with pytest.raises(DataError, match=r"bomb\.png' is 40000x40000 pixels \(1600 megapixels\): more than "
                                        r"the limit of 100 megapixels"):
        read_image(bomb)
    with pytest.raises(DataError, match="40000x40000"):
        read_mask(bomb)


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif", ".jpg"])
def test_size_limit_reads_each_format_header(tmp_path, monkeypatch, ext):
    """The limit is checked from the header of every format that is read: an image just over it
    is refused, one at it is decoded (the limit is lowered to keep the test small)."""
    import mvgviz.data as D
    img = np.full((30, 40, 3), 128, np.uint8)
    cv2.imwrite(str(tmp_path / f"a{ext}"), img)
    monkeypatch.setattr(D, "MAX_IMAGE_PIXELS", 30 * 40 - 1)
    with pytest.raises(DataError, match=r"is 40x30 pixels"):
        read_image(tmp_path / f"a{ext}")
    monkeypatch.setattr(D, "MAX_IMAGE_PIXELS", 30 * 40)
    assert read_image(tmp_path / f"a{ext}").shape == (30, 40, 3)


def test_jpeg_named_png_is_called_so(tmp_path):
    p = tmp_path / "photo.png"
    ok, buf = cv2.imencode(".jpg", np.zeros((20, 20, 3), np.uint8))
    p.write_bytes(buf.tobytes())
    with pytest.raises(DataError, match=r"photo\.png' is a JPEG file named \.png: rename it to \.jpg"):
        read_image(p)
    q = tmp_path / "scan.jpg"
    q.write_bytes(cv2.imencode(".png", np.zeros((20, 20), np.uint8))[1].tobytes())
    with pytest.raises(DataError, match=r"is a PNG file named \.jpg"):
        read_image(q)
    g = tmp_path / "anim.png"
    g.write_bytes(b"GIF89a" + b"\x00" * 40)
    with pytest.raises(DataError, match=r"is a GIF file named \.png: convert it to PNG"):
        read_image(g)


def _png_with_flipped_bytes(path, offset_from_end=100):
    rng = np.random.default_rng(0)
    cv2.imwrite(str(path), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    b = bytearray(path.read_bytes())
    for i in range(16):  # 16 flipped bytes inside the image data (IDAT), the file keeps its length
        b[-offset_from_end - i] ^= 0xFF
    path.write_bytes(bytes(b))
    return path


def test_corrupt_png_gives_one_message_and_nothing_from_libpng(tmp_path, capfd):
    p = _png_with_flipped_bytes(tmp_path / "flip.png")
    with pytest.raises(DataError, match=r"flip\.png' is corrupt: the CRC of its PNG chunk 'IDAT'"):
        read_image(p)
    capfd.readouterr()
    cv2.imdecode(np.fromfile(p, np.uint8), cv2.IMREAD_UNCHANGED)  # OpenCV alone: libpng speaks up
    assert "libpng error" in capfd.readouterr().err
    with pytest.raises(DataError):
        read_image(p)
    assert capfd.readouterr().err == ""


def test_truncated_jpeg(tmp_path):
    p = tmp_path / "cut.jpg"
    rng = np.random.default_rng(0)
    cv2.imwrite(str(p), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    assert read_image(p).shape == (64, 64, 3)
    p.write_bytes(p.read_bytes()[:-300])
    with pytest.raises(DataError, match=r"cut\.jpg' is truncated or corrupt: no JPEG end-of-image marker"):
        read_image(p)


@pytest.mark.parametrize("field,value,pattern", [
    ("std", (0.229, 0.0, 0.225), r"`std` must be > 0 for every RGB channel"),
    ("std", (0.2, 0.2), r"`std` must be 3 finite numbers"),
    ("mean", (0.5, float("nan"), 0.5), r"`mean` must be 3 finite numbers"),
    ("mean", "abc", r"`mean` must be 3 finite numbers"),
    ("resize", 0, r"`resize` must be a positive integer"),
    ("resize", 256.0, r"`resize` must be a positive integer"),
    ("crop", 300, r"`crop` must be in 1\.\.resize=256, got 300"),
    ("crop", -1, r"`crop` must be a positive integer"),
])
def test_preprocessing_is_validated_naming_the_field(field, value, pattern):
    from mvgviz.conventions import ParamError
    with pytest.raises(DataError, match=pattern) as e:
        Preprocessing(**{field: value})
    assert isinstance(e.value, ParamError) and e.value.param == field
    # lists (a manifest's JSON) are accepted and become tuples: the key is unchanged
    p = Preprocessing(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    assert p == Preprocessing() and p.tag() == Preprocessing().tag() and hash(p) == hash(Preprocessing())


@pytest.mark.parametrize("name", ["../other/widget", "../other", "widget/../../other/widget", "..", ".",
                                  "/abs/widget", "sub/widget", "", " "])
def test_category_names_are_confined_to_the_root(tmp_path, name):
    from mvgviz.conventions import ParamError
    write_category(tmp_path / "data", "widget")
    write_category(tmp_path / "other", "widget")  # what ../other/widget would reach
    write_category(tmp_path / "data" / "sub", "widget")
    with pytest.raises(DataError, match="`category` must be") as e:
        load_category(tmp_path / "data", name)
    assert isinstance(e.value, ParamError) and e.value.param == "category"


def test_extensions_read_and_other_files_reported(tmp_path):
    cat = write_category(tmp_path, "widget", defects=("crack",))
    (cat / "test" / "crack" / "003.webp").write_bytes(b"RIFF\x00\x00\x00\x00WEBP")
    (cat / "test" / "crack" / "004.gif").write_bytes(b"GIF89a")
    (cat / "test" / "crack" / ".DS_Store").write_bytes(b"x")  # hidden: passed over silently
    (cat / "train" / "good" / "notes.txt").write_text("x")
    img = cv2.imread(str(cat / "train" / "good" / "000.png"))
    for i, ext in enumerate((".jpg", ".JPEG", ".bmp", ".tif", ".TIFF")):
        cv2.imwrite(str(cat / "train" / "good" / f"x{i}{ext}"), img)
    c = load_category(tmp_path, "widget")
    assert [p.name for p in c.train.paths] == ["000.png", "001.png", "002.png", "003.png", "004.png", "005.png",
                                               "x0.jpg", "x1.JPEG", "x2.bmp", "x3.tif", "x4.TIFF"]
    assert sorted(p.name for p in c.ignored) == ["003.webp", "004.gif", "notes.txt"]
    notes = c.ignored_notes()
    assert len(notes) == 2 and all("\n" not in n for n in notes)
    crack = [n for n in notes if "crack" in n][0]
    assert crack.startswith(f"ignored 2 files that are not images (.gif, .webp) in {str(cat / 'test' / 'crack')!r}")
    assert ".png .jpg .jpeg .bmp .tif .tiff" in crack
    assert [n for n in notes if "train" in n][0].startswith("ignored 1 file that is not an image (.txt)")
    # no note without such files
    assert load_category(write_category(tmp_path / "b", "clean").parent, "clean").ignored_notes() == []


def test_empty_split_says_which_files_were_ignored(tmp_path):
    cat = write_category(tmp_path, "widget")
    for p in (cat / "train" / "good").glob("*.png"):
        p.rename(p.with_suffix(".webp"))
    with pytest.raises(DataError, match=r"holds no images .*; 6 other files \(\.webp\) were ignored"):
        load_category(tmp_path, "widget")


def _empty_masks(cat):
    for m in (cat / "ground_truth").rglob("*_mask.png"):
        cv2.imwrite(str(m), np.zeros(cv2.imread(str(m), cv2.IMREAD_UNCHANGED).shape[:2], np.uint8))


def test_all_empty_masks_found_from_the_masks_alone(tmp_path, monkeypatch):
    import mvgviz.data as D
    cat = write_category(tmp_path, "widget", defects=("crack", "hole"))
    _empty_masks(cat)
    monkeypatch.setattr(D, "read_image", lambda p: pytest.fail(f"decoded image {p}"))
    with pytest.raises(MissingLabels, match=r"the 4 masks in '.*widget/ground_truth' \(ground_truth/crack, "
                                            r"ground_truth/hole\) are all empty: pixel metrics need at least one"):
        load_category(tmp_path, "widget")
    # unlabelled: loaded, image labels kept, pixel metrics off with the reason
    c = load_category(tmp_path, "widget", unlabelled=True)
    assert c.test.image_labels and not c.test.pixel_labels and "are all empty" in c.test.label_note
    # one anomalous pixel anywhere is enough; the masks are read only until it is found
    m = cat / "ground_truth" / "crack" / "000_mask.png"
    mask = np.zeros(cv2.imread(str(m), cv2.IMREAD_UNCHANGED).shape[:2], np.uint8)
    mask[3, 4] = 255
    cv2.imwrite(str(m), mask)
    read = []
    orig = D.read_mask
    monkeypatch.setattr(D, "read_mask", lambda p: read.append(p) or orig(p))
    c = load_category(tmp_path, "widget")
    assert c.test.pixel_labels and read == [m]
