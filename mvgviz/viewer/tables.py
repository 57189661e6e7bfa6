"""What the viewer's pages show, as plain data: tables (dicts of columns for
``st.dataframe``), notes, selections, messages, and the export files of a grid. No Streamlit.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Sequence

from ..conventions import ANY_DEFECT, GOOD, ParamError, is_defect

EXPORT_FORMATS = ("png", "pdf", "svg")
ALL_IMAGES = "all images"          # image filter: no filter (the default)
ALL_DEFECTS = "all defects"        # image filter: every image that is not good (the library's ANY_DEFECT)
GRID_DISPLAY_WIDTH = 920          # CSS px: the Grid page sends its picture at most this wide
GRID_LIMIT = 16                    # most images / components the Grid page draws
MIME = {"png": "image/png", "pdf": "application/pdf", "svg": "image/svg+xml",
        "json": "application/json"}


# ---------------------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------------------

# library parameter -> the viewer's control that sets it (the app speaks of its controls)
CONTROLS = {"images": "Images", "n_images": "Images", "defect": "Images of type", "defect_types": "Images of type",
            "seed": "Seed", "components": "Components", "scale": "Colour scale", "split": "Split",
            "layer": "Layer", "alpha": "Heatmap alpha", "show_m2": "M2 column", "show_image": "Show image",
            "outline": "GT outline", "image": "Image", "row": "Row", "col": "Col", "top": "Components listed",
            "root": "Data root", "category": "Category", "backbone": "Backbone", "weights": "Weights",
            "layers": "Layer", "n": "Components per row", "subset": "Model: M2 over"}


def error_message(e: BaseException) -> str:
    """One readable line for the page, for any exception: the message of our own errors (a
    :class:`~mvgviz.conventions.ParamError` names the viewer's control, see :data:`CONTROLS`),
    else type: message. Every message the app shows about an exception comes from here."""
    if isinstance(e, ParamError):
        return e.with_name(CONTROLS.get(e.param, f"`{e.param}`"))
    if isinstance(e, KeyError) and e.args:
        return str(e.args[0])
    if isinstance(e, (ValueError, OSError)) and str(e):
        return str(e)
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


_MD_SPECIAL = "\\`*_[]{}<>#|~$-"


def escape_markdown(text: str) -> str:
    """Show ``text`` literally in Streamlit markdown (error messages hold paths with ``_``,
    globs with ``*``, layer names with ``[ ]``, ranges and option names with ``-``/``--``, which
    markdown would turn into dashes)."""
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in str(text))


# ---------------------------------------------------------------------------------------
# Selections and export
# ---------------------------------------------------------------------------------------

def merge_components(current: Sequence[int], new: Sequence[int]) -> str:
    """Text for the component box: ``current`` then the ``new`` ones not yet in it."""
    out = list(dict.fromkeys([int(c) for c in current] + [int(c) for c in new]))
    return ",".join(map(str, out))


def image_choices(defect_types: Sequence[str]) -> list[str]:
    """Choices of the Grid page's image filter, each saying what it keeps: ``"all images"``
    (the default), ``"good"``, ``"all defects"`` (every image that is not good), then each
    other type in sorted order. Types absent from ``defect_types`` are not offered."""
    types = sorted(set(defect_types))
    out = [ALL_IMAGES] + ([GOOD] if GOOD in types else [])
    if any(is_defect(t) for t in types) and ALL_DEFECTS not in types:
        out.append(ALL_DEFECTS)
    return out + [t for t in types if t != GOOD]


def filter_defect(choice: str) -> str | None:
    """The image filter's choice as :func:`mvgviz.selection.parse_images`'s ``defect``:
    None for every image, :data:`~mvgviz.conventions.ANY_DEFECT` for every defect, else the type."""
    return None if choice == ALL_IMAGES else ANY_DEFECT if choice == ALL_DEFECTS else choice


def filter_pool(choice: str, defect_types: Sequence[str]) -> tuple[int, ...]:
    """Indices of the images the filter ``choice`` keeps (all of them for 'all images')."""
    defect = filter_defect(choice)
    return tuple(i for i, t in enumerate(defect_types)
                 if defect is None or t == defect or (defect == ANY_DEFECT and is_defect(t)))


def filter_label(choice: str) -> str:
    """How a filter choice is named in a sentence: 'all defects', 'type crack', 'good'."""
    return choice if choice in (ALL_IMAGES, ALL_DEFECTS, GOOD, ANY_DEFECT) else f"type {choice!r}"


def component_box_text(mode: str, k: int, indices: str) -> str:
    """The grid's component selection from the Components page's controls: ``"best k"`` /
    ``"worst k"`` with ``k`` -> ``"best:k"`` / ``"worst:k"``; ``"indices"`` -> ``indices``."""
    if mode == "indices":
        return str(indices)
    return f"{mode.split()[0]}:{int(k)}"


def first_defect_image(defect_types: Sequence[str]) -> int:
    """Index of the first anomalous image (0 when there is none): where the Inspect page starts."""
    return next((i for i, t in enumerate(defect_types) if is_defect(t)), 0)


def grid_spec_from_controls(model, layer, split: str, *, image_filter: str, images: str, seed: int,
                            components: str, scale: str, show_m2: bool, show_image: bool, outline: bool,
                            alpha: float, subset: str | None = None, limit: int = GRID_LIMIT):
    """The Grid page's controls -> ``(GridSpec, notes)``; at most ``limit`` images and
    components are kept (``notes`` says so). ``subset``: the model control's rule (None: all
    components), the model of the M2 column. Raises ParamError naming the parameter
    (:func:`error_message` names the control)."""
    from ..render import GridSpec
    from ..selection import parse_components, parse_images
    notes = []
    defect = filter_defect(image_filter)
    types = model.data.defect_types(split)
    n = len(model.data.files(split))
    text = str(images).strip().lower()
    if defect is None or text == "all" or text.startswith("random:"):
        imgs = parse_images(images, n, defect_types=types, defect=defect, seed=int(seed))
    else:  # typed indices: those the filter does not keep are left out, and the page says so
        typed = parse_images(images, n, seed=int(seed))
        keep = set(filter_pool(image_filter, types))
        imgs = tuple(i for i in typed if i in keep)
        out = [i for i in typed if i not in keep]
        if out:
            which = ", ".join(f"{i} ({types[i]})" for i in out[:8]) + (", ..." if len(out) > 8 else "")
            if imgs:
                notes.append(f"Image(s) {which} left out: not kept by the filter "
                             f"'{filter_label(image_filter)}' (choose 'all images' to show them).")
            else:
                imgs = typed
                notes.append(f"No typed image is kept by the filter '{filter_label(image_filter)}' "
                             f"({which}): showing them anyway; choose 'all images' to silence this.")
    comps = parse_components(components, layer)
    if len(comps) > limit:
        notes.append(f"{len(comps)} components selected: showing the first {limit}.")
        comps = comps[:limit]
    spec = GridSpec(layer=layer.name, split=split, images=imgs, components=comps, scale=scale,
                    show_m2=show_m2, show_image=show_image, outline=outline, alpha=float(alpha), subset=subset)
    return spec, notes


def grid_file_bytes(model, spec, fmt: str) -> bytes:
    """The grid as a publication figure file (``png``, ``pdf`` or ``svg``)."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"`fmt` must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    try:
        from ..export import export_figure
    except ImportError:
        export_figure = None
    if export_figure is not None:
        with tempfile.TemporaryDirectory(prefix="mvgviz-export-") as tmp:
            paths = export_figure(model, spec, Path(tmp) / f"grid.{fmt}")
            for p in paths:
                if Path(p).suffix.lower() == f".{fmt}":
                    return Path(p).read_bytes()
            raise RuntimeError(f"export_figure wrote no .{fmt} file (it wrote {', '.join(map(str, paths))})")
    import io

    from ..render import grid_data, render_figure
    fig = render_figure(grid_data(model, spec))
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=200)
    return buf.getvalue()


