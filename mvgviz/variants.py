"""Component-subset models: M² restricted to a subset of a layer's whitened components.

The paper's conclusion suggests improving the model by dropping artifact-ridden components. A
*subset model* scores a pixel with ``M2_S = sum_{c in S} y2_c`` instead of the sum over all
components; it is evaluated exactly like the full model (:func:`mvgviz.evaluation.evaluate`: image
score = max of the upsampled map, pixel AUROC, AUPR, AUPRO), streaming over the cached test
components.

Selection rules (``RULE:VALUE``) that read the **train split only** (the diagnostics and the
eigenvalues), so they are legitimate model choices:

- ``drop_border:N``: drop the N components with the highest ``border_score``;
- ``drop_position:N``: drop the N components with the highest ``position_score``;
- ``npca:P``: keep the smallest-variance components whose eigenvalues add up to at most P % of the
  total variance (Rippel's NPCA, Wang's OPCA with P = 5; at least one component).

And one that reads test labels, reported only as an **oracle** upper bound, never as a model:

- ``oracle_best:K``: the K components with the best single-component test AUROC.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .conventions import ParamError

if TYPE_CHECKING:
    from .results import LayerModel, Model

TRAIN_ONLY = ("drop_border", "drop_position", "npca")
ORACLE = ("oracle_best",)
RULES = TRAIN_ONLY + ORACLE


def default_rules(channels: int) -> tuple[str, ...]:
    """The rules ``report --variants`` compares with the full model: drop 10 % of the components by
    border and by position score, NPCA/OPCA at 5 % of the variance, and the oracle's best 10 %."""
    n = max(1, round(channels / 10))
    return (f"drop_border:{n}", f"drop_position:{n}", "npca:5", f"oracle_best:{n}")


def select(layer: "LayerModel", rule: str) -> np.ndarray:
    """Component indices (ascending) of a subset rule ``RULE:VALUE`` on a layer.

    Raises
    ------
    ParamError
        Naming ``subset`` for an unknown rule, a bad value, an empty subset, or an oracle on a
        layer without single-component AUROCs (no ground-truth masks).
    """
    name, _, value = str(rule).strip().lower().partition(":")
    if name not in RULES:
        raise ParamError("subset", f"must be one of {', '.join(r + ':N' for r in RULES)}, got {rule!r}")
    c = int(layer.channels)
    try:
        v = float(value)
    except ValueError:
        raise ParamError("subset", f": {rule!r} needs a number after '{name}:'") from None
    if name == "npca":
        if not 0 < v <= 100:
            raise ParamError("subset", f": npca:P needs P in (0, 100] (% of the variance), got {value}")
        w = np.clip(np.asarray(layer.eigvals, dtype=np.float64), 0, None)  # ascending
        share = np.cumsum(w) / w.sum()
        k = max(1, int(np.searchsorted(share, v / 100.0, side="right")))
        return np.arange(min(k, c))
    n = int(v)
    if n != v or not 0 <= n < c:
        raise ParamError("subset", f": {name}:N needs an integer N in 0..{c - 1} (layer {layer.name} has {c} "
                         f"components), got {value}")
    if name == "oracle_best":
        if not layer.has_ranking:
            raise ParamError("subset", ": oracle_best needs single-component test AUROCs (ground-truth masks)")
        if n == 0:
            raise ParamError("subset", ": oracle_best:K needs K >= 1")
        return np.sort(layer.ranking()[:n])
    score = layer.diagnostics.border_score if name == "drop_border" else layer.diagnostics.position_score
    order = np.lexsort((np.arange(c), -np.nan_to_num(score, nan=-np.inf)))  # highest first, NaN last
    return np.sort(order[n:])


def evaluate_subset(model: "Model", layer: "LayerModel", components, *, batch_size: int = 16,
                    curves: int = 0) -> dict:
    """Metrics of ``M2_S`` (S = ``components``) on the test split, streamed from the cache; with
    ``curves`` > 0 (points per curve), also ``"curves"``: image ROC, pixel ROC, PR and PRO as the full
    model's (:attr:`mvgviz.results.LayerModel.curves`)."""
    import torch

    from .evaluation import evaluate
    from .results import Names
    comps = np.asarray(components, dtype=np.int64)
    size = (layer.image_size, layer.image_size)
    y = layer.entry.reader(Names.components("test"))
    masks = model.data.reader("masks", "test")
    data = model.data

    def maps():
        for i in range(0, len(y), batch_size):
            y2 = np.square(y.rows(i, i + batch_size)[:, comps].astype(np.float32))  # (n, k, h, w)
            m2 = torch.from_numpy(y2.sum(1, dtype=np.float64).astype(np.float32))[:, None]  # (n, 1, h, w)
            yield layer.method.to_pixels(m2, size)[:, 0], torch.from_numpy(masks.rows(i, i + batch_size))

    # image score = max of the subset's map, taken while the metrics stream the maps
    return evaluate(None, data.labels("test") if data.image_labels else None,
                    pixel_chunks=maps, pixel_labels=data.pixel_labels, note=data.label_note, curves=curves)


def variants(model: "Model", layer: "LayerModel", rules=None, *, batch_size: int = 16,
             curves: bool = False) -> list[dict]:
    """The full model and each rule's subset model, with their metrics (JSON-able rows); with
    ``curves``, each row also has its ``"curves"`` (the full model's from the cache, each subset's
    computed with its metrics, :data:`mvgviz.pipeline.CURVE_POINTS` points each)."""
    from .pipeline import CURVE_POINTS
    rules = default_rules(layer.channels) if rules is None else rules
    rows = [{"rule": "full", "n_components": int(layer.channels), "oracle": False, **layer.metrics,
             **({"curves": layer.curves} if curves else {})}]
    for rule in rules:
        if rule.strip().lower().startswith("oracle") and not layer.has_ranking:
            continue
        comps = select(layer, rule)
        m = evaluate_subset(model, layer, comps, batch_size=batch_size, curves=CURVE_POINTS if curves else 0)
        rows.append({"rule": rule, "n_components": int(comps.size), "oracle": rule.strip().lower().startswith(ORACLE),
                     **{k: m[k] for k in ("image_auroc", "pixel_auroc", "pixel_aupr", "aupro")},
                     **({"curves": m.get("curves", {})} if curves else {})})
    return rows
