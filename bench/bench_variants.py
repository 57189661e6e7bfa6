"""Which component-subset rules beat the full model? ``mvgviz report --variants`` per data set.

    python bench/bench_variants.py --data demo_data --category brick \
        --data ../shared/data --category magnetic_tile --out bench/results/variants.json

Prints one Markdown table per data set (rule, components kept, the four metrics and their change
against the full model) and writes the raw rows as JSON. Accuracy only: no timing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

METRICS = ("image_auroc", "pixel_auroc", "pixel_aupr", "aupro")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", action="append", required=True)
    ap.add_argument("--category", action="append", required=True)
    ap.add_argument("--cache", default=None, help="cache folder (default: a temporary one)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "variants.json"))
    args = ap.parse_args()
    if len(args.data) != len(args.category):
        ap.error("give one --category per --data")
    cache = args.cache or tempfile.mkdtemp(prefix="mvgviz-bench-variants-")
    results = {}
    for data, cat in zip(args.data, args.category):
        out = subprocess.run([sys.executable, "-m", "mvgviz.cli", "report", "--data", data, "--category", cat,
                              "--cache", cache, "--json", "--quiet", "--variants"],
                             check=True, capture_output=True, text=True).stdout
        rep = json.loads(out)
        results[cat] = {lay["name"]: lay["variants"] for lay in rep["layers"]}
        print(f"\n### {cat} ({rep['backbone']})\n")
        print("| layer | rule | kept | image AUROC | pixel AUROC | AUPR | AUPRO |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for layer, rows in results[cat].items():
            full = rows[0]
            for r in rows:
                cells = []
                for k in METRICS:
                    if r[k] is None:
                        cells.append("n/a")
                    elif r is full:
                        cells.append(f"{r[k]:.4f}")
                    else:
                        cells.append(f"{r[k]:.4f} ({r[k] - full[k]:+.4f})")
                name = r["rule"] + (" (oracle)" if r["oracle"] else "")
                print(f"| {layer} | {name} | {r['n_components']} | " + " | ".join(cells) + " |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
