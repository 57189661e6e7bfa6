"""Export one category's preprocessed inputs and the backbone weights for the peer benchmark.

    python bench/export_inputs.py --data demo_data --category brick \
        --out /tmp/peer/brick.npz --weights-out /tmp/peer/resnet18_random.pt \
        [--weights random|PATH] [--max-train N] [--max-test M]

Runs in the project's environment (imports mvgviz). Writes:

* ``--out`` (.npz): ``train`` (N, 224, 224, 3) uint8 and ``test`` (M, 224, 224, 3) uint8, exactly the
  pixels mvgviz feeds its backbone (``load_split_arrays`` with the default ``Preprocessing``: resize 256
  bilinear-antialias, centre crop 224); ``test_masks`` (M, 224, 224) bool; ``test_labels`` (M,) int64
  (1 defective, 0 good); ``mean``/``std`` (3,) float64, the normalisation mvgviz applies
  (``(x/255 - mean)/std``); ``padim_channels`` (100,) int64, the embedding channels mvgviz's PaDiM keeps
  for ResNet-18 layer1..3 (seed 0), so the peer can optionally use the same subset; ``meta``, a JSON
  string (data root, category, file names, preprocessing tag, weights tag, mvgviz version).
* ``--weights-out`` (.pt): the torchvision-format ``state_dict`` of the ResNet-18 mvgviz builds
  (``build_backbone("resnet18", weights)``; default ``random``: the seeded random network, so
  nothing needs downloading). Every tensor of the network is saved, ``fc`` included.

``--max-train``/``--max-test`` keep the first N train images and an evenly spaced M of the test images
(in file order, so good and defect images both stay); default: all.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np


def _even_subset(n: int, k: int | None) -> np.ndarray:
    if k is None or k >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="data root (MVTec AD layout)")
    ap.add_argument("--category", required=True)
    ap.add_argument("--out", required=True, help=".npz to write")
    ap.add_argument("--weights-out", required=True, help=".pt to write (ResNet-18 state_dict)")
    ap.add_argument("--weights", default="random",
                    help="'random' (mvgviz's seeded random ResNet-18, default) or a weights file mvgviz accepts")
    ap.add_argument("--max-train", type=int, default=None)
    ap.add_argument("--max-test", type=int, default=None)
    args = ap.parse_args(argv)

    import torch

    import mvgviz
    from mvgviz.backbones import build_backbone, get_spec, weights_tag
    from mvgviz.data import Preprocessing, load_category, load_split_arrays
    from mvgviz.models.padim import PaDiM

    pre = Preprocessing()
    cat = load_category(args.data, args.category)
    train, _ = load_split_arrays(cat.train, pre)
    test, test_masks = load_split_arrays(cat.test, pre)
    labels = cat.test.labels
    if (labels < 0).any():
        raise SystemExit("the test split has unlabelled images; the benchmark needs labels")
    test_labels = (labels == 1).astype(np.int64)

    tr = np.arange(len(train) if args.max_train is None else min(args.max_train, len(train)))
    te = _even_subset(len(test), args.max_test)
    train, test, test_masks, test_labels = train[tr], test[te], test_masks[te], test_labels[te]
    if test_labels.min() == test_labels.max():
        raise SystemExit("the test subset holds one class only; raise --max-test")

    net = build_backbone("resnet18", args.weights)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    Path(args.weights_out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, args.weights_out)

    spec = get_spec("resnet18")
    padim = PaDiM.for_backbone(spec)  # layer1..3, 100 of 448 channels, seed 0
    channels = padim.channel_subset(sum(l.channels for l in spec.layers[:3])).astype(np.int64)

    meta = {
        "data": str(Path(args.data).resolve()), "category": args.category,
        "train_files": [cat.train.paths[i].name for i in tr],
        "test_files": [f"{cat.test.defect_types[i]}/{cat.test.paths[i].name}" for i in te],
        "preprocessing": pre.tag(), "weights": weights_tag("resnet18", args.weights),
        "padim_channels": {"layers": list(padim.layers), "channels": padim.channels, "seed": padim.seed},
        "mvgviz_version": getattr(mvgviz, "__version__", None),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, train=train, test=test, test_masks=test_masks, test_labels=test_labels,
             mean=np.asarray(pre.mean, dtype=np.float64), std=np.asarray(pre.std, dtype=np.float64),
             padim_channels=channels, meta=np.asarray(json.dumps(meta)))
    print(json.dumps({"out": os.path.abspath(args.out), "weights_out": os.path.abspath(args.weights_out),
                      "n_train": int(len(train)), "n_test": int(len(test)),
                      "n_test_defective": int(test_labels.sum()), "weights": meta["weights"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
