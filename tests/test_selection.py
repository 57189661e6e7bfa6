"""mvgviz.selection: the component and image selection grammar of the CLI and the viewer."""

import numpy as np
import pytest

from mvgviz.conventions import ParamError
from mvgviz.selection import parse_components, parse_images

LAYER = "_blocks[10]"


@pytest.fixture(scope="module")
def lm(demo_model):
    return demo_model.layer(LAYER)


def test_parse_components(lm):
    rank = lm.ranking()
    assert parse_components("best:3", lm) == tuple(rank[:3])
    assert parse_components("worst:3", lm) == tuple(rank[::-1][:3])
    auroc = lm.component_auroc
    best = parse_components("best:5", lm)
    assert all(auroc[a] >= auroc[b] for a, b in zip(best, best[1:]))
    assert auroc[parse_components("worst:1", lm)[0]] == auroc.min()
    assert parse_components("12,40", lm) == (12, 40)
    assert parse_components(" 3-7 , 1,3", lm) == (3, 4, 5, 6, 7, 1)  # ranges, repeats dropped
    assert parse_components("BEST:1", lm) == (int(rank[0]),)
    assert parse_components(f"best:{lm.channels}", lm) == tuple(rank)


@pytest.mark.parametrize("text, match", [
    ("112", r"^`components`: index 112 is out of range.*valid: 0\.\.111"),
    ("best:0", r"^`components`: best:N needs N in 1\.\.112"),
    ("worst:200", r"^`components`: worst:N needs N in 1\.\.112"),
    ("best:x", r"^`components`: 'best:x' must be best:N"),
    ("top3", r"^`components` must be best:N, worst:N or indices.*0\.\.111"),
    ("5-3", r"^`components`: range '5-3' is empty"),
    ("1,a", r"^`components`: cannot read 'a'"),
    ("-2", r"^`components`: index -2 is out of range"),
])
def test_parse_components_errors(lm, text, match):
    with pytest.raises(ParamError, match=match) as info:
        parse_components(text, lm)
    assert info.value.param == "components"


def test_parse_images():
    types = ["crack"] * 3 + ["good"] * 4 + ["hole"] * 3
    assert parse_images("0,5,9", 10) == (0, 5, 9)
    assert parse_images("2-4", 10) == (2, 3, 4)
    assert parse_images("all", 4) == (0, 1, 2, 3)
    r = parse_images("random:4", 10, seed=3)
    assert r == parse_images("random:4", 10, seed=3)  # seeded
    assert len(r) == 4 == len(set(r)) and list(r) == sorted(r) and all(0 <= i < 10 for i in r)
    expected = np.sort(np.random.default_rng(3).choice(np.arange(10), size=4, replace=False))
    assert r == tuple(expected)
    assert {parse_images("random:3", 10, seed=s) for s in range(6)} != {r}  # the seed matters
    assert parse_images("random:20", 10) == tuple(range(10))  # all candidates when fewer
    assert parse_images("all", 10, defect_types=types, defect="hole") == (7, 8, 9)
    assert parse_images("all", 10, defect_types=types, defect="any") == (0, 1, 2, 7, 8, 9)
    assert set(parse_images("random:2", 10, defect_types=types, defect="crack")) <= {0, 1, 2}
    assert parse_images("1,8", 10, defect_types=types, defect="any") == (1, 8)


@pytest.mark.parametrize("text, kw, match", [
    ("10", {}, r"^`images`: index 10 is out of range.*valid: 0\.\.9"),
    ("random:0", {}, r"^`images`: random:N needs N >= 1"),
    ("first", {}, r"^`images` must be indices like 0,5,9.*'all' or random:N"),
    ("all", {"defect": "scratch"}, r"^`defect`: no image of type 'scratch'.*types: crack, good, hole"),
    ("4", {"defect": "hole"}, r"^`images`: image\(s\) 4 are not of defect type 'hole'"),
])
def test_parse_images_errors(text, kw, match):
    types = ["crack"] * 3 + ["good"] * 4 + ["hole"] * 3
    with pytest.raises(ParamError, match=match) as info:
        parse_images(text, 10, defect_types=types, **kw)
    assert info.value.param == ("defect" if match.startswith("^`defect`") else "images")


def test_parse_images_needs_the_defect_types_and_an_image():
    with pytest.raises(ParamError, match=r"^`defect_types` must give one defect type per image"):
        parse_images("all", 3, defect_types=["good", "crack"], defect="crack")
    with pytest.raises(ParamError, match=r"^`n_images` must be >= 1"):
        parse_images("all", 0)
