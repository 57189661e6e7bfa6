"""The conventions every part of mvgviz shares, defined once.

- :data:`SPLITS` and :func:`check_split`: the two splits of an MVTec AD category;
- :data:`SCALES` and :func:`check_scale`: the colour scales of a heatmap grid
  (:mod:`mvgviz.render`);
- the label rule: an image is anomalous (label 1) when its defect type is not
  :data:`GOOD` (:func:`is_defect`, :func:`image_labels`); :data:`ANY_DEFECT` selects every
  such image;
- :data:`DEFAULT_BACKBONE`;
- :class:`ParamError`: a ``ValueError`` that names the Python parameter it is about, so
  that the command line can name its option (``--split``) and the viewer its control.

Nothing here imports more than NumPy.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

SPLITS = ("train", "test")
SCALES = ("per-component", "cross-component")
GOOD = "good"                         # defect type of normal images (MVTec AD's folder name)
UNLABELLED = "unlabelled"             # defect type of test images whose label is unknown (label -1)
ANY_DEFECT = "any"                    # selection value: every image whose type is not GOOD
DEFAULT_BACKBONE = "efficientnet_lite0"


class ParamError(ValueError):
    """A bad value of one parameter.

    ``str(e)`` names the Python parameter (``"`split` must be 'train' or 'test', got
    'val'"``); :meth:`with_name` puts another name in its place (the CLI's ``--split``,
    a viewer control's label).

    Attributes
    ----------
    param
        The Python parameter's name, e.g. ``"split"``.
    detail
        The message after the name: ``"must be 'train' or 'test', got 'val'"``, or
        ``": index 10 is out of range ..."`` (a detail starting with ``":"`` follows the
        name directly).
    """

    def __init__(self, param: str, detail: str):
        self.param = str(param)
        self.detail = str(detail)
        super().__init__(self.with_name(f"`{self.param}`"))

    def with_name(self, name: str) -> str:
        """The message with ``name`` standing for the parameter."""
        sep = "" if self.detail.startswith((":", ",")) else " "
        return f"{name}{sep}{self.detail}"


def as_param_error(e: Exception, param: str) -> ParamError:
    """``e`` as a :class:`ParamError` about ``param`` (a KeyError's or ValueError's message;
    a leading "`param` " in it is not repeated)."""
    if isinstance(e, ParamError):
        return e
    msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    prefix = f"`{param}` "
    return ParamError(param, msg[len(prefix):] if msg.startswith(prefix) else f": {msg}")


def _one_of(values: tuple[str, ...]) -> str:
    quoted = [repr(v) for v in values]
    return " or ".join(quoted) if len(quoted) <= 2 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def check_split(split, *, param: str = "split") -> str:
    """Return ``split`` if it is ``"train"`` or ``"test"``, else raise :class:`ParamError`
    naming ``param``."""
    if not isinstance(split, str) or split not in SPLITS:
        raise ParamError(param, f"must be {_one_of(SPLITS)}, got {split!r}")
    return split


def check_scale(scale, *, param: str = "scale") -> str:
    """Return ``scale`` if it is one of :data:`SCALES`, else raise :class:`ParamError`."""
    if not isinstance(scale, str) or scale not in SCALES:
        raise ParamError(param, f"must be {_one_of(SCALES)}, got {scale!r}")
    return scale


def label_of(defect_type: str) -> int:
    """The label rule: 0 for :data:`GOOD`, -1 (unknown) for :data:`UNLABELLED`, else 1 (anomalous)."""
    return 0 if defect_type == GOOD else -1 if defect_type == UNLABELLED else 1


def is_defect(defect_type: str) -> bool:
    """Whether an image is known to be anomalous (label 1)."""
    return label_of(defect_type) == 1


def image_labels(defect_types: Iterable[str]) -> np.ndarray:
    """(N,) int64 image labels of N defect types: 1 = anomalous, 0 = normal, -1 = unknown."""
    return np.array([label_of(d) for d in defect_types], dtype=np.int64).reshape(-1)