def grid_manifest_bytes(model, spec) -> bytes:
    """The JSON manifest of the grid (what :func:`mvgviz.export.figure_from_manifest` reads)."""
    try:
        from ..export import manifest
    except ImportError:
        manifest = None
    if manifest is not None:
        d = manifest(model, spec)
    else:
        from .. import __version__
        d = {"mvgviz_version": __version__, "root": str(model.root), "category": model.category,
             "backbone": model.backbone, "weights": model.weights, "reg": model.reg,
             "spec": spec.to_dict()}
    return (json.dumps(d, indent=1, default=str) + "\n").encode()


def manifest_name(stem: str, fmt: str = "png") -> str:
    """The manifest's file name, as the command line names it: ``FILE.<ext>.json``."""
    return f"{stem}.{fmt}.json"


def images_with(text: str, image: int, n_images: int, *, image_filter: str = ALL_IMAGES,
                defect_types: Sequence[str] | None = None, seed: int = 0) -> str:
    """The Images box's text with ``image`` added: the current selection (``random:N`` and
    ``all`` resolved with the filter and seed) as indices, then ``image`` if it is not in it."""
    from ..selection import parse_images
    defect = filter_defect(image_filter)
    try:
        current = parse_images(text, n_images, defect_types=defect_types if defect else None, defect=defect,
                               seed=int(seed))
    except ValueError:
        current = ()
    out = list(dict.fromkeys([int(i) for i in current] + [int(image)]))
    return ",".join(map(str, out))


