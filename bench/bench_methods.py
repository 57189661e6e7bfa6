"""Every method of ``mvgviz compare`` on one category, and anomalib's PaDiM in the same run.

Part 1, the methods (each in a fresh process, so each peak RSS is its own):
the data and the backbone's feature pass are cached once (timed: ``features``); then each method
runs ``mvgviz compare --methods NAME --json`` on a hard-linked copy of that cache: accuracy (the
exact metrics), ``fit_seconds`` and ``predict_seconds`` on the cached features, peak RSS.

Part 2, PaDiM against anomalib's (``--peer-python``: the anomalib venv, ``bench/PEER.md``), on the
same pixels (``bench/export_inputs.py``), the same ResNet-18 weights and the same channel subset
(``--same-channels``), one thread each, alternating, ``--repeats`` times (medians reported):

- end to end: anomalib's ``fit_seconds + predict_seconds`` (backbone included) against mvgviz's
  backbone pass (both splits, feature cache write included) + PaDiM's fit + predict, from an empty
  cache (``mvgviz compare --methods padim --timings``); the process's total wall time is also kept
  (decoding PNGs, the train split's scoring for the explorer, the exact metrics: work anomalib's
  timed path does not do);
- the method alone: anomalib's time outside its feature extractor (forward hooks) against
  mvgviz's ``fit_seconds + predict_seconds`` on cached features.

    python bench/bench_methods.py --data ROOT --category CAT --backbone resnet18 --weights random \\
        --peer-python /work/venv-anomalib/bin/python [--threads 1] [--repeats 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import machine, pin_threads  # noqa: E402

METHODS = "mvg,mvg-sum,mvg-concat,padim,spade,gaussian-ad,opca"


def _env(threads: int) -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        env[var] = str(threads)
    env.setdefault("NUMBA_CACHE_DIR", str(Path(tempfile.gettempdir()) / "numba-bench"))
    return env


# runs the CLI and reports the process's lifetime peak RSS (MiB) on stderr's last line, as
# anomalib's script reports its own (resource.getrusage ru_maxrss): the same measure for both tools
_CLI_WITH_PEAK = (
    "import os, resource, sys\n"
    "from mvgviz.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "sys.stdout.flush()\n"
    "print('PEAK_RSS_MB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, file=sys.stderr, flush=True)\n"
    "os._exit(code)\n")  # as mvgviz.cli.run: no interpreter teardown


def _compare(args, cache: Path, methods: str, timings: Path | None = None) -> tuple[dict, float]:
    cmd = [sys.executable, "-c", _CLI_WITH_PEAK, "compare", "--data", args.data, "--category", args.category,
           "--backbone", args.backbone, "--methods", methods, "--cache", str(cache), "--device", "cpu",
           "--json", "--quiet"]
    if args.weights:
        cmd += ["--weights", args.weights]
    if timings:
        cmd += ["--timings", str(timings)]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=_env(args.threads), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode not in (0, 2):
        raise SystemExit(f"mvgviz compare failed:\n{out.stderr[-3000:]}")
    res = json.loads(out.stdout)
    peak = [l for l in out.stderr.splitlines() if l.startswith("PEAK_RSS_MB")]
    res["process_peak_rss_mb"] = round(float(peak[-1].split()[1]), 1) if peak else None
    return res, wall


def methods_part(args, work: Path) -> dict:
    shared = work / "cache-shared"
    from mvgviz.backbones import get_spec
    # data + feature pass; the warm-up's own entry (the paper's Gaussian on the first layer) is not
    # one that the methods below read (mvg's default layer is the stride-16 one)
    first, wall = _compare(args, shared, f"mvg:layer={get_spec(args.backbone).layers[0].name}")
    rows = []
    for name in args.methods.split(","):
        cache = work / f"cache-{name}"
        cache.mkdir()  # the shared entries, hard-linked (an entry's files are never written again);
        subprocess.run(["cp", "-al", str(shared / "entries"), str(cache)], check=True)  # a fresh index
        res, w = _compare(args, cache, name)
        row = res["methods"][0]
        row["process_seconds"] = round(w, 2)
        rows.append(row)
        print(json.dumps({k: row.get(k) for k in ("label", "image_auroc", "pixel_auroc", "aupro", "fit_seconds",
                                                  "predict_seconds", "peak_memory_mb", "cached", "error")}),
              flush=True)
        shutil.rmtree(cache, ignore_errors=True)
    return {"feature_pass_seconds": first.get("feature_seconds"), "first_process_seconds": round(wall, 2),
            "methods": rows}


def peer_part(args, work: Path) -> dict:
    npz, weights = work / "inputs.npz", work / "resnet18.pt"
    subprocess.run([sys.executable, str(HERE / "export_inputs.py"), "--data", args.data, "--category",
                    args.category, "--out", str(npz), "--weights-out", str(weights), "--weights",
                    args.weights or "random"], env=_env(args.threads), check=True, capture_output=True)
    runs = []
    for r in range(args.repeats):
        peer = subprocess.run([args.peer_python, str(HERE / "peer_anomalib_padim.py"), str(npz), str(weights),
                               "--threads", str(args.threads), "--same-channels"],
                              env=_env(args.threads), capture_output=True, text=True)
        if peer.returncode:
            raise SystemExit(f"anomalib run failed:\n{peer.stderr[-3000:]}")
        a = json.loads(peer.stdout.strip().splitlines()[-1])
        cache = work / f"cache-e2e-{r}"
        timings = work / f"timings-{r}.json"
        res, wall = _compare(args, cache, "padim", timings)
        m = res["methods"][0]
        t = json.loads(timings.read_text())
        mv_e2e = t.get("backbone", 0.0) + m["fit_seconds"] + m["predict_seconds"]
        runs.append({
            "anomalib": a, "mvgviz": {**m, "backbone_seconds": round(t.get("backbone", 0.0), 3),
                                      "process_seconds": round(wall, 2), "timings": t,
                                      "process_peak_rss_mb": res["process_peak_rss_mb"]},
            "end_to_end": {"anomalib": round(a["fit_seconds"] + a["predict_seconds"], 3), "mvgviz": round(mv_e2e, 3)},
            "method_only": {"anomalib": round(a["method_fit_seconds"] + a["method_predict_seconds"], 3),
                            "mvgviz": round(m["fit_seconds"] + m["predict_seconds"], 3)}})
        shutil.rmtree(cache, ignore_errors=True)
        print(json.dumps({"repeat": r, "end_to_end": runs[-1]["end_to_end"], "method_only": runs[-1]["method_only"],
                          "image_auroc": [a["image_auroc"], m["image_auroc"]],
                          "pixel_auroc": [a["pixel_auroc"], m["pixel_auroc"]]}), flush=True)

    def med(part, tool):
        return round(statistics.median(r[part][tool] for r in runs), 3)

    summary = {part: {tool: med(part, tool) for tool in ("anomalib", "mvgviz")} for part in ("end_to_end", "method_only")}
    for part in summary:
        summary[part]["speedup"] = round(summary[part]["anomalib"] / summary[part]["mvgviz"], 2)
    summary["accuracy"] = {"anomalib": {k: runs[0]["anomalib"][k] for k in ("image_auroc", "pixel_auroc")},
                           "mvgviz": {k: runs[0]["mvgviz"][k] for k in ("image_auroc", "pixel_auroc", "pixel_aupr",
                                                                        "aupro")}}
    # the same measure for both: each process's lifetime peak RSS (imports, backbone and all), medians;
    # and anomalib's after its imports alone (torch + Lightning), for context
    summary["process_peak_rss_mb"] = {
        "anomalib": statistics.median(r["anomalib"]["peak_memory_mb"] for r in runs),
        "mvgviz": statistics.median(r["mvgviz"]["process_peak_rss_mb"] for r in runs),
        "anomalib_after_imports": statistics.median(r["anomalib"]["import_peak_memory_mb"] for r in runs)}
    return {"summary": summary, "runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--category", required=True)
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--weights", default="random")
    ap.add_argument("--methods", default=METHODS)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peer-python", default=None, help="python of the anomalib venv (part 2; skipped without)")
    ap.add_argument("--skip-methods", action="store_true", help="part 2 only")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    pin_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="mvgviz-bench-methods-"))
    try:
        out = {"machine": machine(), "data": args.data, "category": args.category, "backbone": args.backbone,
               "weights": args.weights, "threads": args.threads}
        if not args.skip_methods:
            out["methods"] = methods_part(args, work)
        if args.peer_python and args.backbone == "resnet18":
            out["padim_vs_anomalib"] = peer_part(args, work)
            print(json.dumps(out["padim_vs_anomalib"]["summary"], indent=1))
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
