"""Benchmark: cold and warm ``mvgviz report``, split by step, against the backbone alone and
against the naive ranking baseline (a loop of ``sklearn.metrics.roc_auc_score``).

    python bench/bench_report.py --data demo_data --category brick \
        --data ../shared/data --category magnetic_tile --threads 2 --out bench/results/report.json

Each (data, category) pair is measured in the same run, with torch/BLAS threads pinned
(``--threads``; oversubscribed threads were seen to run 2-90x slower on 2-core machines):

- backbone alone: the forward pass over every image of both splits (all layers), after
  decoding, batch 16, warm process -- twice: the network as published (``optimize=False``; the
  reference for "cold report within 2x of the backbone") and as mvgviz runs it (batch norms
  folded, channels-last; ``mvgviz.features.prepare_for_inference``).
- backbone script: a fresh process that imports torch, decodes the same images and runs the
  published network over them -- what a minimal script needs, start-up included.
- cold report: ``mvgviz report --json`` in a fresh process on an empty cache; its step
  times come from ``--timings`` ("process" = the rest: interpreter start, imports, JSON).
  Run once before with an empty numba cache too (``NUMBA_CACHE_DIR``): the first run on a
  machine also compiles the ranking kernel.
- warm report: the same command again (cache filled), end-to-end process wall time.
- ranking baseline: ``roc_auc_score`` on the upsampled y2 map of ``--sample`` components per
  layer, extrapolated to all components; the AUROCs of those components are compared with
  the cached single-component AUROCs, and the top-ranked component with sklearn's on the
  sampled set.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import machine, pin_threads  # bench/_common.py (the script's folder is on sys.path)


def run_cli(args: list[str], env: dict) -> tuple[float, dict]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "mvgviz.cli", *args], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"mvgviz {' '.join(args)} failed:\n{out.stderr}")
    return wall, json.loads(out.stdout)


def backbone_alone(root: str, category: str, device: str, threads: int, optimize: bool) -> tuple[float, int]:
    import numpy as np
    import torch

    from mvgviz.backbones import get_spec
    from mvgviz.data import Preprocessing, load_category, load_split_arrays, to_network_input
    from mvgviz.features import FeatureExtractor
    torch.set_num_threads(threads)
    pre = Preprocessing()
    cat = load_category(root, category)
    images = np.concatenate([load_split_arrays(cat.split(s), pre)[0] for s in ("train", "test")])
    fx = FeatureExtractor("efficientnet_lite0", get_spec("efficientnet_lite0").layers, optimize=optimize).to(device)
    fx(to_network_input(images[:2], pre, torch.device(device)))  # warm-up
    t0 = time.perf_counter()
    for i in range(0, len(images), 16):
        fx(to_network_input(images[i:i + 16], pre, torch.device(device)))
    return time.perf_counter() - t0, len(images)


def backbone_script(root: str, category: str, device: str, threads: int) -> float:
    """Wall time of a fresh process that decodes the images and runs the backbone over them."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--_backbone-process", root, category, device, str(threads)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return time.perf_counter() - t0


def _backbone_process(root: str, category: str, device: str, threads: int) -> None:
    import torch

    from mvgviz.backbones import get_spec
    from mvgviz.data import Preprocessing, load_category, load_split_arrays, to_network_input
    from mvgviz.features import FeatureExtractor
    torch.set_num_threads(threads)
    pre, dev = Preprocessing(), torch.device(device)
    cat = load_category(root, category)
    fx = FeatureExtractor("efficientnet_lite0", get_spec("efficientnet_lite0").layers, optimize=False).to(dev)
    for s in ("train", "test"):
        images = load_split_arrays(cat.split(s), pre)[0]
        for i in range(0, len(images), 16):
            fx(to_network_input(images[i:i + 16], pre, dev))


def ranking_baseline(root: str, category: str, cache: str, sample: int, threads: int) -> dict:
    import numpy as np
    import torch
    from sklearn.metrics import roc_auc_score

    from mvgviz.pipeline import fit
    torch.set_num_threads(threads)
    model = fit(root, category, cache=cache, device="cpu")
    masks = np.asarray(model.data.masks("test")).ravel()
    out = {}
    for lm in model.layers.values():
        rng = np.random.default_rng(0)
        comps = sorted(set(rng.choice(lm.channels, size=min(sample, lm.channels), replace=False).tolist())
                       | {int(lm.ranking()[0])})
        t0 = time.perf_counter()
        ref = []
        for c in comps:
            y2 = lm.y2("test", None, [c])[:, 0]  # (N, S, S) upsampled with OpenCV
            ref.append(roc_auc_score(masks, y2.ravel()))
        per = (time.perf_counter() - t0) / len(comps)
        ours = lm.component_auroc[comps]
        out[lm.name] = {"components": lm.channels, "sampled": len(comps),
                        "sklearn_s_per_component": per, "sklearn_extrapolated_s": per * lm.channels,
                        "max_abs_diff": float(np.max(np.abs(np.asarray(ref) - ours))),
                        "same_best_in_sample": int(np.array(comps)[np.argmax(ref)]) == int(lm.ranking()[0])}
    return out