def export_name(model, spec) -> str:
    """A file stem for downloads: ``brick_efficientnet_lite0_blocks10_test``."""
    layer = "".join(ch for ch in spec.layer if ch.isalnum())
    return f"{model.category}_{model.backbone}_{layer}_{spec.split}"


# ---------------------------------------------------------------------------------------
# Tables of the pages (plain dicts of columns; st.dataframe shows them)
# ---------------------------------------------------------------------------------------

def overview_table(model) -> dict[str, list]:
    """One row per layer: size, channels, the four metrics, and how far whitened test
    values go beyond the [0, 9] range expected of Gaussian features."""
    cols: dict[str, list] = {k: [] for k in (
        "layer", "feature size", "channels", "image AUROC", "pixel AUROC", "AUPR", "AUPRO",
        "max y2 (test)", "p99 of all y2 (test)", "p99 of M2 (test)")}
    for lm in model.layers.values():
        m, st_test = lm.metrics, lm.stats("test")
        h, w = lm.feature_size
        cols["layer"].append(lm.name)
        cols["feature size"].append(f"{h}x{w} (1 cell = {model.image_size // max(h, 1)} px)")
        cols["channels"].append(int(lm.channels))
        cols["image AUROC"].append(m["image_auroc"])  # None (shown empty) where the data cannot define it
        cols["pixel AUROC"].append(m["pixel_auroc"])
        cols["AUPR"].append(m["pixel_aupr"])
        cols["AUPRO"].append(m["aupro"])
        ext = max(float(abs(st_test.y_min).max()), float(abs(st_test.y_max).max()))
        cols["max y2 (test)"].append(ext ** 2)
        cols["p99 of all y2 (test)"].append(float(st_test.cross_component_p99))
        cols["p99 of M2 (test)"].append(float(st_test.m2_p99))
    return cols


