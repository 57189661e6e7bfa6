"""How each method's cost grows with the number of train images and with the number of channels.

Each method of :mod:`mvgviz.models` runs on the protocol directly (fit on the train split,
then score the test split and bring its maps to the pixels), on synthetic features with a
ResNet-18-like layer table (4 layers, strides 4/8/16/32, channels ``64 s, 128 s, 256 s, 512 s``)
at a 128 x 128 input, so that only the method's cost is measured (no backbone, no disk):

- train images N in {50, 100, 200} at channel scale s = 1;
- channel scale s in {0.5, 1, 2} at N = 100.

Time is wall time of fit and of predict (one thread unless ``--threads``); memory is the peak RSS
above the RSS at the start of each method (:class:`mvgviz.footprint.PeakMemory`). One method at a
time, all in one run, so ratios are comparable.

    python bench/bench_scaling.py [--threads 1] [--json bench/results/scaling.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, pin_threads  # noqa: E402

N_TEST = 32
SIZE = 128
METHODS = ("mvg", "mvg-sum", "mvg-concat", "padim", "spade", "gaussian-ad", "opca")


def _spec(scale: float):
    from mvgviz.backbones import BackboneSpec, LayerSpec
    layers = tuple(LayerSpec(f"layer{i + 1}", f"layer{i + 1}", int(c * scale), s)
                   for i, (c, s) in enumerate(((64, 4), (128, 8), (256, 16), (512, 32))))
    return BackboneSpec("synthetic", layers, "synthetic features, ResNet-18-like shapes")


class Features:
    """A FeatureSource of seeded noise (made per batch; ReLU-like non-negative values)."""

    def __init__(self, spec, n_train: int):
        self.spec = spec
        self.layers = tuple(l.name for l in spec.layers)
        self.n = {"train": n_train, "test": N_TEST}

    def n_images(self, split):
        return self.n[split]

    def feature_shape(self, layer):
        l = self.spec.layer(layer)
        return l.channels, SIZE // l.stride, SIZE // l.stride

    def batches(self, split, layers, *, batch_size, device="cpu"):
        import torch
        for i in range(0, self.n[split], batch_size):
            m = min(batch_size, self.n[split] - i)
            g = torch.Generator().manual_seed(1000 * (split == "test") + i)
            yield {l: torch.randn((m, *self.feature_shape(l)), generator=g).clamp_(min=0) for l in layers}


def run_one(name: str, spec, n_train: int) -> dict:
    import torch

    from mvgviz.footprint import PeakMemory, _rss_kb
    from mvgviz.models import METHODS
    src = Features(spec, n_train)
    opts = {"k": min(50, n_train)} if name == "spade" else {}
    m = METHODS[name].for_backbone(spec, **opts)
    start = _rss_kb() / 1024
    with PeakMemory() as peak:
        t0 = time.perf_counter()
        state = m.fit(src, device="cpu", batch_size=16)
        t1 = time.perf_counter()
        score = m.scorer(state, "cpu", size=(SIZE, SIZE))
        for b in src.batches("test", m.layers, batch_size=16):
            s = score(b)
            if s.maps is not None:
                m.to_pixels(s.maps[:, None], (SIZE, SIZE))
        t2 = time.perf_counter()
    del state, score
    torch.set_num_threads(torch.get_num_threads())
    return {"method": name, "n_train": n_train, "channels": sum(l.channels for l in spec.layers),
            "fit_seconds": round(t1 - t0, 3), "predict_seconds": round(t2 - t1, 3),
            "extra_memory_mb": round(peak.rss_mb - start, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    pin_threads(args.threads)
    import torch
    torch.set_num_threads(args.threads)
    rows = []
    configs = [(50, 1.0), (100, 1.0), (200, 1.0), (100, 0.5), (100, 2.0)]
    for name in args.methods.split(","):
        run_one(name, _spec(0.25), 20)  # warm-up: first calls of each kernel
        for n, scale in configs:
            r = run_one(name, _spec(scale), n)
            rows.append(r)
            print(json.dumps(r), flush=True)
    out = {"machine": machine(), "input": SIZE, "n_test": N_TEST, "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
