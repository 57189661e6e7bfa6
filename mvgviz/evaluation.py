"""One evaluation for every method: image AUROC, pixel AUROC, pixel AUPR and AUPRO.

:func:`evaluate` takes a method's image scores and, where the method has pixel maps, a stream of
its maps already brought to the pixels (the method's own ``to_pixels``) with the ground-truth
masks, batch by batch: nothing holds a whole split. Metrics that the data cannot define (no
labels, no masks, one class only) are ``None``, and ``note`` says why.

Conventions (METHOD.md, "Metrics"): raw scores, exact (ties count one half); pixel AUPR is the
step-wise average precision (as ``sklearn.metrics.average_precision_score``); AUPRO over
8-connected regions, FPR over every anomaly-free test pixel, integrated to FPR 0.3.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

METRICS = ("image_auroc", "pixel_auroc", "pixel_aupr", "aupro")
PIXEL_METRICS = ("pixel_auroc", "pixel_aupr", "aupro")

Chunks = Callable[[], Iterable[tuple]]


def evaluate(image_scores: np.ndarray, labels: np.ndarray | None, *, pixel_chunks: Chunks | None = None,
             pixel_labels: bool = True, note: str = "", fpr_limit: float = 0.3, curves: int = 0) -> dict:
    """Metrics of one method on the test split.

    Parameters
    ----------
    image_scores : (N,) float
        One score per test image, higher = more anomalous.
    labels : (N,) int or None
        1 = defective, 0 = good, -1 = unknown; None when no image is labelled.
    pixel_chunks : callable or None, keyword-only
        Returns a fresh iterable of ``(maps (n, H, W), masks (n, H, W) bool)`` covering the split in
        order (called twice: the exact metrics make two passes). None when the method has no maps.
    pixel_labels : bool, keyword-only
        Whether the masks are ground truth (False for unlabelled data: pixel metrics are None).
    note : str, keyword-only
        Why labels are missing, if they are (from the data set).
    curves : int, keyword-only
        When positive, also return ``"curves"``: the image ROC and the pixel ROC, PR and PRO curves
        (``{"image_roc" | "roc" | "pr" | "pro": {"x": [...], "y": [...]}}``), each thinned to at most
        this many points, where the data define them.

    Returns
    -------
    dict
        ``image_auroc``, ``pixel_auroc``, ``pixel_aupr`` (average precision), ``aupro``: float or
        None; ``note``: "" or why some metric is None.
    """
    from .metrics import auroc, pixel_metrics_streamed
    out: dict = dict.fromkeys(METRICS)
    notes = []
    scores = np.asarray(image_scores, dtype=np.float64)
    if labels is None or np.any(np.asarray(labels) < 0):
        notes.append(note or "the test images are not labelled")
    else:
        lab = np.asarray(labels)
        if lab.min() == lab.max():
            notes.append("image AUROC needs good and defective test images; the test split has only "
                         + ("defective" if lab.min() else "good") + " ones")
        else:
            out["image_auroc"] = auroc(scores, lab)
            if curves:
                out.setdefault("curves", {})["image_roc"] = image_roc_curve(scores, lab, curves)
    if pixel_chunks is None:
        notes.append("the method has no pixel maps")
    elif not pixel_labels:
        if note and note not in notes:
            notes.append(note)
        elif not notes:
            notes.append("the test images have no ground-truth masks")
    else:
        pix = pixel_metrics_streamed(pixel_chunks, fpr_limit=fpr_limit, curves=curves)
        if curves:
            out.setdefault("curves", {}).update(pix.pop("curves"))
        out.update(pix)
    out["note"] = "; ".join(dict.fromkeys(n for n in notes if n))
    return out


def image_roc_curve(scores: np.ndarray, labels: np.ndarray, n_points: int = 200) -> dict:
    """ROC curve of image scores (x = FPR, y = TPR) at every distinct score of a defective image,
    thinned to at most ``n_points`` (for plots)."""
    from .metrics import _roc_points, _thin, _thresholds
    lab = np.asarray(labels) == 1
    return _thin(*_roc_points(_thresholds(np.asarray(scores, dtype=np.float64), lab)), n_points)
