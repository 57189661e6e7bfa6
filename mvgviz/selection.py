"""The selection grammar shared by the command line and the viewer.

Components of a layer (:func:`parse_components`):

- ``best:N`` / ``worst:N``: the N highest / lowest single-component AUROCs, in that order;
- indices and ranges ``12,40``, ``3-7`` (0-based, ascending eigenvalue order; repeats dropped).

Images of a split (:func:`parse_images`):

- indices and ranges ``0,5,9``, ``3-7`` (0-based, sorted MVTec order);
- ``all``;
- ``random:N``: N distinct images drawn with ``np.random.default_rng(seed)``, ascending;
- optionally only those of one defect type (``defect=``; :data:`~mvgviz.conventions.ANY_DEFECT`
  for every anomalous image).

Errors are :class:`~mvgviz.conventions.ParamError` naming the parameter (``components``,
``images``, ``defect``): the CLI shows them as ``--components``, ``--images``, ``--defect``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .conventions import ANY_DEFECT, ParamError, image_labels

if TYPE_CHECKING:
    from .results import LayerModel

_RANGE = re.compile(r"^(\d+)\s*-\s*(\d+)$")


def _parse_list(text: str, param: str, hi: int, what: str = "") -> list[int]:
    """"3,5-7, 9" -> [3, 5, 6, 7, 9]; every index must lie in 0..hi-1; repeats dropped."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        r = _RANGE.match(part)
        if r:
            a, b = int(r.group(1)), int(r.group(2))
            if a > b:
                raise ParamError(param, f": range {part!r} is empty (start > end)")
            vals = range(a, b + 1)
        elif re.fullmatch(r"[+-]?\d+", part):
            vals = [int(part)]
        else:
            raise ParamError(param, f": cannot read {part!r} in {text!r}; expected integers or "
                                    "ranges like 3-7, separated by commas")
        for v in vals:
            if not 0 <= v < hi:
                raise ParamError(param, f": index {v} is out of range{what}; valid: 0..{hi - 1}")
        out.extend(vals)
    if not out:
        raise ParamError(param, f": no index in {text!r}")
    return list(dict.fromkeys(out))


def parse_components(components: str, layer: "LayerModel") -> tuple[int, ...]:
    """Component selection of a layer.

    Parameters
    ----------
    components
        ``"best:N"`` (the N highest single-component AUROCs, best first), ``"worst:N"``
        (the N lowest, worst first), or indices and ranges ``"12,40"``, ``"3-7"``
        (0-based, ascending eigenvalue order; repeats dropped).
    layer
        The :class:`~mvgviz.results.LayerModel` (its ranking and channel count).

    Returns
    -------
    tuple of int
        Component indices in display order.

    Raises
    ------
    ParamError
        Naming ``components`` and the valid range ``0..C-1``.
    """
    text = components
    c = int(layer.channels)
    t = str(text).strip().lower()
    where = f"layer {layer.name} has {c} components, 0..{c - 1}"
    for kind in ("best", "worst"):
        if t.startswith(kind + ":"):
            try:
                n = int(t.split(":", 1)[1])
            except ValueError:
                raise ParamError("components", f": {text!r} must be {kind}:N with an integer N in 1..{c}") from None
            if not 1 <= n <= c:
                raise ParamError("components", f": {kind}:N needs N in 1..{c} ({where}), got {n}")
            if not layer.has_ranking:
                raise ParamError("components", f": {kind}:N needs the single-component AUROCs, which need "
                                 f"ground-truth masks ({layer.metrics_note or 'none here'}); use indices such as 0-3")
            order = layer.ranking()  # (C,) best first
            sel = order[:n] if kind == "best" else order[::-1][:n]
            return tuple(int(i) for i in sel)
    if not re.match(r"^[+-]?\d", t):
        raise ParamError("components", f"must be best:N, worst:N or indices like 12,40 or 3-7 ({where}), "
                                       f"got {text!r}")
    return tuple(_parse_list(t, "components", c, what=f" of layer {layer.name} ({c} components)"))


def parse_images(images: str, n_images: int, *, defect_types: Sequence[str] | None = None,
                 defect: str | None = None, seed: int = 0) -> tuple[int, ...]:
    """Image selection in a split.

    Parameters
    ----------
    images
        ``"0,5,9"`` or ranges ``"3-7"`` (0-based indices in the split), ``"all"``, or
        ``"random:N"``: N distinct images drawn with ``np.random.default_rng(seed)``,
        returned in ascending order (all candidates if fewer than N).
    n_images
        Number of images in the split.
    defect_types
        (n_images,) defect type per image (``"good"`` for good ones); needed with ``defect``.
    defect
        Keep only images of this defect type (``"any"``: every image that is not
        ``"good"``). Explicit indices of another type are an error.
    seed
        Seed of ``random:N``.

    Returns
    -------
    tuple of int

    Raises
    ------
    ParamError
        Naming ``images`` (or ``defect``, ``defect_types``, ``n_images``).
    """
    text = images
    n = int(n_images)
    if n < 1:
        raise ParamError("n_images", f"must be >= 1 (the split holds no image), got {n}")
    pool = np.arange(n)
    if defect is not None:
        if defect_types is None or len(defect_types) != n:
            raise ParamError("defect_types", "must give one defect type per image of the split when "
                                             "`defect` is given")
        types = np.asarray(list(defect_types), dtype=object)
        if defect == ANY_DEFECT and ANY_DEFECT not in set(types):
            keep = image_labels(types) == 1
        else:
            keep = types == defect
        if not keep.any():
            known = sorted(set(types))
            raise ParamError("defect", f": no image of type {defect!r} in this split; types: "
                                       f"{', '.join(known)} (or '{ANY_DEFECT}' for every non-good image)")
        pool = pool[keep]
    t = str(text).strip().lower()
    if t == "all":
        return tuple(int(i) for i in pool)
    if t.startswith("random:"):
        try:
            k = int(t.split(":", 1)[1])
        except ValueError:
            raise ParamError("images", f": {text!r} must be random:N with an integer N >= 1") from None
        if k < 1:
            raise ParamError("images", f": random:N needs N >= 1, got {k}")
        rng = np.random.default_rng(seed)
        pick = rng.choice(pool, size=min(k, pool.size), replace=False)
        return tuple(int(i) for i in np.sort(pick))
    if not re.match(r"^[+-]?\d", t):
        raise ParamError("images", f"must be indices like 0,5,9 or 3-7, 'all' or random:N "
                                   f"(valid indices 0..{n - 1}), got {text!r}")
    sel = _parse_list(t, "images", n, what=f" ({n} images in the split)")
    if defect is not None:
        allowed = set(pool.tolist())
        bad = [i for i in sel if i not in allowed]
        if bad:
            raise ParamError("images", f": image(s) {', '.join(map(str, bad))} are not of defect type "
                                       f"{defect!r}; candidates: {_short_list(pool)}")
    return tuple(sel)


def _short_list(a, n: int = 12) -> str:
    a = [int(x) for x in a]
    return ", ".join(map(str, a[:n])) + (f", ... ({len(a)} in all)" if len(a) > n else "")
