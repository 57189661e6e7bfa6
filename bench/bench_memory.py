"""Benchmark: peak resident memory and wall time of a cold ``mvgviz report`` against the number of
images, the cache's size on disk per image, and the effect of float16 storage on every metric.

    python bench/bench_memory.py --sizes 100,400,1600 --threads 2 \
        [--baseline /path/to/older/checkout] [--real ../shared/data:magnetic_tile] \
        --out bench/results/memory.json

For each size n a demo category (``brick``) is generated with n/2 train images and n/2 test images
(a quarter of them good, the rest spread over its 4 defect types), then ``mvgviz report --json`` runs
cold (empty cache) in a fresh process; its peak RSS is read from ``getrusage(RUSAGE_CHILDREN)`` of a
wrapper process that runs nothing else. ``--baseline`` runs the same command from another checkout
(e.g. the previous release) in the same run, as the peer. The float16 rows repeat the cold report
with ``--storage float16`` and give the largest metric change over all layers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import machine, pin_threads  # bench/_common.py (the script's folder is on sys.path)

REPO = Path(__file__).resolve().parents[1]
METRICS = ("image_auroc", "pixel_auroc", "pixel_aupr", "aupro")

_WRAPPER = """
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
p = subprocess.run(sys.argv[2:], cwd=sys.argv[1], capture_output=True, text=True)
wall = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
print(json.dumps({"rc": p.returncode, "wall_s": wall, "peak_rss_mb": rss / 1024, "stdout": p.stdout,
                  "stderr": p.stderr[-2000:]}))
"""


def cold_report(checkout: Path, data: Path, category: str, cache: Path, env: dict, extra=()) -> dict:
    """One cold ``mvgviz report --json`` from ``checkout`` in a fresh process: wall, peak RSS, report."""
    shutil.rmtree(cache, ignore_errors=True)
    cmd = [sys.executable, "-m", "mvgviz.cli", "report", "--data", str(data), "--category", category,
           "--cache", str(cache), "--device", "cpu", "--json", "--quiet", *extra]
    env = {**env, "PYTHONPATH": str(checkout)}
    out = subprocess.run([sys.executable, "-c", _WRAPPER, str(checkout), *cmd], env=env,
                         capture_output=True, text=True, check=True)
    res = json.loads(out.stdout)
    if res["rc"] != 0:
        raise RuntimeError(f"report failed ({checkout}): {res['stderr']}")
    res["report"] = json.loads(res.pop("stdout"))
    res["cache_bytes"] = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file())
    return res


def make_demo(root: Path, n: int) -> None:
    from mvgviz.demo import make_demo_dataset
    n_train, n_test = n // 2, n - n // 2
    n_good = n_test // 4
    n_per_defect = (n_test - n_good) // 4
    n_good = n_test - 4 * n_per_defect
    make_demo_dataset(root, categories=("brick",), n_train=n_train, n_test_good=n_good, n_per_defect=n_per_defect)


def metric_change(a: dict, b: dict) -> dict:
    """Largest |a - b| per metric over layers (None where a metric is undefined)."""
    out = {}
    for k in METRICS:
        diffs = [abs(x[k] - y[k]) for x, y in zip(a["layers"], b["layers"]) if x[k] is not None and y[k] is not None]
        out[k] = max(diffs) if diffs else None
    best = [x["components"] and max(x["components"], key=lambda c: (c["auroc"] or 0))["index"] for x in a["layers"]]
    best16 = [y["components"] and max(y["components"], key=lambda c: (c["auroc"] or 0))["index"] for y in b["layers"]]
    out["same_best_component"] = best == best16
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100,400,1600")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--baseline", default=None, help="another checkout to run in the same run (the peer)")
    ap.add_argument("--real", action="append", default=[], metavar="ROOT:CATEGORY",
                    help="also measure a real category (float32 vs float16, time vs baseline)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "memory.json"))
    args = ap.parse_args()
    pin_threads(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    env.setdefault("NUMBA_CACHE_DIR", str(Path(tempfile.gettempdir()) / "mvgviz-bench-numba"))
    work = Path(tempfile.mkdtemp(prefix="mvgviz-bench-memory-"))
    checkouts = {"mvgviz": REPO, **({"baseline": Path(args.baseline).resolve()} if args.baseline else {})}
    rows = []
    sets = [(f"demo brick n={n}", work / f"demo{n}", "brick", n) for n in map(int, args.sizes.split(","))]
    for spec in args.real:
        root, cat = spec.rsplit(":", 1)
        sets.append((f"{cat}", Path(root).resolve(), cat, None))
    for i, (label, root, cat, n) in enumerate(sets):
        if n is not None:
            make_demo(root, n)
        if i == 0:  # warm-up: the first run of a checkout compiles its numba kernel and fills the page cache
            for checkout in checkouts.values():
                cold_report(checkout, root, cat, work / "cache", env)
        n_images = sum(1 for p in (root / cat).glob("t*/*/*") if p.suffix == ".png")
        row = {"data": label, "n_images": n_images}
        for name, checkout in checkouts.items():
            r = cold_report(checkout, root, cat, work / "cache", env)
            row[name] = {k: r[k] for k in ("wall_s", "peak_rss_mb", "cache_bytes")}
            row[name]["cache_mb_per_image"] = r["cache_bytes"] / 1e6 / n_images
            if name == "mvgviz":
                report32 = r["report"]
            print(label, name, json.dumps(row[name]), flush=True)
        r16 = cold_report(REPO, root, cat, work / "cache", env, extra=("--storage", "float16"))
        row["mvgviz_float16"] = {k: r16[k] for k in ("wall_s", "peak_rss_mb", "cache_bytes")}
        row["mvgviz_float16"]["cache_mb_per_image"] = r16["cache_bytes"] / 1e6 / n_images
        row["float16_metric_change"] = metric_change(report32, r16["report"])
        print(label, "float16", json.dumps(row["mvgviz_float16"]), json.dumps(row["float16_metric_change"]), flush=True)
        rows.append(row)
    demo = [r for r in rows if r["data"].startswith("demo")]
    summary = {}
    if len(demo) >= 2:
        summary["peak_rss_ratio_largest_vs_smallest"] = demo[-1]["mvgviz"]["peak_rss_mb"] / demo[0]["mvgviz"]["peak_rss_mb"]
        if "baseline" in checkouts:
            summary["baseline_peak_rss_ratio_largest_vs_smallest"] = (
                demo[-1]["baseline"]["peak_rss_mb"] / demo[0]["baseline"]["peak_rss_mb"])
    result = {"machine": machine(), "threads": args.threads, "date": time.strftime("%Y-%m-%d %H:%M"),
              "rows": rows, "summary": summary}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(summary))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
