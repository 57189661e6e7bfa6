"""Anomaly-detection methods on one protocol (:mod:`mvgviz.models.base`), one module each.

- :class:`~mvgviz.models.mvg.MVG`: the paper's single Gaussian per layer (all positions pooled), and
  its multi-layer forms :class:`~mvgviz.models.mvg.MVGSum` (layer scores summed) and
  :class:`~mvgviz.models.mvg.MVGConcat` (one Gaussian on the concatenated layers).
- :class:`~mvgviz.models.padim.PaDiM`: one Gaussian per position over concatenated, channel-subsampled
  embeddings.
- :class:`~mvgviz.models.spade.SPADE`: image kNN on pooled features, same-position pixel kNN among the
  K nearest train images.
- :class:`~mvgviz.models.gaussian_ad.GaussianAD`: Rippel et al.'s image-level Gaussians on globally
  pooled features, one per level (full, PCA, NPCA), distances summed.
- :class:`~mvgviz.models.opca.OPCA`: Wang et al.'s smallest-variance principal components (5 % of
  the variance) per layer; image scores summed, maps averaged.

:func:`build_method` makes a method by name with the seeds' defaults for a backbone;
:func:`parse_methods` reads the command line's ``--methods`` list.
"""

from __future__ import annotations

import inspect

from ..conventions import ParamError
from .base import BatchScores, FeatureSource, Method, State
from .mvg import MVG, MVGConcat, MVGSum
from .padim import PaDiM
from .gaussian_ad import GaussianAD
from .opca import OPCA
from .spade import SPADE

METHODS = {m.name: m for m in (MVG, MVGSum, MVGConcat, PaDiM, SPADE, GaussianAD, OPCA)}


def method_options(name: str) -> list[str]:
    """The option names of a method (``for_backbone``'s keyword arguments)."""
    sig = inspect.signature(METHODS[name].for_backbone)
    return [p.name for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY]


def build_method(name: str, spec, options: dict | None = None, *, param: str = "methods") -> Method:
    """The method ``name`` with the seeds' defaults for the backbone ``spec``, ``options`` overriding
    them. An unknown name or option is a :class:`ParamError` naming ``param``."""
    if name not in METHODS:
        raise ParamError(param, f": unknown method {name!r}; the methods are {', '.join(METHODS)}")
    options = dict(options or {})
    known = method_options(name)
    unknown = [k for k in options if k not in known]
    if unknown:
        raise ParamError(param, f": method {name!r} has no option {', '.join(map(repr, unknown))}; "
                                f"its options are {', '.join(known) or 'none'}")
    return METHODS[name].for_backbone(spec, **options)


# options whose values are names or spellings, never numbers (a layer "3" is a name)
TEXT_OPTIONS = frozenset({"layer", "layers", "image_layer", "pixel_layers", "reg", "variant"})


def _value(text: str):
    """An option's value as typed: int, float, true/false, else the string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text.strip()


def parse_methods(text: str, *, param: str = "methods") -> list[tuple[str, dict]]:
    """``"mvg,padim:channels=50:seed=1,spade:k=20"`` -> ``[(name, options), ...]`` (no backbone
    needed; :func:`build_method` checks the names and options). Layer lists join names with ``+``;
    a value may hold ``:`` (``mvg:reg=ridge:0.1``); names and spellings (:data:`TEXT_OPTIONS`) stay
    text, other values become numbers or true/false where they read so."""
    out = []
    for item in (t.strip() for t in str(text).split(",")):
        if not item:
            continue
        name, *pairs = item.split(":")
        opts, last = {}, None
        for pair in pairs:
            key, eq, value = pair.partition("=")
            if not eq and last is not None:  # a value holding ':' (reg=ridge:0.1): the previous value goes on
                opts[last] = f"{opts[last]}:{pair}"
                continue
            if not eq or not key.strip():
                raise ParamError(param, f": {item!r}: options are written name:key=value[:key=value], got {pair!r}")
            last = key.strip().replace("-", "_")
            opts[last] = value.strip()
        out.append((name.strip().lower(), {k: v if k in TEXT_OPTIONS else _value(v) for k, v in opts.items()}))
    if not out:
        raise ParamError(param, f"must name at least one method ({', '.join(METHODS)}), got {text!r}")
    return out


__all__ = ["BatchScores", "FeatureSource", "GaussianAD", "METHODS", "MVG", "MVGConcat", "MVGSum", "Method", "OPCA", "PaDiM", "SPADE", "State", "build_method",
           "method_options", "parse_methods"]
