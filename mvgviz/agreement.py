"""Do the components agree? Per test pixel, how many of a set of components exceed their own
train 99th percentile.

The paper observed that high-AUROC components agree on true anomalies and disagree on false
positives. For a set S of components of a layer, the *agreement map* of an image is, at every input
pixel, the number of components c in S whose upsampled ``y2_c`` exceeds ``p99_c``, the 99th
percentile of ``y2_c`` on the train split (a train-only threshold). It is an anomaly map of its own
(integer-valued, 0..|S|), evaluated like any other (:func:`mvgviz.evaluation.evaluate`).

The claim is checked on the pixels the full model flags: those whose upsampled M2 exceeds the train
split's 99th percentile of M2 (again train-only). Among them, *true positives* lie inside a
ground-truth region and *false positives* outside; the claim holds for a layer when the mean
agreement on true positives is higher than on false positives.

Component sets (:func:`mvgviz.variants.select` rules): a train-only one (default ``npca:5``, the
smallest-variance components holding 5 % of the variance) and, labelled as an oracle, the same
number of components with the best single-component test AUROC.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .results import LayerModel, Model

COMPONENT_BLOCK = 16  # components upsampled at once per batch (memory: batch x 16 x S x S floats)


def agreement(model: "Model", layer: "LayerModel", components, *, batch_size: int = 16) -> dict:
    """Agreement of ``components`` on the test split, streamed from the cache.

    Returns
    -------
    dict
        ``n_components``; ``metrics`` of the agreement map (pixel AUROC, AUPR, AUPRO; image AUROC of
        its per-image maximum); ``mean_on_true_positives`` / ``mean_on_false_positives`` (mean
        agreement on the pixels the full model flags, inside / outside the ground truth; None when
        there is none); ``n_true_positives`` / ``n_false_positives``; ``holds`` (True / False, or None
        without masks or flagged pixels).
    """
    import torch

    from .evaluation import evaluate
    from .results import Names
    comps = np.asarray(components, dtype=np.int64)
    size = (layer.image_size, layer.image_size)
    p99 = torch.from_numpy(np.asarray(layer.stats("train").per_component_p99, dtype=np.float32)[comps])
    m2_thr = float(layer.stats("train").m2_p99)
    y = layer.entry.reader(Names.components("test"))
    m2 = layer.entry.reader(Names.maps("test"))
    masks = model.data.reader("masks", "test")
    data = model.data
    sums = {"tp": 0.0, "fp": 0.0, "n_tp": 0, "n_fp": 0}

    calls = [0]

    def maps():
        calls[0] += 1
        for i in range(0, len(y), batch_size):
            y2 = torch.from_numpy(np.square(y.rows(i, i + batch_size)[:, comps].astype(np.float32)))  # (n, k, h, w)
            count = torch.zeros((y2.shape[0], *size), dtype=torch.float32)                          # (n, S, S)
            for a in range(0, len(comps), COMPONENT_BLOCK):  # bounded memory whatever k is
                up = layer.method.to_pixels(y2[:, a:a + COMPONENT_BLOCK], size)                     # (n, b, S, S)
                count += (up > p99[None, a:a + COMPONENT_BLOCK, None, None]).sum(1)
            mask = torch.from_numpy(masks.rows(i, i + batch_size))
            if calls[0] == 1:  # the first pass also counts the agreement on the flagged pixels
                flagged = layer.method.to_pixels(torch.from_numpy(m2.rows(i, i + batch_size))[:, None],
                                                 size)[:, 0] > m2_thr                               # (n, S, S)
                tp, fp = flagged & mask, flagged & ~mask
                sums["tp"] += float(count[tp].sum())
                sums["fp"] += float(count[fp].sum())
                sums["n_tp"] += int(tp.sum())
                sums["n_fp"] += int(fp.sum())
            yield count, mask

    # image score = max of the agreement map, taken while the metrics stream the maps
    metrics = evaluate(None, data.labels("test") if data.image_labels else None,
                       pixel_chunks=maps, pixel_labels=data.pixel_labels, note=data.label_note)
    mean_tp = sums["tp"] / sums["n_tp"] if sums["n_tp"] else None
    mean_fp = sums["fp"] / sums["n_fp"] if sums["n_fp"] else None
    holds = None if (mean_tp is None or mean_fp is None or not data.pixel_labels) else bool(mean_tp > mean_fp)
    return {"n_components": int(comps.size), "metrics": metrics, "mean_on_true_positives": mean_tp,
            "mean_on_false_positives": mean_fp, "n_true_positives": sums["n_tp"],
            "n_false_positives": sums["n_fp"], "holds": holds}


def layer_agreement(model: "Model", layer: "LayerModel", *, rule: str = "npca:5", batch_size: int = 16) -> dict:
    """The train-only agreement (``rule``) and, where the layer has single-component AUROCs, the
    oracle with as many of the best components, beside the full model's metrics."""
    from .variants import select
    comps = select(layer, rule)
    out = {"full_model": layer.metrics, "train_only": {"rule": rule, **agreement(model, layer, comps, batch_size=batch_size)}}
    if layer.has_ranking:
        k = max(1, min(int(comps.size), int(layer.channels) - 1))
        out["oracle"] = {"rule": f"oracle_best:{k}", "oracle": True,
                         **agreement(model, layer, select(layer, f"oracle_best:{k}"), batch_size=batch_size)}
    return out


def agreement_map(layer: "LayerModel", split: str, image: int, components) -> np.ndarray:
    """The agreement map of one image: at each input pixel, how many of ``components`` have an
    upsampled ``y2_c`` (as displayed and scored, :meth:`LayerModel.y2`) above ``p99_c``, their
    train 99th percentile; the per-image map that :func:`agreement` evaluates.

    Parameters
    ----------
    layer : LayerModel
    split : str
        ``"test"`` or ``"train"``.
    image : int
        Index in the split.
    components : sequence of int
        The component set S (e.g. :func:`mvgviz.variants.select` ``(layer, "npca:5")``).

    Returns
    -------
    (S, S) int64 in 0..len(components)

    Raises
    ------
    ParamError
        Naming ``components`` (empty, or an index outside 0..C-1), ``image`` or ``split``.
    """
    from .conventions import ParamError, check_split
    check_split(split)
    comps = np.asarray(list(components), dtype=np.int64)
    c = int(layer.channels)
    if comps.size == 0 or comps.ndim != 1 or comps.min() < 0 or comps.max() >= c:
        raise ParamError("components", f"must be a non-empty set of indices in 0..{c - 1}, got {comps.tolist()}")
    n = layer.n_images(split)
    if isinstance(image, (bool, np.bool_)) or not isinstance(image, (int, np.integer)) or not 0 <= image < n:
        raise ParamError("image", f"must be an index in 0..{n - 1} of the {split} split, got {image!r}")
    p99 = np.asarray(layer.stats("train").per_component_p99, dtype=np.float32)[comps]    # (k,)
    y2 = layer.y2(split, [int(image)], comps)[0]                                          # (k, S, S)
    return (y2 > p99[:, None, None]).sum(0, dtype=np.int64)
