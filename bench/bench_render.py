"""Benchmark: interactive re-render latency of a component grid, and publication export.

    python bench/bench_render.py [--data demo_data] [--cache DIR] [--threads 2] [--changes 100]
                                 [--rows 4] [--cols 8] [--out bench/results/render.json]

Uses the demo data set (written into ``--data`` by ``mvgviz.demo.make_demo_dataset`` if
absent; category brick, default counts) fitted with efficientnet_lite0 into ``--cache``
(all four layers). Threads are pinned before numpy/torch/OpenCV are imported
(``OMP_NUM_THREADS`` & co., ``torch.set_num_threads``, ``cv2.setNumThreads``).

Interactive path: a ``rows`` x ``cols`` grid (test split, defect images, M2 column,
overlay, outlines) is re-rendered with :func:`mvgviz.render.grid_data` +
:func:`mvgviz.render.render_raster` after each of ``--changes`` changes, cycling through

- ``component``: one column's component replaced by another (random) component,
- ``image``: one row's image replaced by another test image,
- ``scale``: per-component <-> cross-component,
- ``layer``: the next of the four layers (columns become its best components).

Each layer is rendered once before timing (first touch of its memory maps); the cache
files are then in the OS page cache, as they are in a running viewer. p50/p95/max per
change kind and overall (milliseconds) are printed as JSON on stdout, with the machine.

Publication path, timed separately: :func:`mvgviz.render.render_figure` and
:func:`mvgviz.export.save_figure` (PNG at 200 dpi) of the same grid, the whole
:func:`mvgviz.export.export_figure` (data, figure, PNG, manifest), and PDF and SVG once.

Target: p95 < 300 ms for the interactive path on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from _common import machine, pin_threads  # bench/_common.py (the script's folder is on sys.path)

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(REPO / "demo_data"), help="demo data root (written if absent)")
    p.add_argument("--cache", default=None, help="cache folder (default: $MVGVIZ_CACHE or the repository's cache/)")
    p.add_argument("--category", default="brick")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--changes", type=int, default=100)
    p.add_argument("--rows", type=int, default=4)
    p.add_argument("--cols", type=int, default=8)
    p.add_argument("--exports", type=int, default=3, help="repetitions of the PNG export")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="also write the JSON here")
    p.add_argument("--no-app", action="store_true", help="skip the Streamlit rerun timing (AppTest)")
    return p.parse_args(argv)


def summary(ms: list[float]) -> dict:
    import numpy as np
    a = np.asarray(ms)
    return {"n": int(a.size), "p50_ms": round(float(np.percentile(a, 50)), 2),
            "p95_ms": round(float(np.percentile(a, 95)), 2), "max_ms": round(float(a.max()), 2)}


def main(argv=None) -> int:
    args = parse_args(argv)
    pin_threads(args.threads)

    import json

    import cv2
    import numpy as np
    import torch
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)

    from mvgviz.demo import make_demo_dataset
    from mvgviz.pipeline import fit
    from mvgviz.render import GridSpec, grid_data, render_figure, render_raster
    from mvgviz.selection import parse_images

    t0 = time.perf_counter()
    make_demo_dataset(args.data, categories=(args.category,))
    model = fit(args.data, args.category, cache=args.cache, device="cpu")
    setup_s = time.perf_counter() - t0
    layers = list(model.layers)
    types = model.data.defect_types("test")
    n_test = len(types)
    rng = np.random.default_rng(args.seed)
    images = list(parse_images(f"random:{args.rows}", n_test, defect_types=types, defect="any", seed=args.seed))
    if len(images) < args.rows:
        raise SystemExit(f"only {len(images)} defect images; lower --rows")

    def best(layer: str) -> list[int]:
        return [int(c) for c in model.layer(layer).ranking()[:args.cols]]

    state = {"layer": layers[0], "images": images, "components": best(layers[0]), "scale": "per-component"}

    def spec() -> GridSpec:
        return GridSpec(layer=state["layer"], split="test", images=tuple(state["images"]),
                        components=tuple(state["components"]), scale=state["scale"])

    def render() -> np.ndarray:
        return render_raster(grid_data(model, spec()))

    for layer in layers:  # warm-up: first touch of each layer's memory maps, LUT, fonts
        state["layer"], state["components"] = layer, best(layer)
        render()
    state["layer"], state["components"] = layers[0], best(layers[0])

    kinds = ("component", "image", "scale", "layer")
    times: dict[str, list[float]] = {k: [] for k in kinds}
    shape = None
    for step in range(args.changes):
        kind = kinds[step % len(kinds)]
        if kind == "component":
            c = model.layer(state["layer"]).channels
            j = int(rng.integers(len(state["components"])))
            choices = np.setdiff1d(np.arange(c), state["components"])
            state["components"][j] = int(rng.choice(choices))
        elif kind == "image":
            i = int(rng.integers(len(state["images"])))
            choices = np.setdiff1d(np.arange(n_test), state["images"])
            state["images"][i] = int(rng.choice(choices))
        elif kind == "scale":
            state["scale"] = "cross-component" if state["scale"] == "per-component" else "per-component"
        else:
            state["layer"] = layers[(layers.index(state["layer"]) + 1) % len(layers)]
            state["components"] = best(state["layer"])
        t = time.perf_counter()
        out = render()
        times[kind].append((time.perf_counter() - t) * 1e3)
        shape = out.shape

    # split of one render: data vs raster
    gd, rr = [], []
    for _ in range(20):
        t = time.perf_counter()
        d = grid_data(model, spec())
        t1 = time.perf_counter()
        render_raster(d)
        gd.append((t1 - t) * 1e3)
        rr.append((time.perf_counter() - t1) * 1e3)

    import tempfile

    from mvgviz.export import export_figure, save_figure
    export: dict[str, list[float]] = {"render_figure": [], "save_png_200dpi": [], "export_figure_png": []}
    other: dict[str, float] = {}
    d = grid_data(model, spec())
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(max(args.exports, 1)):
            t = time.perf_counter()
            fig = render_figure(d)
            t1 = time.perf_counter()
            save_figure(fig, Path(tmp) / "grid.png", "png", dpi=200)  # what export_figure writes
            export["render_figure"].append((t1 - t) * 1e3)
            export["save_png_200dpi"].append((time.perf_counter() - t1) * 1e3)
            t = time.perf_counter()
            export_figure(model, spec(), Path(tmp) / "full.png")     # + grid_data and the manifest
            export["export_figure_png"].append((time.perf_counter() - t) * 1e3)
        png_shape = cv2.imread(str(Path(tmp) / "grid.png")).shape
        other["png_bytes"] = (Path(tmp) / "grid.png").stat().st_size
        for fmt in ("pdf", "svg"):
            t = time.perf_counter()
            save_figure(render_figure(d), Path(tmp) / f"grid.{fmt}", fmt)
            other[f"render_figure+save_{fmt}_ms"] = round((time.perf_counter() - t) * 1e3, 1)
            other[f"{fmt}_bytes"] = (Path(tmp) / f"grid.{fmt}").stat().st_size

    app_ms = {} if args.no_app else app_rerun_latency(args, model.root, layers)

    result = {
        "benchmark": "render",
        "grid": {"rows": args.rows, "cols": args.cols, "m2_column": True, "raster_shape": list(shape),
                 "category": args.category, "backbone": model.backbone, "layers": layers},
        "threads": args.threads,
        "interactive_ms": {**{k: summary(v) for k, v in times.items()},
                           "overall": summary([x for v in times.values() for x in v])},
        "interactive_split_ms": {"grid_data": summary(gd), "render_raster": summary(rr)},
        "target_p95_ms": 300,
        "publication_ms": {**{k: summary(v) for k, v in export.items()}, **other,
                           "png_shape": list(png_shape)},
        "app_rerun_ms": app_ms,
        "setup_s": round(setup_s, 2),
        "machine": machine(),
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return 0


def app_rerun_latency(args, data_root, layers) -> dict:
    """The whole Streamlit script rerun on the Grid page (AppTest): widgets, grid_data,
    render_raster, the resize to the displayed width and the JPEG encoding; the browser round trip
    is not counted (bench_browser.py counts it). AppTest reruns the whole script, also where the
    browser reruns only the Grid page's fragment."""
    import numpy as np
    from streamlit.testing.v1 import AppTest
    os.environ.update(MVGVIZ_DATA=str(data_root), MVGVIZ_AUTOFIT="0")
    if args.cache:
        os.environ["MVGVIZ_CACHE"] = str(args.cache)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    at.sidebar.radio(key="page").set_value("Grid").run()
    at.selectbox(key="grid_filter_test").set_value("all defects")  # as before issue 10 (the old default)
    at.text_input(key="grid_images").set_value(f"random:{args.rows}").run()
    if at.exception or at.error:
        raise RuntimeError(f"the app did not show the grid: {[e.value for e in at.exception]} "
                           f"{[e.value for e in at.error]}")
    rng = np.random.default_rng(args.seed)
    times: dict[str, list[float]] = {"component": [], "scale": [], "image": []}
    for i in range(30):
        kind = ("component", "scale", "image")[i % 3]
        if kind == "component":
            comps = rng.choice(24, size=args.cols, replace=False)  # 24 = channels of the smallest layer
            at.text_input(key="grid_components").set_value(",".join(map(str, comps)))
        elif kind == "scale":
            r = at.radio(key="grid_scale")
            r.set_value([o for o in r.options if o != r.value][0])
        else:
            at.number_input(key="grid_seed").set_value(int(rng.integers(0, 1000)))
        t = time.perf_counter()
        at.run()
        times[kind].append((time.perf_counter() - t) * 1e3)
        if at.exception:
            raise RuntimeError(at.exception[0].value)
    return {**{k: summary(v) for k, v in times.items()}, "overall": summary([x for v in times.values() for x in v])}


if __name__ == "__main__":
    sys.exit(main())
