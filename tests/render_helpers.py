"""Helpers shared by the tests of mvgviz.render (imported, not collected)."""

from mvgviz.render import GridSpec

LAYER = "_blocks[10]"


def small_spec(demo_model, defect_images, **kw):
    """Three rows (a defect image, a good one, another defect image), the layer's 3 best components."""
    lm = demo_model.layer(kw.get("layer", LAYER))
    good = demo_model.data.defect_types("test").index("good")
    base = dict(layer=LAYER, images=(defect_images[0], good, defect_images[-1]),
                components=tuple(int(c) for c in lm.ranking()[:3]))
    return GridSpec(**{**base, **kw})
