"""mvgviz.conventions: splits, scales, the label rule and errors that name their parameter."""

import numpy as np
import pytest

from mvgviz.conventions import (ANY_DEFECT, DEFAULT_BACKBONE, GOOD, SCALES, SPLITS, ParamError, as_param_error,
                                check_scale, check_split, image_labels, is_defect)


def test_constants():
    assert SPLITS == ("train", "test")
    assert SCALES == ("per-component", "cross-component")
    assert GOOD == "good" and ANY_DEFECT == "any"
    from mvgviz.backbones import BACKBONES
    assert DEFAULT_BACKBONE in BACKBONES


@pytest.mark.parametrize("split", SPLITS)
def test_check_split_accepts(split):
    assert check_split(split) == split


@pytest.mark.parametrize("bad", ["val", "Test", "", None, 1])
def test_check_split_names_the_parameter(bad):
    with pytest.raises(ParamError, match=rf"^`split` must be 'train' or 'test', got {bad!r}$") as info:
        check_split(bad)
    assert info.value.param == "split" and isinstance(info.value, ValueError)
    assert info.value.with_name("--split") == f"--split must be 'train' or 'test', got {bad!r}"
    with pytest.raises(ParamError, match=r"^`name` must") as info:
        check_split(bad, param="name")
    assert info.value.param == "name"


def test_check_scale():
    for s in SCALES:
        assert check_scale(s) == s
    with pytest.raises(ParamError, match=r"^`scale` must be 'per-component' or 'cross-component', got 'log'$"):
        check_scale("log")


def test_param_error_detail_after_a_colon():
    e = ParamError("images", ": index 10 is out of range")
    assert str(e) == "`images`: index 10 is out of range"
    assert e.with_name("--images") == "--images: index 10 is out of range"
    assert e.detail == ": index 10 is out of range"


def test_as_param_error():
    e = as_param_error(ValueError("`layer` must be one of a, b, got 'c'"), "layer")
    assert e.param == "layer" and str(e) == "`layer` must be one of a, b, got 'c'"
    e = as_param_error(KeyError("layer 'x' was not fitted"), "layer")
    assert str(e) == "`layer`: layer 'x' was not fitted"
    same = ParamError("split", "must be x")
    assert as_param_error(same, "other") is same


def test_label_rule():
    types = ["good", "crack", "good", "hole", "Good"]
    labels = image_labels(types)
    assert labels.dtype == np.int64 and labels.shape == (5,)
    assert labels.tolist() == [0, 1, 0, 1, 1]  # only the exact folder name "good" is normal
    assert [is_defect(t) for t in types] == [bool(v) for v in labels]
    assert image_labels([]).shape == (0,)


def test_category_split_uses_check_split(tiny_root):
    from mvgviz.data import load_category
    cat = load_category(tiny_root, "widget")
    assert cat.split("train") is cat.train and cat.split("test") is cat.test
    with pytest.raises(ParamError, match=r"^`split` must be 'train' or 'test', got 'val'$"):
        cat.split("val")
