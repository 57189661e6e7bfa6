"""Cross-check ``mvgviz report --json`` against a from-scratch implementation of METHOD.md.

    python bench/crosscheck.py --data ../shared/data --category magnetic_tile [--cache DIR]

Only the backbone code is shared (``mvgviz.features``, run here as published, without the batch-norm
folding and padding changes that ``mvgviz report`` uses, so those are checked too); the rest is
re-implemented here with the reference libraries: ``np.cov`` for the covariance,
``scipy.stats.Covariance.from_eigendecomposition(...).whiten`` for Y, OpenCV ``INTER_LINEAR`` for the
upsampling, ``sklearn.metrics.roc_auc_score`` / ``average_precision_score`` for the pixel metrics, a
threshold-by-threshold AUPRO on 2000 score quantiles, and a Mann-Whitney AUROC (``scipy.stats.rankdata``)
for every single component. Prints the differences and exits 1 if a pixel AUROC or AUPRO differs by
more than 0.01 or a layer's best component differs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

import cv2
import numpy as np
from scipy import ndimage, stats
from sklearn.metrics import average_precision_score, roc_auc_score


def upsample(maps: np.ndarray, size: int) -> np.ndarray:
    """(N, h, w) -> (N, size, size), one OpenCV call per map."""
    return np.stack([cv2.resize(m.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR) for m in maps])


def aupro(scores: np.ndarray, masks: np.ndarray, limit: float = 0.3, n_thr: int = 2000) -> float:
    regions = []
    for i in range(len(masks)):
        lab, n = ndimage.label(masks[i], structure=np.ones((3, 3)))
        regions += [(i, np.flatnonzero(lab.ravel() == r)) for r in range(1, n + 1)]
    normal = np.sort(scores[~masks])
    thr = np.unique(np.quantile(scores, np.linspace(0, 1, n_thr)))[::-1]
    fpr = np.concatenate([[0], 1 - np.searchsorted(normal, thr, side="left") / normal.size])
    pro = [0.0]
    flat = scores.reshape(len(scores), -1)
    per_region = [np.sort(flat[i][idx]) for i, idx in regions]
    for t in thr:
        pro.append(np.mean([1 - np.searchsorted(v, t, side="left") / v.size for v in per_region]))
    fpr, pro = np.asarray(fpr), np.asarray(pro)
    keep = fpr <= limit
    x, y = list(fpr[keep]), list(pro[keep])
    j = np.argmax(~keep)
    if not keep.all():
        x.append(limit)
        y.append(pro[j - 1] + (pro[j] - pro[j - 1]) * (limit - fpr[j - 1]) / (fpr[j] - fpr[j - 1]))
    return float(np.trapezoid(y, x) / limit)


def mann_whitney(scores: np.ndarray, labels: np.ndarray) -> float:
    r = stats.rankdata(scores)
    p = labels.sum()
    return float((r[labels].sum() - p * (p + 1) / 2) / (p * (labels.size - p)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--category", required=True)
    ap.add_argument("--cache", default=None)
    args = ap.parse_args()
    cache = args.cache or tempfile.mkdtemp(prefix="mvgviz-crosscheck-")
    rep = json.loads(subprocess.run([sys.executable, "-m", "mvgviz.cli", "report", "--data", args.data,
                                     "--category", args.category, "--cache", cache, "--json", "--quiet"],
                                    check=True, capture_output=True, text=True).stdout)

    import torch

    from mvgviz.backbones import get_spec
    from mvgviz.data import Preprocessing, load_category, load_split_arrays, to_network_input
    from mvgviz.features import FeatureExtractor
    pre, cat = Preprocessing(), load_category(args.data, args.category)
    # the network exactly as published (mvgviz runs a prepared copy: batch norms folded, padding absorbed)
    fx = FeatureExtractor(rep["backbone"], get_spec(rep["backbone"]).layers, optimize=False)
    feats, masks = {}, None
    for split in ("train", "test"):
        images, m = load_split_arrays(cat.split(split), pre)
        masks = m if split == "test" else masks
        outs = [fx(to_network_input(images[i:i + 16], pre, "cpu")) for i in range(0, len(images), 16)]
        feats[split] = {k: torch.cat([o[k] for o in outs]).numpy().astype(np.float64) for k in outs[0]}
    labels = masks.ravel()
    fail = False
    for lay in rep["layers"]:
        ftr, fte = feats["train"][lay["name"]], feats["test"][lay["name"]]
        c = ftr.shape[1]
        x = ftr.transpose(0, 2, 3, 1).reshape(-1, c)
        mu, cov = x.mean(0), np.cov(x, rowvar=False)
        w, v = np.linalg.eigh(cov)
        w = np.where(w > c * np.finfo(np.float64).eps * w.max(), w, 0.0)
        nz = w > 0
        cv = stats.Covariance.from_eigendecomposition((w[nz], v[:, nz]))
        y = np.zeros((fte.shape[0], fte.shape[2], fte.shape[3], c))
        y[..., nz] = cv.whiten(fte.transpose(0, 2, 3, 1) - mu)  # (N, h, w, C)
        m2 = upsample((y ** 2).sum(-1), pre.crop)
        px = roc_auc_score(labels, m2.ravel())
        ap_ = average_precision_score(labels, m2.ravel())
        pro = aupro(m2, masks)
        comp = np.array([mann_whitney(upsample(y[..., k] ** 2, pre.crop).ravel(), labels) for k in range(c)])
        ours = np.array([k["auroc"] for k in lay["components"]])
        best_ok = int(np.argmax(comp)) == int(np.argmax(ours))
        print(f"{lay['name']:<12} pixel AUROC {lay['pixel_auroc']:.4f} vs {px:.4f}  AUPR {lay['pixel_aupr']:.4f} vs "
              f"{ap_:.4f}  AUPRO {lay['aupro']:.4f} vs {pro:.4f}  best component {int(np.argmax(ours))} vs "
              f"{int(np.argmax(comp))}  max |component AUROC diff| {np.abs(comp - ours).max():.2e}", flush=True)
        fail |= abs(px - lay["pixel_auroc"]) > 0.01 or abs(pro - lay["aupro"]) > 0.01 or not best_ok
    print("FAIL" if fail else "OK: within 0.01, same best components")
    return int(fail)


if __name__ == "__main__":
    sys.exit(main())
