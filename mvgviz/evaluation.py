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


def evaluate(image_scores: np.ndarray | None, labels: np.ndarray | None, *, pixel_chunks: Chunks | None = None,
             pixel_labels: bool = True, note: str = "", fpr_limit: float = 0.3, curves: int = 0) -> dict:
    """Metrics of one method on the test split.

    Parameters
    ----------
    image_scores : (N,) float or None
        One score per test image, higher = more anomalous; None: the maximum of each image's pixel
        map, taken while the maps stream for the pixel metrics (no extra pass over them).
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
    recorded: list[np.ndarray] = []
    source = pixel_chunks
    if image_scores is None:  # the maximum of each map, taken during the pixel metrics' first pass
        if pixel_chunks is None:
            raise ValueError("`image_scores` is needed when there are no `pixel_chunks`")
        pixel_chunks = _recording(source, recorded)
    pixel_notes = []
    if pixel_chunks is None:
        pixel_notes.append("the method has no pixel maps")
    elif not pixel_labels:
        pixel_notes.append(note or "the test images have no ground-truth masks")
    else:
        pix = pixel_metrics_streamed(pixel_chunks, fpr_limit=fpr_limit, curves=curves)
        if curves:
            out.setdefault("curves", {}).update(pix.pop("curves"))
        out.update(pix)
    if image_scores is None:
        if not recorded:  # no pixel pass ran: one pass for the scores alone
            recorded = [_image_max(maps) for maps, _ in source()]
        image_scores = np.concatenate(recorded)
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
    out["note"] = "; ".join(dict.fromkeys(n for n in notes + pixel_notes if n))
    return out


def _recording(chunks: Chunks, into: list) -> Chunks:
    """``chunks`` that, on their first call, also append each chunk's per-image map maxima to ``into``."""
    calls = [0]

    def fresh():
        calls[0] += 1
        for maps, masks in chunks():
            if calls[0] == 1:
                into.append(_image_max(maps))
            yield maps, masks

    return fresh


def _image_max(maps) -> np.ndarray:
    """(n, H, W) maps (tensor or array) -> (n,) float64 maxima."""
    a = maps.detach().cpu().numpy() if hasattr(maps, "detach") else np.asarray(maps)
    return a.reshape(a.shape[0], -1).max(axis=1).astype(np.float64)


def image_roc_curve(scores: np.ndarray, labels: np.ndarray, n_points: int = 200) -> dict:
    """ROC curve of image scores (x = FPR, y = TPR) at every distinct score of a defective image,
    thinned to at most ``n_points`` (for plots)."""
    from .metrics import _roc_points, _thin, _thresholds
    lab = np.asarray(labels) == 1
    return _thin(*_roc_points(_thresholds(np.asarray(scores, dtype=np.float64), lab)), n_points)


def score_histograms(scores: np.ndarray, defect_types, *, bins: int = 30) -> dict:
    """Histograms of image scores, one per defect type (``good`` first), on shared edges.

    Returns ``{"edges": (bins+1,) list, "counts": {type: (bins,) list}}``; log-spaced edges when
    every score is positive and they span more than a decade (Mahalanobis scores do), else linear.
    """
    s = np.asarray(scores, dtype=np.float64)
    types = [str(t) for t in defect_types]
    if s.shape != (len(types),):
        raise ValueError(f"`defect_types` must have one entry per score ({s.size}), got {len(types)}")
    if not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"`bins` must be a positive integer, got {bins!r}")
    lo, hi = float(s.min()), float(s.max())
    if lo > 0 and hi / lo > 10:
        edges = np.geomspace(lo, hi, bins + 1)
    else:
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    order = sorted(set(types), key=lambda t: (t != "good", t))
    counts = {t: np.histogram(s[[x == t for x in types]], bins=edges)[0].tolist() for t in order}
    return {"edges": edges.tolist(), "counts": counts}


def ranked_images(image_scores: np.ndarray, defect_types) -> list[dict]:
    """Test images by decreasing score: ``[{"rank", "image", "score", "defect"}]`` (ties: lower index first)."""
    s = np.asarray(image_scores, dtype=np.float64)
    order = np.lexsort((np.arange(s.size), -s))
    return [{"rank": r + 1, "image": int(i), "score": float(s[i]), "defect": str(defect_types[i])}
            for r, i in enumerate(order)]

