"""The floor of the Grid latency benchmark: a minimal Streamlit page with one text box and one
``st.image`` in a fragment, showing pre-encoded grid pictures (no work on the server per change),
measured exactly like ``bench_browser.py`` (type, Enter, until the new picture is loaded and two
animation frames have passed).

    python bench/bench_browser_floor.py --data demo_data --cache DIR [--chromium /usr/bin/chromium]

``--data``/``--cache`` must hold demo ``brick`` fitted with efficientnet_lite0 (run bench_browser.py
first, or ``mvgviz fit``): the 50 pictures are real 4 x 8 grids drawn 920 px wide.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from bench_browser import IMG, time_changes  # bench/ (the script's folder is on sys.path)

LABEL = "Components"

APP = '''
import streamlit as st
st.set_page_config(layout="wide")

@st.cache_resource
def pics():
    import numpy as np
    from mvgviz.pipeline import load
    from mvgviz.render import GridSpec, encode_raster, grid_data, render_raster
    m = load({data!r}, "brick", cache={cache!r})
    rng = np.random.default_rng(0)
    out = []
    for i in range(50):
        comps = tuple(int(c) for c in rng.choice(112, 8, replace=False))
        d = grid_data(m, GridSpec(layer="_blocks[10]", split="test", images=(1, 5, 9, 13), components=comps))
        out.append(encode_raster(render_raster(d, width=920)))
    return out

@st.fragment
def grid():
    t = st.text_input("Components", "0")
    st.image(pics()[abs(hash(t)) % 50], width=912, output_format="JPEG")

grid()
'''


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--changes", type=int, default=20)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--port", type=int, default=8597)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright
    app = Path(tempfile.mkdtemp(prefix="mvgviz-floor-")) / "app.py"
    app.write_text(APP.format(data=str(Path(args.data).resolve()), cache=str(Path(args.cache).resolve())))
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(args.port),
                             "--server.headless", "true", "--browser.gatherUsageStats", "false",
                             "--server.fileWatcherType", "none"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{args.port}/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as pw:
            b = pw.chromium.launch(executable_path=args.chromium,
                                   args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = b.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{args.port}/")
            page.locator(IMG).first.wait_for(timeout=180_000)
            box = page.get_by_label(LABEL)
            times = time_changes(page, box, (f"{i},{i + 1},{i * 7}" for i in range(10**6)), warmup=3,
                                 changes=args.changes)
            b.close()
    finally:
        proc.terminate()
        proc.wait(10)
    print(json.dumps({"floor_p50_ms": round(float(np.percentile(times, 50)), 1),
                      "floor_p95_ms": round(float(np.percentile(times, 95)), 1), "n": len(times)}))


if __name__ == "__main__":
    main()
