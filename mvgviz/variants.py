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

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .conventions import ParamError

if TYPE_CHECKING:
    from .results import LayerModel, Model

TRAIN_ONLY = ("drop_border", "drop_position", "npca")
ORACLE = ("oracle_best",)
RULES = TRAIN_ONLY + ORACLE
ORACLE_NOTE = "oracle: reads test labels, an upper bound, not a model"


def default_rules(channels: int) -> tuple[str, ...]:
    """The rules ``report --variants`` compares with the full model: drop 10 % of the components by
    border and by position score, NPCA/OPCA at 5 % of the variance, and the oracle's best 10 %."""
    n = max(1, round(channels / 10))
    return (f"drop_border:{n}", f"drop_position:{n}", "npca:5", f"oracle_best:{n}")


def parse_rule(rule) -> tuple[str, str]:
    """``"Drop_Border: 5"`` -> ``("drop_border", "5")``: a rule's name and value, checked for form
    only (the value's range depends on the layer, :func:`select`); ParamError naming ``subset``."""
    if not isinstance(rule, str) or not rule.strip():
        raise ParamError("subset", f"must be a rule such as {', '.join(r + ':N' for r in RULES)}, got {rule!r}")
    name, _, value = rule.strip().lower().partition(":")
    name, value = name.strip(), value.strip()
    if name not in RULES:
        raise ParamError("subset", f"must be one of {', '.join(r + ':N' for r in RULES)}, got {rule!r}")
    try:
        float(value)
    except ValueError:
        raise ParamError("subset", f": {rule!r} needs a number after '{name}:'") from None
    return name, value


def canonical_rule(rule) -> str:
    """The rule as mvgviz writes it (labels, manifests): ``"NPCA: 5"`` -> ``"npca:5"``."""
    name, value = parse_rule(rule)
    return f"{name}:{value}"


def is_oracle(rule: str) -> bool:
    """Whether a rule reads test labels (an oracle: an upper bound, never a model)."""
    return str(rule).strip().lower().startswith(ORACLE)


def select(layer: "LayerModel", rule: str) -> np.ndarray:
    """Component indices (ascending) of a subset rule ``RULE:VALUE`` on a layer.

    Raises
    ------
    ParamError
        Naming ``subset`` for an unknown rule, a bad value, an empty subset, or an oracle on a
        layer without single-component AUROCs (no ground-truth masks).
    """
    name, value = parse_rule(rule)
    c = int(layer.channels)
    v = float(value)
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


@dataclass(frozen=True)
class Subset:
    """A layer's subset model as the displays name it (:func:`subset_of`).

    Attributes
    ----------
    rule
        The canonical rule (``"npca:5"``).
    components
        The components it keeps, ascending (:func:`select`).
    channels
        The layer's number of components.
    """

    rule: str
    components: tuple[int, ...]
    channels: int

    @property
    def oracle(self) -> bool:
        return is_oracle(self.rule)

    @property
    def label(self) -> str:
        """The map's name in columns, colour bars and hover texts: ``"M2 [npca:5]"``."""
        return f"M2 [{self.rule}]"

    @property
    def description(self) -> str:
        """``"npca:5 keeps 7 of 112 components (train-only rule)"``; an oracle says that it reads
        test labels (:data:`ORACLE_NOTE` says the rest)."""
        kind = "oracle: reads test labels" if self.oracle else "train-only rule"
        return f"{self.rule} keeps {len(self.components)} of {self.channels} components ({kind})"


def subset_of(layer: "LayerModel", rule: str | None) -> Subset | None:
    """The :class:`Subset` of ``rule`` on ``layer``; None for None or ``""`` (the full model).
    ParamError naming ``subset`` as :func:`select`."""
    if rule is None or (isinstance(rule, str) and not rule.strip()):
        return None
    comps = select(layer, rule)
    return Subset(rule=canonical_rule(rule), components=tuple(int(c) for c in comps), channels=int(layer.channels))


def evaluate_subset(model: "Model", layer: "LayerModel", components, *, batch_size: int = 16,
                    curves: int = 0) -> dict:
    """Metrics of ``M2_S`` (S = ``components``) on the test split, streamed from the cache; with
    ``curves`` > 0 (points per curve), also ``"curves"``: image ROC, pixel ROC, PR and PRO as the full
    model's (:attr:`mvgviz.results.LayerModel.curves`). The maps scored are
    :meth:`mvgviz.results.LayerModel.subset_chunks` brought to the pixels with the method's
    ``to_pixels``: the maps the displays show (:meth:`~mvgviz.results.LayerModel.m2_subset`)."""
    import torch

    from .evaluation import evaluate
    size = (layer.image_size, layer.image_size)
    masks = model.data.reader("masks", "test")
    data = model.data

    def maps():
        i = 0
        for m2 in layer.subset_chunks("test", components, batch_size=batch_size):  # (n, h, w) float32
            yield (layer.method.to_pixels(torch.from_numpy(m2)[:, None], size)[:, 0],
                   torch.from_numpy(masks.rows(i, i + len(m2))))
            i += len(m2)

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
        if is_oracle(rule) and not layer.has_ranking:
            continue
        comps = select(layer, rule)
        m = evaluate_subset(model, layer, comps, batch_size=batch_size, curves=CURVE_POINTS if curves else 0)
        rows.append({"rule": rule, "n_components": int(comps.size), "oracle": is_oracle(rule),
                     **{k: m[k] for k in ("image_auroc", "pixel_auroc", "pixel_aupr", "aupro")},
                     **({"curves": m.get("curves", {})} if curves else {})})
    return rows
