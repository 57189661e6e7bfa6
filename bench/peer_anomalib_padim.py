"""Peer benchmark: anomalib's PaDiM (its torch model) on inputs exported by ``bench/export_inputs.py``.

    /work/venv-anomalib/bin/python bench/peer_anomalib_padim.py INPUTS.npz WEIGHTS.pt \
        [--batch-size 16] [--threads 1] [--seed 0] [--same-channels] [--out RESULT.json] [--maps-out MAPS.npz]

Runs in anomalib's own environment (``bench/peer_env.sh``), never imports mvgviz. Builds
``anomalib.models.image.padim.torch_model.PadimModel`` (backbone ``resnet18``, layers layer1..3,
anomalib's default ``n_features`` = 100, ``pre_trained=False``: nothing is downloaded), loads the given
torchvision-format ResNet-18 ``state_dict`` into its timm feature extractor (no missing keys; the only
keys left over are ``layer4.*`` and ``fc.*``, which the extractor does not hold) and checks, on the
first training batch, that its three feature maps equal torchvision's ``resnet18`` with the same
weights (max |difference| <= 1e-5 * max |feature|). That check is also the warm-up: the timed passes
start on a process that has run the network once.

Inputs are normalised as mvgviz does: ``(x/255 - mean)/std`` in float32, mean/std from the .npz.

Timed (``time.perf_counter``, single process, ``torch.set_num_threads(--threads)``):

* ``fit_seconds``: for each train batch, normalise and ``model(x)`` in training mode (features,
  nearest-upsampled concatenation, channel subset; the embeddings go to ``model.memory_bank``), then
  ``model.fit()`` (``torch.vstack`` of the bank and ``model.gaussian.fit``: per-position covariance
  ``+ 0.01 I``, inverse). This is exactly what anomalib's Lightning module runs: ``training_step`` ->
  ``self.model(batch.image)``, then ``fit()`` -> ``self.model.fit()`` at the epoch's end.
* ``fit_backbone_seconds`` / ``predict_backbone_seconds``: the feature extractor's share of them
  (forward hooks), and ``method_fit_seconds`` / ``method_predict_seconds`` the rest: embedding,
  Gaussians, maps, blur, scores (the part that compares with a method run on cached features).
* ``predict_seconds``: for each test batch, normalise and ``model(x)`` in eval mode (Mahalanobis
  distance maps, bilinear upsampling to 224x224, Gaussian blur sigma 4, image score = max of the map),
  the maps copied into one (M, 224, 224) array.

Not timed: imports, reading the .npz, building the model and loading weights, the feature check, the
AUROCs (sklearn ``roc_auc_score``: image scores against ``test_labels``; every pixel of the 224x224 maps
against ``test_masks``). ``peak_memory_mb`` is the process's ``ru_maxrss`` at the end (MiB), imports
included (``import_peak_memory_mb``: the same right after the imports; torch alone is ~0.5 GB, and
importing anomalib's models pulls Lightning and every model module).

``--same-channels`` replaces anomalib's channel subset (``torch.randperm(448)[:100]`` under
``torch.manual_seed(--seed)``) with mvgviz's (``padim_channels`` in the .npz), so that accuracy differences
come from the rest of the method only. Prints one JSON object (and writes it to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import warnings

LAYERS = ["layer1", "layer2", "layer3"]


def load_weights(extractor, path: str) -> dict:
    """Load a torchvision ResNet-18 state_dict into anomalib's timm extractor; strict on what it uses."""
    import torch
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    net = extractor.feature_extractor  # timm FeatureListNet: conv1, bn1, maxpool, layer1..3 (torchvision names)
    result = net.load_state_dict(state, strict=False)
    unused_ok = ("layer4.", "fc.")
    bad_unexpected = [k for k in result.unexpected_keys if not k.startswith(unused_ok)]
    if result.missing_keys or bad_unexpected:
        raise SystemExit(f"weights {path!r} do not fit anomalib's resnet18 extractor: missing "
                         f"{result.missing_keys[:5]} ({len(result.missing_keys)}), unexpected "
                         f"{bad_unexpected[:5]} ({len(bad_unexpected)})")
    return {"loaded": len(net.state_dict()), "missing": len(result.missing_keys),
            "unused": sorted({k.split(".")[0] for k in result.unexpected_keys})}