def bench(root: str, category: str, args) -> dict:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    with tempfile.TemporaryDirectory(prefix="mvgviz-bench-") as cache:
        tfile = Path(cache) / "timings.json"
        common = ["report", "--data", root, "--category", category, "--cache", cache, "--device", args.device,
                  "--json", "--quiet"]
        with tempfile.TemporaryDirectory(prefix="mvgviz-bench-jit-") as jit, \
                tempfile.TemporaryDirectory(prefix="mvgviz-bench-cache-") as cache0:
            # the very first run on a machine also compiles the numba kernels (empty numba cache)
            first, _ = run_cli([*common[:6], cache0, *common[7:]], {**env, "NUMBA_CACHE_DIR": jit})
        cold, rep = run_cli([*common, "--timings", str(tfile)], env)
        steps = json.loads(tfile.read_text())
        warm_runs = [run_cli(common, env)[0] for _ in range(3)]
        base = ranking_baseline(root, category, cache, args.sample, args.threads)
    bb, n_images = backbone_alone(root, category, args.device, args.threads, optimize=False)
    bb_fast, _ = backbone_alone(root, category, args.device, args.threads, optimize=True)
    bb_script = min(backbone_script(root, category, args.device, args.threads) for _ in range(2))
    grouped: dict[str, float] = {}
    for k, v in steps.items():
        if k.startswith("layer "):  # a layer's bar spans its sub-steps, which are timed on their own
            continue
        grouped[k.split(" ")[0]] = grouped.get(k.split(" ")[0], 0.0) + v
    grouped["process"] = cold - sum(grouped.values())
    ranking_s = grouped.get("ranking", 0.0)
    sk = sum(v["sklearn_extrapolated_s"] for v in base.values())
    return {"data": root, "category": category, "images": n_images, "cold_report_s": cold,
            "first_report_with_jit_s": first, "backbone_prepared_s": bb_fast,
            "cold_over_backbone_prepared": cold / bb_fast,
            "steps_s": grouped, "steps_detail_s": steps, "warm_report_s": min(warm_runs),
            "warm_report_runs_s": warm_runs, "backbone_alone_s": bb, "backbone_script_s": bb_script,
            "cold_over_backbone": cold / bb, "cold_over_backbone_script": cold / bb_script, "ranking_s": ranking_s, "sklearn_loop_s": sk,
            "ranking_speedup": sk / ranking_s if ranking_s else None, "baseline": base,
            "layers": [{k: l[k] for k in ("name", "pixel_auroc", "aupro")} for l in rep["layers"]]}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_backbone-process":
        _backbone_process(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", action="append", required=True)
    p.add_argument("--category", action="append", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--sample", type=int, default=3, help="components per layer timed with sklearn")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    if len(args.data) != len(args.category):
        p.error("give one --category per --data")
    pin_threads(args.threads)
    results = {"machine": machine(), "threads": args.threads, "device": args.device,
               "date": time.strftime("%Y-%m-%d %H:%M"), "runs": []}
    for root, cat in zip(args.data, args.category):
        r = bench(root, cat, args)
        results["runs"].append(r)
        print(f"{cat}: {r['images']} images  cold {r['cold_report_s']:.1f}s (first run with numba compile "
              f"{r['first_report_with_jit_s']:.1f}s; published backbone forward alone "
              f"{r['backbone_alone_s']:.1f}s, x{r['cold_over_backbone']:.2f}; mvgviz's prepared forward "
              f"{r['backbone_prepared_s']:.1f}s, x{r['cold_over_backbone_prepared']:.2f}; backbone script "
              f"{r['backbone_script_s']:.1f}s, x{r['cold_over_backbone_script']:.2f})  warm {r['warm_report_s']:.2f}s  ranking {r['ranking_s']:.2f}s vs "
              f"sklearn loop {r['sklearn_loop_s']:.1f}s (x{r['ranking_speedup']:.0f})", flush=True)
        print("   steps: " + ", ".join(f"{k} {v:.2f}s" for k, v in r["steps_s"].items()), flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1))
    print(json.dumps(results["machine"]))


if __name__ == "__main__":
    main()
