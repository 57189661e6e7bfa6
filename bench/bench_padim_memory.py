"""PaDiM's peak memory with WideResNet-50-2's shapes (issue: "fit WideResNet-50-2 on a 24 GiB machine").

The state's size does not depend on the images, only on the shapes: P = 56 x 56 positions and
d = 550 channels of the 1792-channel layer1..3 embedding. Features are synthetic (seeded normal
noise with the real layers' shapes, made batch by batch: nothing held), so the measure is the
method's own: the streamed float64 sums, the chunked Cholesky factorisations, the float32 Cholesky
factors, and scoring one batch. Peak RSS by :class:`mvgviz.footprint.PeakMemory`.

    OMP_NUM_THREADS=2 python bench/bench_padim_memory.py [--train 32] [--backbone wide_resnet50_2] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402

from mvgviz.backbones import get_spec
from mvgviz.footprint import PeakMemory, _rss_kb
from mvgviz.models import PaDiM


class SyntheticFeatures:
    """A FeatureSource of seeded noise with a backbone's layer shapes at 224 x 224."""

    def __init__(self, spec, n_train: int, n_test: int, crop: int = 224):
        self.spec, self.crop = spec, crop
        self.layers = tuple(l.name for l in spec.layers)
        self.n = {"train": n_train, "test": n_test}

    def n_images(self, split):
        return self.n[split]

    def feature_shape(self, layer):
        l = self.spec.layer(layer)
        return l.channels, self.crop // l.stride, self.crop // l.stride

    def batches(self, split, layers, *, batch_size, device="cpu"):
        for i in range(0, self.n[split], batch_size):
            m = min(batch_size, self.n[split] - i)
            g = torch.Generator().manual_seed(hash((split, i)) % 2**31)
            yield {l: torch.randn((m, *self.feature_shape(l)), generator=g).abs_().to(device) for l in layers}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="wide_resnet50_2")
    ap.add_argument("--train", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    spec = get_spec(args.backbone)
    model = PaDiM.for_backbone(spec)
    src = SyntheticFeatures(spec, args.train, args.batch_size)
    start_mb = _rss_kb() / 1024
    t0 = time.perf_counter()
    with PeakMemory() as fit_peak:
        state = model.fit(src, device="cpu", batch_size=args.batch_size)
    fit_s = time.perf_counter() - t0
    state_mb = sum(a.nbytes for a in state.arrays.values()) / 2**20
    with PeakMemory() as score_peak:
        score = model.scorer(state, "cpu", size=(224, 224))
        out = score(next(src.batches("test", model.layers, batch_size=args.batch_size)))
        assert torch.isfinite(out.maps).all()
    p, d = state.arrays["cholesky"].shape[:2]
    res = {"backbone": args.backbone, "positions": int(p), "channels": int(d), "train_images": args.train,
           "rss_at_start_mb": round(start_mb, 1), "peak_fit_mb": fit_peak.rss_mb, "peak_score_mb": score_peak.rss_mb,
           "state_mb": round(state_mb, 1), "predicted_fit_mb": round(p * d * d * 12 / 2**20, 1),
           "fit_seconds": round(fit_s, 1), "memory_measure": fit_peak.how,
           "machine": machine()}
    print(json.dumps(res, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