def check_features(extractor, weights: str, x) -> float:
    """Max |anomalib features - torchvision features| / max |torchvision features| over layer1..3."""
    import torch
    import torchvision
    tv = torchvision.models.resnet18(weights=None)
    tv.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
    tv.eval()
    with torch.no_grad():
        h = tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))
        ref = {}
        for name in LAYERS:
            h = getattr(tv, name)(h)
            ref[name] = h
        got = extractor(x)
    worst = 0.0
    for name in LAYERS:
        a, b = got[name], ref[name]
        if a.shape != b.shape:
            raise SystemExit(f"feature check: {name} has shape {tuple(a.shape)}, torchvision {tuple(b.shape)}")
        rel = float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))
        worst = max(worst, rel)
    if not worst <= 1e-5:
        raise SystemExit(f"feature check failed: max relative difference {worst:.3g} > 1e-5")
    return worst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("inputs", help=".npz written by bench/export_inputs.py")
    ap.add_argument("weights", help="torchvision-format ResNet-18 state_dict (.pt)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    ap.add_argument("--seed", type=int, default=0, help="torch.manual_seed before building the model "
                    "(anomalib draws its channel subset with torch.randperm)")
    ap.add_argument("--same-channels", action="store_true",
                    help="use mvgviz's channel subset (padim_channels in the .npz) instead of anomalib's")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    ap.add_argument("--maps-out", default=None,
                    help="also save the test maps (M, 224, 224) float32 and image scores (M,) to this .npz")
    args = ap.parse_args(argv)

    warnings.filterwarnings("ignore")  # timm/anomalib deprecation notices on import
    import numpy as np
    import torch
    from sklearn.metrics import roc_auc_score

    import anomalib
    from anomalib.models.image.padim.torch_model import PadimModel

    import_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # after the imports
    torch.set_num_threads(args.threads)
    data = np.load(args.inputs)
    train, test = data["train"], data["test"]
    masks, labels = data["test_masks"], data["test_labels"]
    mean = torch.tensor(tuple(float(v) for v in data["mean"])).view(1, 3, 1, 1) if "mean" in data else \
        torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
    std = torch.tensor(tuple(float(v) for v in data["std"])).view(1, 3, 1, 1) if "std" in data else \
        torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)

    def net_input(images: np.ndarray) -> torch.Tensor:  # mvgviz.data.to_network_input, on the CPU
        x = torch.from_numpy(np.array(images, dtype=np.uint8)).permute(0, 3, 1, 2).float() / 255.0
        return (x - mean) / std

    torch.manual_seed(args.seed)
    model = PadimModel(backbone="resnet18", layers=list(LAYERS), pre_trained=False)
    load = load_weights(model.feature_extractor, args.weights)
    if args.same_channels:
        idx = torch.as_tensor(data["padim_channels"], dtype=model.idx.dtype)
        if idx.numel() != model.n_features:
            raise SystemExit(f"padim_channels has {idx.numel()} channels, anomalib's n_features is {model.n_features}")
        model.idx = idx
    feature_diff = check_features(model.feature_extractor, args.weights, net_input(train[:args.batch_size]))

    bs = args.batch_size
    # the backbone's share of each timed step: hooks around the feature extractor (the code path is
    # unchanged); the rest of fit and predict is the method's own (embedding, Gaussians, maps)
    backbone = {"t": 0.0, "start": 0.0}
    model.feature_extractor.register_forward_pre_hook(lambda *_: backbone.__setitem__("start", time.perf_counter()))
    model.feature_extractor.register_forward_hook(
        lambda *_: backbone.__setitem__("t", backbone["t"] + time.perf_counter() - backbone["start"]))
    # fit: what Padim.training_step (model(batch.image)) and Padim.fit (model.fit()) run
    model.train()
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(train), bs):
            model(net_input(train[i:i + bs]))
        t_gauss = time.perf_counter()
        model.fit()
    fit_seconds = time.perf_counter() - t0
    gaussian_seconds = time.perf_counter() - t_gauss
    fit_backbone, backbone["t"] = backbone["t"], 0.0

    # predict: what Padim.validation_step / predict runs (model(batch.image) in eval mode)
    model.eval()
    maps = np.empty((len(test), *test.shape[1:3]), dtype=np.float32)
    scores = np.empty(len(test), dtype=np.float64)
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(test), bs):
            out = model(net_input(test[i:i + bs]))
            maps[i:i + bs] = out.anomaly_map[:, 0].numpy()
            scores[i:i + bs] = out.pred_score.reshape(-1).double().numpy()
    predict_seconds = time.perf_counter() - t0
    predict_backbone = backbone["t"]

    image_auroc = float(roc_auc_score(labels, scores))
    pixel_auroc = float(roc_auc_score(masks.reshape(-1), maps.reshape(-1))) if masks.any() else None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    result = {
        "tool": "anomalib", "version": anomalib.__version__,
        "fit_seconds": round(fit_seconds, 4), "predict_seconds": round(predict_seconds, 4),
        "peak_memory_mb": round(peak, 1), "image_auroc": image_auroc, "pixel_auroc": pixel_auroc,
        "n_train": int(len(train)), "n_test": int(len(test)), "n_features": int(model.n_features),
        # context (not part of the comparison's fixed keys)
        "fit_gaussian_seconds": round(gaussian_seconds, 4),  # the part of fit_seconds in model.fit()
        # the backbone's forward passes within fit and predict, and what is left: the method's own
        "fit_backbone_seconds": round(fit_backbone, 4), "predict_backbone_seconds": round(predict_backbone, 4),
        "method_fit_seconds": round(fit_seconds - fit_backbone, 4),
        "method_predict_seconds": round(predict_seconds - predict_backbone, 4),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "batch_size": bs,
        "channels": "mvgviz" if args.same_channels else f"anomalib randperm (seed {args.seed})",
        "import_peak_memory_mb": round(import_rss, 1), "feature_check_max_rel_diff": feature_diff, "weights_loaded": load,
        "code_path": "anomalib.models.image.padim.torch_model.PadimModel (forward + fit)",
    }
    if args.maps_out:
        np.savez(args.maps_out, maps=maps, scores=scores, channels=model.idx.numpy())
    text = json.dumps(result)
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