def overview_notes(model) -> list[str]:
    """What the paper observed, made concrete for this model."""
    notes = []
    coarse = [lm for lm in model.layers.values() if lm.feature_size[0] and model.image_size // lm.feature_size[0] >= 16]
    for lm in coarse:
        h, w = lm.feature_size
        s = model.image_size // h
        notes.append(f"Resolution: {lm.name} is {h}x{w}, one feature cell covers {s}x{s} input pixels; "
                     "its heatmaps are blurred bilinear blow-ups (see the Grid).")
    for lm in model.layers.values():
        tr = lm.stats("train")
        ext = max(float(abs(tr.y_min).max()), float(abs(tr.y_max).max())) ** 2
        if ext > 9:
            notes.append(f"Value range: on its own training data, {lm.name} reaches y2 = {ext:.3g} "
                         "(a Gaussian would keep 99.7 % of values in [0, 9]).")
    best = model.layers[best_layer(model)]
    if best.metrics["pixel_auroc"] is not None:
        notes.append(f"Best layer by pixel AUROC: {best.name} ({best.metrics['pixel_auroc']:.3f}).")
    for note in sorted({lm.metrics_note for lm in model.layers.values() if lm.metrics_note}):
        notes.append(f"Metrics not available: {note}. Maps, components and colour scales need no labels "
                     "and work as usual.")
    return notes


def component_table(layer) -> dict[str, list]:
    """One row per component (row i = component i): eigenvalue, single-component AUROC,
    its rank, and the colour-scale statistics of both splits."""
    import numpy as np
    c = int(layer.channels)
    te, tr = layer.stats("test"), layer.stats("train")
    if layer.has_ranking:
        rank = np.empty(c, dtype=np.int64)
        rank[layer.ranking()] = np.arange(1, c + 1)
        auroc, rank = [float(v) for v in layer.component_auroc], rank.tolist()
    else:  # no ground-truth masks: no single-component AUROC
        auroc, rank = [None] * c, [None] * c
    return {"component": list(range(c)), "eigenvalue": [float(v) for v in layer.eigvals],
            "AUROC": auroc, "rank": rank,
            "p99 y2 test": [float(v) for v in te.per_component_p99],
            "p99 y2 train": [float(v) for v in tr.per_component_p99],
            "mean y2 test": [float(v) for v in te.y2_mean]}


CHI2_LABEL = "p99 y2 train (chi2(1): 6.63)"
ORACLE_LABEL = "oracle (reads test labels)"


def diagnostics_table(layer) -> dict[str, list]:
    """The Diagnostics page's component table, one row per component (row i = component i):
    eigenvalue, single-component AUROC (None without masks), the train-only artifact scores of
    :mod:`mvgviz.diagnostics` (None where undefined), the train 99th percentile of y2_c (a
    Gaussian gives 6.63), the share of train values above 6.63 (0.01 for a Gaussian) and the
    excess kurtosis."""
    import numpy as np
    c = int(layer.channels)
    d = layer.diagnostics

    def col(a):
        return [float(v) if np.isfinite(v) else None for v in np.asarray(a, dtype=np.float64)]
    return {"component": list(range(c)), "eigenvalue": col(layer.eigvals),
            "AUROC": col(layer.component_auroc) if layer.has_ranking else [None] * c,
            "border score": col(d.border_score), "corner score": col(d.corner_score),
            "position score": col(d.position_score),
            CHI2_LABEL: col(layer.stats("train").per_component_p99),
            "share y2 > 6.63 (train)": col(d.above_chi2_99), "excess kurtosis": col(d.excess_kurtosis)}


def variants_table(rows: Sequence[dict]) -> dict[str, list]:
    """Rows of :func:`mvgviz.variants.variants` as the page's table: rule, kept components, the
    four metrics (None where the data cannot define them) and the oracle flag."""
    return {"rule": [r["rule"] for r in rows], "kept components": [int(r["n_components"]) for r in rows],
            "image AUROC": [r.get("image_auroc") for r in rows], "pixel AUROC": [r.get("pixel_auroc") for r in rows],
            "AUPR": [r.get("pixel_aupr") for r in rows], "AUPRO": [r.get("aupro") for r in rows],
            ORACLE_LABEL: [bool(r["oracle"]) for r in rows]}


# ---------------------------------------------------------------------------------------
# The model control: M2 over all components or over a subset (mvgviz.variants)
# ---------------------------------------------------------------------------------------

ALL_COMPONENTS = "all components"
TYPED_RULE = "a typed rule ..."
ORACLE_CHOICE = "oracle_best:5"
SUBSET_CHOICES = (ALL_COMPONENTS, "drop_border:5", "drop_position:5", "npca:5", ORACLE_CHOICE, TYPED_RULE)
RULE_HELP = "drop_border:N | drop_position:N | npca:P | oracle_best:K"


def subset_choice_label(choice: str) -> str:
    """How the model control shows a choice: the oracle says that it reads test labels."""
    from ..variants import is_oracle
    if choice in (ALL_COMPONENTS, TYPED_RULE):
        return choice
    return f"{choice} (oracle: reads test labels)" if is_oracle(choice) else f"{choice} (train-only)"


def subset_rule(choice: str, typed: str = "") -> str | None:
    """The model control's rule: None for all components (the full model), the typed text for
    :data:`TYPED_RULE` (None while it is empty), else the chosen rule. Its form is checked
    (:func:`mvgviz.variants.canonical_rule`: ParamError naming ``subset``, which the page shows as
    the control); whether it fits the layer is :func:`mvgviz.variants.subset_of`'s."""
    from ..variants import canonical_rule
    if choice == ALL_COMPONENTS or choice is None:
        return None
    text = typed if choice == TYPED_RULE else choice
    if choice == TYPED_RULE and not str(text or "").strip():
        return None
    return canonical_rule(text)


def subset_metrics_table(layer, subset, metrics: dict) -> dict[str, list]:
    """The Overview's two rows for one layer: the full model (its cached metrics) and the subset
    model (``metrics``: :func:`mvgviz.variants.evaluate_subset`'s), with the number of components
    and whether the rule is an oracle."""
    full = layer.metrics
    keys = ("image_auroc", "pixel_auroc", "pixel_aupr", "aupro")
    return {"model": ["M2 (all components)", subset.label],
            "components": [int(layer.channels), len(subset.components)],
            **{col: [full[k], metrics.get(k)] for col, k in zip(("image AUROC", "pixel AUROC", "AUPR", "AUPRO"), keys)},
            "rule reads": ["-", "test labels (oracle)" if subset.oracle else "train split only"]}


def pattern_name(model, layer) -> str:
    """A file stem for the pattern grid's downloads: ``brick_efficientnet_lite0_blocks10_patterns``."""
    name = "".join(ch for ch in layer.name if ch.isalnum())
    return f"{model.category}_{model.backbone}_{name}_patterns"


def pattern_file_bytes(layer, fmt: str, n: int = 8) -> bytes:
    """The pattern grid (:mod:`mvgviz.render.patterns`) as a matplotlib figure file."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"`fmt` must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    import io

    from ..render.patterns import pattern_data, render_pattern_figure
    fig = render_pattern_figure(pattern_data(layer, n))
    try:
        from ..export import save_figure
    except ImportError:
        save_figure = None
    if save_figure is not None:
        with tempfile.TemporaryDirectory(prefix="mvgviz-export-") as tmp:
            out = Path(tmp) / f"patterns.{fmt}"
            save_figure(fig, out, fmt)
            return out.read_bytes()
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=200)
    return buf.getvalue()


def pattern_manifest_bytes(model, layer, n: int = 8) -> bytes:
    """The JSON manifest of the pattern grid (:func:`mvgviz.render.patterns.pattern_manifest`)."""
    from ..render.patterns import pattern_data, pattern_manifest
    return (json.dumps(pattern_manifest(model, layer, pattern_data(layer, n)), indent=1) + "\n").encode()


def decomposition_table(decomp, layer) -> dict[str, list]:
    """The top components of a pixel decomposition with their share of the model's M2 (``"share
    of M2"``, or ``"share of M2 [rule]"`` for a subset model) and AUROC."""
    top = list(decomp.top)
    shares = decomp.shares
    return {"component": top, "y2 at pixel": [float(decomp.y2[c]) for c in top],
            f"share of {decomp.label}": [f"{shares[c]:.1%}" for c in top],
            "AUROC": [float(layer.component_auroc[c]) if layer.has_ranking else None for c in top],
            "eigenvalue": [float(layer.eigvals[c]) for c in top]}


def best_layer(model) -> str:
    """Name of the layer with the highest pixel AUROC (the first of equals)."""
    def score(name):
        v = model.layers[name].metrics["pixel_auroc"]
        return -1.0 if v is None else v
    return max(model.layers, key=score)


def layer_label(model, name: str) -> str:
    """``"_blocks[10] (112 @ 14x14)"``: a layer, its channels and feature size."""
    lm = model.layers[name]
    h, w = lm.feature_size
    return f"{name} ({lm.channels} @ {h}x{w})"


def data_caption(model) -> str:
    """One line about the model and its data (weights, regulariser, input size, image counts)."""
    d = model.data
    types = d.defect_types("test")
    counts = ", ".join(f"{t} {types.count(t)}" for t in sorted(set(types)))
    return (f"weights {model.weights} | covariance regulariser {model.reg} | input "
            f"{model.image_size}x{model.image_size} | {len(d.files('train'))} train images | "
            f"{len(types)} test images ({counts}) | data `{model.root}`")


# ---------------------------------------------------------------------------------------
# Background jobs, as shown
# ---------------------------------------------------------------------------------------

def progress_text(status, title: str, *, bar: bool = True) -> str:
    """The line under a job's progress bar (``bar``) or in its place."""
    if not bar:
        return f"{title} ({status.elapsed:.0f} s)"
    what = "waiting for another fit to finish" if status.waiting else (status.step or "starting")
    left = getattr(status, "seconds_left", None)
    eta = f", about {_duration(left)} left" if left is not None else ""
    return f"{title}: {what} ({status.fraction:.0%}, {status.elapsed:.0f} s{eta})"


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s} s" if s < 90 else f"{s // 60} min {s % 60:02d} s"


def listed_jobs(statuses) -> list:
    """The jobs the sidebar lists: fits, runs of several methods and demo data (not cache look-ups)."""
    return [s for s in statuses if s.key and s.key[0] in ("fit", "methods", "demo")]


def job_line(status) -> str:
    """One markdown line of the sidebar's job list."""
    line = f"**{status.label}**: {status.state}"
    if status.active:
        line += f" {status.fraction:.0%}"
    if status.error:
        line += f" ({status.error[:80]})"
    return line


def chart_file_bytes(model, layer, view: str, fmt: str, **params) -> bytes:
    """A Diagnostics figure (:mod:`mvgviz.render.charts`: ``spectrum`` or ``agreement``) as a file."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"`fmt` must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    from ..export import save_figure
    from ..render.charts import agreement_figure_mpl, spectrum_figure
    if view == "spectrum":
        fig = spectrum_figure(model, layer)
    else:
        fig = agreement_figure_mpl(model, layer, params["image"], params["components"], rule=params.get("rule", ""))
    with tempfile.TemporaryDirectory(prefix="mvgviz-export-") as tmp:
        out = Path(tmp) / f"{view}.{fmt}"
        save_figure(fig, out, fmt)
        return out.read_bytes()


def chart_manifest_bytes(model, layer, view: str, **params) -> bytes:
    """The JSON manifest of a Diagnostics figure (:func:`mvgviz.render.charts.chart_manifest`)."""
    from ..render.charts import chart_manifest
    return (json.dumps(chart_manifest(model, layer, view, **params), indent=1) + "\n").encode()


def resolution_table(model, other) -> dict[str, list]:
    """The Overview's comparison of two input resolutions, one row per layer fitted at both:
    feature size and input pixels per cell, then the four metrics, at each."""
    from ..results import metrics_at_resolution
    rows = [(metrics_at_resolution(model, lm), metrics_at_resolution(other, other.layers[name]))
            for name, lm in model.layers.items() if name in other.layers]
    out: dict[str, list] = {"layer": [name for name in model.layers if name in other.layers]}
    for i, tag in enumerate((f"{model.preprocessing.crop}", f"{other.preprocessing.crop}")):
        out[f"cells @ {tag}"] = [f"{'x'.join(map(str, r[i]['feature_size']))} ({r[i]['cell_pixels']} px)" for r in rows]
        for col, k in (("image AUROC", "image_auroc"), ("pixel AUROC", "pixel_auroc"), ("AUPR", "pixel_aupr"),
                       ("AUPRO", "aupro")):
            out[f"{col} @ {tag}"] = [r[i][k] for r in rows]
    return out
