"""mvgviz viewer: explore Gaussian anomaly-detection models component by component.

    python app.py [--data ROOT ...] [--cache DIR] [--no-autofit] [--port N]   # the launcher
    streamlit run app.py                                  # demo data, generated on first start
    streamlit run app.py -- --data ROOT [--data ROOT2] --cache DIR [--no-autofit]
    MVGVIZ_DATA=ROOT MVGVIZ_CACHE=DIR streamlit run app.py

``python app.py`` starts preparing the first page when the server starts (demo data, then the
default model), printing progress lines on stderr, and then runs ``streamlit run app.py`` in
the same process (so the browser shows the same jobs); other options (``--server.port``,
``--server.headless true``, ...) are passed on to Streamlit. ``streamlit run app.py`` starts
that work when the first browser connects.

Pages (sidebar): Overview (layer metrics), Components (eigenvalues, single-component
AUROC, the grid's component selection), Grid (the paper's figures, export; drawn in the browser by
the fastgrid component of :mod:`mvgviz.viewer.fastgrid` unless MVGVIZ_FAST_GRID=0), Inspect
(one pixel's M2 split into components), Diagnostics (train-only artifact scores per component,
input-independent patterns, spectrum, agreement map, component-subset variants and their curves),
Methods (several methods run on the same data: comparison table, heatmaps side by side, explanations
of the Gaussian methods). The sidebar's **Model: M2 over** chooses the model the Overview, Grid and
Inspect pages show: M2 over all components, or a component-subset model (:mod:`mvgviz.variants`).
The script only wires widgets to library calls:
fitting runs in background jobs, tables and messages come from :mod:`mvgviz.viewer`,
figures from :mod:`mvgviz.render` and :mod:`mvgviz.inspect`.
"""

from __future__ import annotations

import json
import os
import sys
from functools import partial
from pathlib import Path

import numpy as np
import streamlit as st

from mvgviz import __version__
from mvgviz import viewer as V
from mvgviz.backbones import BACKBONES
from mvgviz.conventions import DEFAULT_BACKBONE, SCALES, SPLITS
from mvgviz.inspect import (agreement_figure, argmax_pixel, component_chart, curves_figure, decompose_pixel,
                            decomposition_figure, histogram_figure, m2_figure, map_figure, pixel_from_selection,
                            spectrum_chart, variant_curves_figure)
from mvgviz.render import (GridSpec, encode_raster, grid_data, pattern_data, raster_layout, render_pattern_raster,
                           render_raster)
from mvgviz.evaluation import ranked_images, score_histograms
from mvgviz.render.layers import layers_panel
from mvgviz.selection import parse_components
from mvgviz.variants import Subset, default_rules, subset_of

APP_DIR = Path(__file__).resolve().parent
PAGES = ("Overview", "Components", "Grid", "Inspect", "Diagnostics", "Methods")
OTHER = "other folder ..."
POLL_S = 1.0
ICON = APP_DIR / "assets" / "icon.png"   # local: the page asks no other server for an icon or a font


def launch(argv: list[str]) -> int:
    """``python app.py [app options] [Streamlit options]``: start the warm-up (demo data, the
    default model) in this process, then run the Streamlit server here too."""
    import argparse

    from streamlit.web import cli as stcli
    p = argparse.ArgumentParser(prog="python app.py", add_help=False, allow_abbrev=False)
    p.add_argument("--port", type=int, default=None)
    own, rest = p.parse_known_args(argv)
    app_args = [a for a in rest if a != "--"]
    streamlit_opts, i = [], 0
    while i < len(app_args):          # --server.x / --browser.x / --client.x ... go to Streamlit
        a = app_args[i]
        if a.startswith("--") and "." in a.split("=", 1)[0]:
            takes_value = "=" not in a and i + 1 < len(app_args)
            streamlit_opts += app_args[i:i + 1 + takes_value]
            del app_args[i:i + 1 + takes_value]
        else:
            i += 1
    if own.port is not None:
        streamlit_opts += ["--server.port", str(own.port)]
    cfg = V.parse_app_args(app_args, app_dir=APP_DIR)
    print(f"[mvgviz] data roots: {', '.join(map(str, cfg.roots))} | cache: {cfg.cache}", file=sys.stderr, flush=True)
    V.warm_up(V.shared_jobs(), cfg)
    sys.argv = ["streamlit", "run", str(Path(__file__).resolve()), *streamlit_opts, "--", *app_args]
    return stcli.main()


if __name__ == "__main__" and not st.runtime.exists():   # `python app.py`, not Streamlit's run
    sys.exit(launch(sys.argv[1:]))

st.set_page_config(page_title="mvgviz", page_icon=str(ICON), layout="wide")


@st.cache_resource
def registry() -> V.Jobs:
    """Background jobs and the fitted models, shared by every session of this server (and by
    the launcher's warm-up: :func:`mvgviz.viewer.shared_jobs`)."""
    return V.shared_jobs()


def config() -> V.AppConfig:
    return V.parse_app_args(sys.argv[1:], app_dir=APP_DIR)


def md(text) -> str:
    """Engine messages shown literally (paths with _, globs with *, layer names with [ ])."""
    return V.escape_markdown(str(text))


def md_error(e: BaseException) -> str:
    """An error as the page says it: naming the control, shown literally."""
    return md(V.error_message(e))


def init_state(**defaults) -> None:
    for k, v in defaults.items():
        if k not in st.session_state:
            st.session_state[k] = v


# ---------------------------------------------------------------------------------------
# Progress of background jobs
# ---------------------------------------------------------------------------------------

@st.fragment(run_every=POLL_S)
def job_progress(job_key: tuple, title: str, *, bar: bool = True) -> None:
    """Poll a background job every second: a progress bar (or a line of text) while it is
    queued or running, then a rerun of the whole page once it has finished."""
    job = registry().get(job_key)
    s = job.status() if job is not None else None
    if s is None or not s.active:
        st.rerun()
    text = V.progress_text(s, title, bar=bar)
    if bar:
        st.progress(min(s.fraction, 1.0), text=text)
    else:
        st.caption(text)


# ---------------------------------------------------------------------------------------
# Sidebar: data root, category, backbone, model status
# ---------------------------------------------------------------------------------------

def choose_root(cfg: V.AppConfig) -> tuple[Path | None, bool]:
    """The data root chosen in the sidebar, resolved; (None, _) after an error.
    The flag says whether it is a configured root (where demo data may be written)."""
    options = [str(r) for r in cfg.roots] + [OTHER]
    choice = st.sidebar.selectbox("Data root", options, key="root_choice",
                                  help="Roots given with --data / MVGVIZ_DATA, and the demo folder.")
    if choice != OTHER:
        return Path(choice), True
    typed = st.sidebar.text_input("Folder (inside an allowed root)", key="root_typed",
                                  placeholder=str(cfg.roots[0]))
    if not typed.strip():
        st.info("Type a data folder in the sidebar (it must lie inside "
                + ", ".join(f"`{a}`" for a in cfg.allowed) + ").")
        return None, False
    try:
        return V.resolve_inside(typed, cfg.allowed), False
    except V.PathNotAllowed as e:
        st.sidebar.error("Refused: outside the allowed roots")
        st.error(md_error(e))
        return None, False


def choose_weights(cfg: V.AppConfig, backbone: str) -> tuple[bool, str | None]:
    """The backbone's weights from the sidebar: ``(ok, weights)``; weights None = the standard
    ones, else a file (typed inside a data root, or uploaded and kept in the cache folder).
    ``ok`` is False (with a message on the page) while no usable file is chosen."""
    source = st.sidebar.radio("Weights", V.weights_choices(), key="weights_source",
                              help="The standard ImageNet weights (torch hub cache, or shipped with "
                                   "efficientnet_lite0), or a PyTorch state dict of this backbone: the paper "
                                   "used resnet18. Files are loaded as tensors only (weights_only=True).")
    if source == V.STANDARD:
        return True, None
    if source == V.IN_ROOT:
        typed = st.sidebar.text_input("Weights file (inside a data root)", key="weights_typed",
                                      placeholder=str(cfg.roots[0] / f"{backbone}.pth"))
        if not typed.strip():
            st.info(f"Type the path of a {backbone} weights file in the sidebar (it must lie inside "
                    + ", ".join(md(a) for a in cfg.allowed) + "), or upload one.")
            return False, None
        try:
            return True, V.weights_in_root(typed, cfg.allowed)
        except ValueError as e:
            st.sidebar.error("Weights: refused")
            st.error(md_error(e))
            return False, None
    up = st.sidebar.file_uploader("Weights file", type=list(V.UPLOAD_SUFFIXES), key="weights_upload",
                                  help="Kept in the cache folder under its content hash.")
    if up is None:
        st.info(f"Upload a {backbone} weights file (.pth state dict) in the sidebar.")
        return False, None
    saved = st.session_state.setdefault("weights_saved", {})
    if up.file_id not in saved:
        saved[up.file_id] = str(V.save_upload(up.getvalue(), up.name, cfg.cache))
    return True, saved[up.file_id]


def demo_panel(root: Path) -> None:
    jobs = registry()
    job = V.demo_job(jobs, root)
    s = job.status()
    st.title("mvgviz")
    if s.state == V.FAILED:
        st.error(f"Writing the demo data set into {md(root)} failed: {md(s.error)}")
        if st.button("Retry"):
            V.demo_job(jobs, root)
            st.rerun()
        return
    st.info(f"First start: writing the generated demo data set (MVTec AD layout) into {md(root)}. "
            "The default model is fitted next.")
    job_progress(job.key, "Demo data")


def model_status(cfg: V.AppConfig, key: V.ModelKey, is_default: bool):
    """Show the model's state (sidebar + page) and return the Model when it is ready."""
    jobs = registry()
    job = jobs.get(key.job_key())
    if job is None:
        probe = V.probe_model(jobs, key, allowed=cfg.allowed)
        if probe.state == "cached":
            job = jobs.get(key.job_key())
        elif probe.state == "busy":
            st.sidebar.info("Model: looking it up ...")
            st.info(f"Looking up {key.label} in the cache ... (the first look-up of a fresh server loads "
                    "PyTorch; if another process is fitting this model, this waits until it is done)")
            job_progress(V.probe_key(key), "Looking up", bar=False)
            return None
        elif probe.state == "error":
            st.sidebar.error("Model: cannot be fitted")
            st.error(f"{key.label} cannot be fitted: {md(probe.error)}")
            return None
        elif cfg.autofit and is_default:
            job = V.model_job(jobs, key, allowed=cfg.allowed)
        else:
            st.sidebar.warning("Model: not fitted yet")
            st.subheader(f"{key.label} is not fitted yet")
            for note in V.cache_notes(jobs.store(key.cache), key.root, key.category, key.backbone):
                st.warning(md(note))
            st.write(f"Fitting reads the category's images once, runs {key.backbone} and fits one "
                     "Gaussian per layer; the results go into the cache. The page stays usable meanwhile.")
            if st.button(f"Fit {key.label}", type="primary", key="fit_button"):
                V.model_job(jobs, key, allowed=cfg.allowed)
                st.rerun()
            return None
    s = job.status()
    if s.state == V.DONE:
        model = job.result
        st.sidebar.success(f"Model: {len(model.layers)} layers fitted")
        return model
    if s.state == V.FAILED:
        st.sidebar.error("Model: fit failed")
        st.error(f"Fitting {key.label} failed: {md(s.error)}")
        if st.button("Retry the fit", key="retry_button"):
            V.model_job(jobs, key, allowed=cfg.allowed)
            st.rerun()
        return None
    st.sidebar.info(f"Model: {s.state} ...")
    st.subheader(f"Fitting {key.label}")
    st.caption("Runs in the background: you can pick another category or backbone meanwhile; "
               "this page fills in when the fit is done.")
    job_progress(job.key, f"Fitting {key.label}")
    return None


def jobs_box() -> None:
    statuses = V.listed_jobs(registry().statuses())
    active = [s for s in statuses if s.active]
    with st.sidebar.expander(f"Background jobs ({len(active)} active)", expanded=False):
        if not statuses:
            st.caption("none")
        for s in statuses:
            st.markdown(V.job_line(s))


# ---------------------------------------------------------------------------------------
# Pages
# ---------------------------------------------------------------------------------------

@st.cache_data(max_entries=32, show_spinner=False)
def subset_metrics(job_key: tuple, layer_name: str, rule: str) -> dict:
    """:func:`mvgviz.variants.evaluate_subset` of the model control's rule on a layer (one pass over
    the test split), cached per model (its job key), layer and rule."""
    from mvgviz.variants import evaluate_subset, select
    model = registry().get(job_key).result
    lm = model.layer(layer_name)
    m = evaluate_subset(model, lm, select(lm, rule))
    return {k: m.get(k) for k in ("image_auroc", "pixel_auroc", "pixel_aupr", "aupro", "note")}


def page_overview(model, layer, job_key: tuple, subset: Subset | None, key: V.ModelKey | None = None) -> None:
    st.header(f"Overview: {model.category} / {model.backbone}")
    st.caption(V.data_caption(model))
    st.dataframe(V.overview_table(model), hide_index=True, width="stretch",
                 column_config={**{k: st.column_config.NumberColumn(format="%.3f")
                                   for k in ("image AUROC", "pixel AUROC", "AUPR", "AUPRO")},
                                **{k: st.column_config.NumberColumn(format="%.1f")
                                   for k in ("max y2 (test)", "p99 of all y2 (test)", "p99 of M2 (test)")}})
    st.caption("Metrics on the test split. AUPR = average precision; AUPRO integrated up to FPR 0.3. "
               "On train data every whitened component is standard normal, so 99.7 % of y2 values lie in "
               "[0, 9] if the features were Gaussian: the last columns show how far the test values go.")
    for note in V.overview_notes(model):
        st.markdown(f"- {note}")
    if subset is not None:
        overview_subset(layer, job_key, subset)
    if key is not None:
        overview_resolution(model, key)


RESOLUTIONS = ("512/448", "448/384", "320/288")  # resize/crop offered beside the model's own


def overview_resolution(model, key: V.ModelKey) -> None:
    """The same layers at a larger input, their metrics beside the model's (every map finer)."""
    st.subheader("Resolution: the same layers at a larger input")
    here = f"{model.preprocessing.resize}/{model.preprocessing.crop}"
    c1, c2 = st.columns([1, 3])
    choice = c1.selectbox("Input (resize/crop)", [r for r in RESOLUTIONS if r != here], key="resolution_choice",
                          help="Resize the images to RESIZE x RESIZE, then centre-crop CROP x CROP: with 512/448 every "
                               "layer's feature map is twice as fine as at 256/224 (the paper's resolution mismatch "
                               "of deep layers). The fit reads the images again and is cached like any fit (4x the "
                               "work of the default at 448).")
    resize, crop = (int(v) for v in choice.split("/"))
    jobs = registry()
    job = jobs.get(V.resolution_key(key, resize, crop))
    other = job.result if job is not None and job.state == V.DONE else None
    if other is None:
        try:
            other = V.cached_at_resolution(jobs, key, resize, crop)
        except (OSError, ValueError) as e:  # a DataError is a ValueError
            st.error(f"Cannot read the model at {choice}: {md_error(e)}")
            return
    if other is None:
        if job is not None and job.status().active:
            job_progress(job.key, f"Fitting at {choice}")
            return
        if job is not None and job.state == V.FAILED:
            st.error(f"The fit at {choice} failed: {md(job.error or '')}")
        c2.write("")
        if c2.button(f"Fit at {choice} and compare", key="resolution_fit"):
            V.resolution_job(jobs, key, resize, crop, allowed=config().allowed)
            st.rerun()
        return
    table = V.resolution_table(model, other)
    st.dataframe(table, hide_index=True, width="stretch", key="resolution_table",
                 column_config={c: st.column_config.NumberColumn(format="%.3f") for c in table if "AU" in c})
    st.caption(f"The same images, backbone and weights at {here} and {choice}; the metrics at {choice} are computed "
               f"on the masks at that size. Cells: the feature map's size and the input pixels one cell covers.")


def overview_subset(layer, job_key: tuple, subset: Subset) -> None:
    """The model control's subset model beside the full model, on the sidebar's layer."""
    st.subheader(f"Model: {md(subset.label)} on {md(layer.name)}")
    try:
        with st.spinner(f"Evaluating {md(subset.label)} (one pass over the test split) ..."):
            m = subset_metrics(job_key, layer.name, subset.rule)
    except (ValueError, KeyError, OSError) as e:
        st.error(f"Cannot evaluate {md(subset.label)}: {md_error(e)}")
        return
    num = st.column_config.NumberColumn
    st.dataframe(V.subset_metrics_table(layer, subset, m), hide_index=True, width="stretch", key="overview_subset",
                 column_config={k: num(format="%.4f") for k in ("image AUROC", "pixel AUROC", "AUPR", "AUPRO")})
    st.caption(f"The subset model {md(subset.description)}: M2_S = the sum of y2_c over its components, scored like "
               "the full model (image score = max of the upsampled map; test split). It is the model the Grid's M2 "
               "column and the Inspect page show while the sidebar's **Model: M2 over** is set."
               + (" An oracle reads the test labels to choose its components: an upper bound, not a model."
                  if subset.oracle else ""))
    if m.get("note"):
        st.caption(f"Metrics n/a: {md(m['note'])}.")


def page_components(model, layer) -> None:
    st.header(f"Components of {layer.name}")
    st.caption(f"{layer.channels} whitened components, index 0 = smallest eigenvalue. "
               "Single-component AUROC = pixel AUROC of the upsampled y2_c map on the test split. "
               "Click a column header to sort; tick rows to send them to the grid.")
    c = layer.channels
    init_state(comp_mode="best k", comp_k=4, comp_indices="0-3")
    left, right = st.columns([2, 1], gap="medium")
    with right:
        st.subheader("Selection for the grid")
        st.radio("Choose", ["best k", "worst k", "indices"], key="comp_mode", horizontal=True,
                 on_change=send_components, args=(layer.name,), persist_state="session")
        st.number_input("k", min_value=1, max_value=c, step=1, key="comp_k",
                        on_change=send_components, args=(layer.name,), persist_state="session")
        st.text_input("Indices (e.g. 12,40 or 3-7)", key="comp_indices",
                      on_change=send_components, args=(layer.name,), persist_state="session")
        text = st.session_state.get("grid_components", "best:4")
        try:
            sel = parse_components(text, layer)
            st.success(f"Grid components: `{text}` = " + ", ".join(f"c {i}" for i in sel))
        except ValueError as e:
            st.error(f"Grid components `{text}`: {md_error(e)}")
        st.plotly_chart(component_chart(layer), key="comp_chart")
    with left:
        event = st.dataframe(V.component_table(layer), hide_index=True, width="stretch", height=560,
                             key="comp_table", on_select="rerun", selection_mode="multi-row",
                             column_config={"AUROC": st.column_config.NumberColumn(format="%.4f"),
                                            **{k: st.column_config.NumberColumn(format="%.2f") for k in
                                               ("p99 y2 test", "p99 y2 train", "mean y2 test")}})
        rows = list(event.selection.rows) if event is not None else []
        if rows and st.button(f"Use the {len(rows)} selected rows in the grid", key="comp_use_rows"):
            st.session_state["grid_components"] = ",".join(str(int(r)) for r in rows)
            st.rerun()


def send_components(layer_name: str) -> None:
    st.session_state["grid_components"] = V.component_box_text(
        st.session_state.get("comp_mode", "best k"), st.session_state.get("comp_k", 4),
        st.session_state.get("comp_indices", "0"))


@st.cache_data(max_entries=64, show_spinner=False)
def grid_view(job_key: tuple, spec_json: str, width: int = V.GRID_DISPLAY_WIDTH) -> dict:
    """The grid's picture as JPEG bytes at most ``width`` pixels wide (the size the page shows
    it: fewer bytes to encode, send and decode), and its scale; cached per (model, spec): a
    change re-reads only the chosen images and components from the cache's memory maps."""
    model = registry().get(job_key).result
    data = grid_data(model, GridSpec.from_dict(json.loads(spec_json)))
    raster = render_raster(data, width=width)  # (H, W, 3) uint8: panels shrunk to fit, labels >= 11 px
    return {"width": int(raster.shape[1]), "full_width": int(raster_layout(data).width), "jpeg": encode_raster(raster),
            "vmax": [float(v) for v in data.vmax], "columns": list(data.column_labels), "note": data.scale_note}


@st.cache_resource(show_spinner=False)
def fastgrid_component():
    """The Grid drawn in the browser (:mod:`mvgviz.viewer.fastgrid`), or None when it cannot be
    declared (the page then shows the server-drawn picture)."""
    from mvgviz.viewer.fastgrid import FRONTEND
    if not (FRONTEND / "index.html").is_file():
        return None
    try:
        import streamlit.components.v1 as components
        return components.declare_component("mvgviz_fastgrid", path=str(FRONTEND))
    except Exception:  # noqa: BLE001 - any failure: the st.image path
        return None


@st.cache_data(max_entries=16, show_spinner=False)
def fastgrid_payload(job_key: tuple, base_json: str) -> dict:
    """The component's tiles and labels, once per (model, spec without its components)."""
    from mvgviz.viewer.fastgrid import grid_payload
    model = registry().get(job_key).result
    return grid_payload(model, GridSpec.from_dict(json.loads(base_json)), limit=V.GRID_LIMIT)


def take_fastgrid_value(value, layer, spec: GridSpec) -> GridSpec:
    """A new text typed in the fastgrid component (``{"text", "seq"}``, each ``seq`` taken once) into
    the session state's ``grid_components``; returns ``spec`` with those components."""
    if not isinstance(value, dict) or value.get("seq") == st.session_state.get("fastgrid_seq"):
        return spec
    st.session_state["fastgrid_seq"] = value.get("seq")
    typed = str(value.get("text", ""))
    try:
        comps = parse_components(typed, layer)[:V.GRID_LIMIT]
    except ValueError:
        return spec  # the component shows the error and never sends such a text
    st.session_state["grid_components"] = typed
    return spec.replace(components=comps)


def grid_spec(model, layer, split: str, subset: Subset | None, *, fast: bool = False) -> GridSpec | None:
    """The grid's controls; returns the spec, or None after showing an error. With ``fast`` the
    Components box is the fastgrid component's (drawn by the caller): the spec then holds the
    components of the session state's ``grid_components``."""
    choices = V.image_choices(model.data.defect_types(split))
    c1, c2, c3, c4 = st.columns([2, 2, 1, 3])
    if st.session_state.get(f"grid_filter_{split}") not in (None, *choices):
        del st.session_state[f"grid_filter_{split}"]  # e.g. a type of another category
    filt = c1.selectbox("Images of type", choices, index=0, key=f"grid_filter_{split}", persist_state="session",
                        help="Which images 'all' and random:N draw from: all images (the default), good ones, "
                             "all defects, or one defect type. Typed indices outside it are left out, with a note.")
    images_text = c2.text_input("Images (0,5,9 | 3-7 | all | random:N)", key="grid_images",
                                persist_state="session")
    seed = c3.number_input("Seed", min_value=0, step=1, key="grid_seed", persist_state="session")
    if fast:
        comps_text = st.session_state.get("grid_components", "best:4")
        c4.caption("Components: the box above the grid (drawn in the browser).")
    else:
        comps_text = c4.text_input("Components (best:N | worst:N | 12,40 | 3-7)", key="grid_components",
                                   persist_state="session")
    c4.toggle("Draw in the browser", key="grid_fast", persist_state="session",
              help="A change of components repaints at once, without a server round trip. Off: the server "
                   "draws the picture, and the Components box is a page control.")
    c5, c6, c7, c8, c9 = st.columns([3, 1.3, 1.3, 1.3, 2])
    scale = c5.radio("Colour scale (max = 99th percentile)", SCALES, horizontal=True, key="grid_scale",
                     persist_state="session")
    show_m2 = c6.toggle("M2 column", key="grid_m2", persist_state="session")
    show_image = c7.toggle("Show image", key="grid_show_image", persist_state="session")
    outline = c8.toggle("GT outline", key="grid_outline", persist_state="session")
    alpha = c9.slider("Heatmap alpha", 0.0, 1.0, step=0.05, key="grid_alpha", persist_state="session",
                      disabled=not show_image)

    if fast:
        try:
            parse_components(comps_text, layer)
        except ValueError:
            comps_text = "0"  # the component shows the error; the exports keep a valid grid
    try:
        spec, notes = V.grid_spec_from_controls(model, layer, split, image_filter=filt, images=images_text,
                                                seed=seed, components=comps_text, scale=scale, show_m2=show_m2,
                                                show_image=show_image, outline=outline, alpha=alpha,
                                                subset=None if subset is None else subset.rule)
    except ValueError as e:
        st.error(md_error(e))
        return None
    for note in notes:
        st.warning(note)
    return spec


@st.fragment
def page_grid(model, layer, split: str, job_key: tuple, subset: Subset | None = None) -> None:
    """The Grid page; a fragment: changing its controls reruns only this function."""
    st.header(f"Grid: {layer.name}, {split} split")
    st.caption(f"{md(model.category)} / {md(model.backbone)}, weights {md(model.weights)}"
               + ("" if subset is None else f" | M2 column: the subset model {md(subset.label)}, "
                                           f"{md(subset.description)} (sidebar: Model: M2 over)"))
    comp = fastgrid_component() if st.session_state.get("grid_fast", True) else None
    spec = grid_spec(model, layer, split, subset, fast=comp is not None)
    if spec is None:
        return
    if comp is not None:
        # drawn in the browser: a change of components repaints there, then reaches Python
        # (session state: exports and the scale table) through the component's value
        base = json.dumps(spec.replace(components=(0,)).to_dict(), sort_keys=True)
        try:
            payload = fastgrid_payload(job_key, base)
        except (ValueError, KeyError, OSError) as e:
            st.error(f"Cannot draw this grid: {md_error(e)}")
            return
        # the component's value (the text typed in it), read before it is drawn so that the text
        # it is given is the latest one (else a rerun would lay out the previous text again)
        held = st.session_state.get("fastgrid")
        spec = take_fastgrid_value(held, layer, spec)
        # the tiles (MBs) only when the component does not hold them yet: it says which it holds
        # (``have``); a rerun then sends a few bytes, not the tiles again
        has = isinstance(held, dict) and held.get("have") == payload["key"]
        value = comp(payload=None if has else payload, pkey=payload["key"],
                     text=st.session_state.get("grid_components", "best:4"), key="fastgrid", default=None)
        spec = take_fastgrid_value(value, layer, spec)
        view = {"columns": [payload["labels"][c] for c in spec.components] + ([payload["m2"]["label"]] if spec.show_m2 else []),
                "vmax": [payload["vmax"][c] for c in spec.components] + ([payload["m2"]["vmax"]] if spec.show_m2 else [])}
        st.caption("Drawn in the browser (a change of components repaints at once); the Download PNG is the "
                   "publication figure of the same grid.")
    else:
        try:
            view = grid_view(job_key, json.dumps(spec.to_dict(), sort_keys=True))
        except (ValueError, KeyError, OSError) as e:
            st.error(f"Cannot draw this grid: {md_error(e)}")
            return
        # JPEG bytes at the width the page shows them: Streamlit passes them through untouched
        st.image(view["jpeg"], width=view["width"], output_format="JPEG")
        note = view["note"].rstrip()
        if view["width"] < view["full_width"]:
            note += ("" if note.endswith(".") else ".") + (f" Shown {view['width']} px wide (full size "
                                                           f"{view['full_width']} px: download the PNG).")
        st.caption(note)
    with st.expander("Colour scale of each column", expanded=False):
        st.dataframe({"column": view["columns"], "max (colour scale)": view["vmax"],
                      "scale": [c if c.startswith("M2") else spec.scale for c in view["columns"]]},
                     hide_index=True, key="grid_scale_table")
    st.subheader("Export")
    st.caption("Publication figure (matplotlib) of the grid above, and its JSON manifest, named like the "
               "command line's (FILE.png.json): mvgviz export can redraw the figure from it in any format.")
    stem = V.export_name(model, spec)
    cols = st.columns(4)
    for col, fmt in zip(cols, V.EXPORT_FORMATS):
        col.download_button(f"Download {fmt.upper()}", data=_export_callable(model, spec, fmt),
                            file_name=f"{stem}.{fmt}", mime=V.MIME[fmt], on_click="ignore",
                            key=f"export_{fmt}", icon=":material/download:")
    cols[3].download_button("Download manifest (JSON)", data=lambda: V.grid_manifest_bytes(model, spec),
                            file_name=V.manifest_name(stem), mime=V.MIME["json"], on_click="ignore",
                            key="export_json", icon=":material/data_object:")


def _export_callable(model, spec, fmt):
    return lambda: V.grid_file_bytes(model, spec, fmt)


def page_inspect(model, layer, split: str, subset: Subset | None = None) -> None:
    st.header(f"Inspect a pixel: {layer.name}, {split} split")
    if subset is not None:
        st.caption(f"Model: the subset model {md(subset.label)}, {md(subset.description)} (sidebar: Model: M2 "
                   "over). The map is its M2_S on 0 .. the p99 of M2_S over the split; the bars split it into "
                   "its components only.")
    types = model.data.defect_types(split)
    n = len(types)
    image = st.selectbox("Image", list(range(n)), format_func=lambda i: f"{i} | {types[i]}",
                         key=f"insp_image_{split}", persist_state="session",
                         index=V.first_defect_image(types))
    s = model.image_size
    where = (layer.name, split, int(image), None if subset is None else subset.rule)
    if st.session_state.get("insp_where") != where:      # a new image or model: start at its M2 maximum
        r, c = argmax_pixel(layer, split, int(image), subset=subset)
        st.session_state.update(insp_row=r, insp_col=c, insp_where=where)
    left, right = st.columns([1, 1], gap="large")
    with left:
        t1, t2 = st.columns(2)
        overlay = t1.toggle("Image under the map", value=True, key="insp_overlay")
        outline = t2.toggle("GT outline", value=True, key="insp_outline",
                            help="The ground-truth mask's outline (defect images of the test split).")
        row, col = int(st.session_state["insp_row"]), int(st.session_state["insp_col"])
        mask = model.data.masks(split)[int(image)] if outline else None
        fig = m2_figure(layer, split, int(image), rgb=model.data.images(split)[int(image)] if overlay else None,
                        pixel=(row, col), mask=mask if mask is not None and mask.any() else None, subset=subset)
        st.plotly_chart(fig, key="insp_chart", on_select=partial(on_pixel_click, s), selection_mode="points",
                        config={"displayModeBar": False})
        st.caption(f"Click the map to pick a pixel (or type it below). It starts at the image's "
                   f"{'M2' if subset is None else md(subset.label)} maximum.")
        c1, c2 = st.columns(2)
        c1.number_input("Row", min_value=0, max_value=s - 1, step=1, key="insp_row")
        c2.number_input("Col", min_value=0, max_value=s - 1, step=1, key="insp_col")
    with right:
        top = st.slider("Components listed", 1, min(32, layer.channels), 8, key="insp_top")
        decomp = decompose_pixel(layer, split, int(image), int(st.session_state["insp_row"]),
                                 int(st.session_state["insp_col"]), top=int(top), subset=subset)
        st.plotly_chart(decomposition_figure(decomp), key="insp_bars")
        m1, m2, m3 = st.columns(3)
        m1.metric("M2 at the pixel" if subset is None else "M2_S at the pixel", f"{decomp.m2:.4g}",
                  help=None if subset is None else (f"{md(subset.label)}: the sum of y2_c over the subset's "
                                                    f"{len(subset.components)} components. The full model (all "
                                                    f"components): {decomp.m2 + decomp.dropped_total:.4g}"))
        m2.metric(f"Share of the top {len(decomp.top)}", f"{decomp.top_share:.1%}")
        m3.metric("Feature cell", f"{decomp.feature_cell[0]}, {decomp.feature_cell[1]}",
                  help=f"{decomp.feature_size[0]}x{decomp.feature_size[1]} map: one cell = "
                       f"{decomp.stride}x{decomp.stride} input pixels")
        st.dataframe(V.decomposition_table(decomp, layer), hide_index=True, width="stretch",
                     key="insp_table")
        try:
            current = parse_components(st.session_state.get("grid_components", ""), layer)
        except ValueError:
            current = ()
        st.button("Add this image and these components to the grid", key="insp_add", on_click=add_to_grid,
                  args=(V.merge_components(current, decomp.top), split, int(image), types), type="primary")
        if st.session_state.get("insp_added"):
            st.success(st.session_state["insp_added"])


def on_pixel_click(size: int) -> None:
    p = pixel_from_selection(st.session_state.get("insp_chart"), size)
    if p is not None:
        st.session_state["insp_row"], st.session_state["insp_col"] = p


def add_to_grid(text: str, split: str, image: int, types: list) -> None:
    """The Inspect page's button: the components into the grid's selection, and the image into
    its images (the grid's filter is widened to all images if it would leave it out)."""
    fkey = f"grid_filter_{split}"
    filt = st.session_state.get(fkey, V.ALL_IMAGES)
    if V.filter_defect(filt) is not None and image not in V.filter_pool(filt, types):
        st.session_state[fkey] = filt = V.ALL_IMAGES
    images = V.images_with(st.session_state.get("grid_images", ""), image, len(types), image_filter=filt,
                           defect_types=types, seed=int(st.session_state.get("grid_seed", 0)))
    st.session_state["grid_components"] = text
    st.session_state["grid_images"] = images
    st.session_state["insp_added"] = f"Grid components: `{text}`; grid images: `{images}`"


# ---------------------------------------------------------------------------------------
# Diagnostics (issue 11)
# ---------------------------------------------------------------------------------------

AGREEMENT_RULE = "npca:5"


@st.cache_data(max_entries=32, show_spinner=False)
def pattern_view(job_key: tuple, layer_name: str, n: int) -> dict:
    """The pattern grid of a layer as JPEG bytes (cached per model, layer and N)."""
    layer = registry().get(job_key).result.layer(layer_name)
    data = pattern_data(layer, int(n))
    return {"jpeg": encode_raster(render_pattern_raster(data)), "note": data.scale_note,
            "components": data.components.tolist()}


@st.cache_data(max_entries=16, show_spinner=False)
def variant_rows(job_key: tuple, layer_name: str, rules: tuple[str, ...]) -> list[dict]:
    """:func:`mvgviz.variants.variants` of a layer with their curves (seconds: one pass over the
    test split per rule), cached per model (its job key), layer and rules."""
    from mvgviz.variants import variants
    model = registry().get(job_key).result
    return variants(model, model.layer(layer_name), list(rules), curves=True)


def variant_rules(layer, subset: Subset | None) -> tuple[str, ...]:
    """The Diagnostics page's variants: the default rules, and the model control's rule if it is
    another one."""
    rules = default_rules(layer.channels)
    return rules + ((subset.rule,) if subset is not None and subset.rule not in rules else ())


def page_diagnostics(model, layer, job_key: tuple, subset: Subset | None = None) -> None:
    st.header(f"Diagnostics of {layer.name}")
    h, w = layer.feature_size
    st.caption(f"{layer.channels} components, {h}x{w} cells (one cell = {layer.cell_pixels} input pixels). "
               "Scores from the train split only (mvgviz.diagnostics): border score = mean pattern on the outer "
               "ring of cells / interior; corner score = 4 corner cells / interior; position score = share of "
               "the variance of y2_c explained by position; a Gaussian component has p99 of y2 = 6.63, 1 % of "
               f"values above it and excess kurtosis 0. Non-Gaussianity of the layer (mean |excess kurtosis|): "
               f"{layer.diagnostics.non_gaussianity:.3g}.")
    num = st.column_config.NumberColumn
    st.dataframe(V.diagnostics_table(layer), hide_index=True, width="stretch", height=380, key="diag_table",
                 column_config={"eigenvalue": num(format="%.4g"), "AUROC": num(format="%.4f"),
                                **{k: num(format="%.3f") for k in ("border score", "corner score", "position score",
                                                                    V.CHI2_LABEL, "excess kurtosis")},
                                "share y2 > 6.63 (train)": num(format="%.4f")})
    if not layer.has_ranking:
        st.caption("AUROC: n/a (no ground-truth masks).")

    st.subheader("Input-independent patterns")
    n = st.slider("Components per row", 1, min(16, layer.channels), min(8, layer.channels), key="diag_n")
    try:
        view = pattern_view(job_key, layer.name, int(n))
    except (ValueError, KeyError, OSError) as e:
        st.error(f"Cannot draw the patterns: {md_error(e)}")
        view = None
    if view is not None:
        st.image(view["jpeg"], output_format="JPEG")
        st.caption("Mean of y2_c at each position over the train images (the paper's Fig. 1 without the "
                   "input), upsampled as scored. " + view["note"])
        stem = V.pattern_name(model, layer)
        cols = st.columns(4)
        for col, fmt in zip(cols, V.EXPORT_FORMATS):
            col.download_button(f"Download {fmt.upper()}", data=_pattern_callable(layer, fmt, int(n)),
                                file_name=f"{stem}.{fmt}", mime=V.MIME[fmt], on_click="ignore",
                                key=f"diag_export_{fmt}", icon=":material/download:")
        cols[3].download_button("Download manifest (JSON)", data=lambda: V.pattern_manifest_bytes(model, layer, int(n)),
                                file_name=V.manifest_name(stem), mime=V.MIME["json"], on_click="ignore",
                                key="diag_export_json", icon=":material/data_object:")

    st.subheader("Spectrum")
    st.plotly_chart(spectrum_chart(layer), key="diag_spectrum")
    chart_downloads(model, layer, "spectrum")

    st.subheader("Agreement map beside M2")
    types = model.data.defect_types("test")
    image = st.selectbox("Test image", list(range(len(types))), format_func=lambda i: f"{i} | {types[i]}",
                         key="diag_image", index=V.first_defect_image(types))
    try:
        from mvgviz.agreement import agreement_map
        from mvgviz.variants import select
        comps = select(layer, AGREEMENT_RULE)
        count = agreement_map(layer, "test", int(image), comps)
    except (ValueError, KeyError, OSError) as e:
        st.error(f"Cannot draw the agreement map: {md_error(e)}")
    else:
        left, right = st.columns(2, gap="medium")
        mask = model.data.masks("test")[int(image)]
        left.plotly_chart(m2_figure(layer, "test", int(image), clickable=False, height=420,
                                    mask=mask if mask.any() else None), key="diag_m2")
        right.plotly_chart(agreement_figure(count, len(comps), title=(
            f"Agreement of test image {int(image)}, {AGREEMENT_RULE} ({len(comps)} components)<br>"
            f"<span style='font-size:12px'>components above their train p99: 0 .. {len(comps)} on inferno; "
            f"max here {int(count.max())}</span>")), key="diag_agreement")
        st.caption(f"Component set {AGREEMENT_RULE} (train-only: the smallest-variance components holding 5 % of "
                   "the variance): " + ", ".join(f"c {c}" for c in comps[:40]) + (" ..." if len(comps) > 40 else ""))
        chart_downloads(model, layer, "agreement", image=int(image), components=[int(c) for c in comps],
                        rule=AGREEMENT_RULE)
        st.markdown(f"**Test image {int(image)} in every layer**")
        st.image(encode_raster(layers_panel(model, "test", int(image))), output_format="JPEG")
        st.caption("The M2 map of each layer as scored, on that layer's own scale (0 .. p99 of M2 over the test "
                   "split), with the feature cells drawn where they are at least 8 px: the resolution mismatch "
                   "of deep layers.")

    st.subheader("Curves and image scores")
    curves = layer.curves
    if curves:
        st.plotly_chart(curves_figure(curves, layer.metrics), key="diag_curves")
    else:
        st.caption(f"No curves: {md(layer.metrics_note or 'no labels')}.")
    scores = layer.image_scores("test")
    st.plotly_chart(histogram_figure(score_histograms(scores, types)), key="diag_hist")
    ranked = ranked_images(scores, types)
    st.caption("Test images by score, highest first: select rows to show them in the Grid.")
    event = st.dataframe({"rank": [r["rank"] for r in ranked], "image": [r["image"] for r in ranked],
                          "score": [r["score"] for r in ranked], "type": [r["defect"] for r in ranked]},
                         hide_index=True, key="diag_ranked", on_select="rerun", selection_mode="multi-row",
                         height=240)
    picked = [ranked[i]["image"] for i in event.selection.rows] if event and event.selection else []
    if picked:
        st.button(f"Show images {', '.join(map(str, picked))} in the Grid", key="diag_to_grid",
                  on_click=show_in_grid, args=(picked,))


    st.subheader("Variants: M2 on a subset of the components")
    st.caption("Train-only rules (drop the components with the highest border / position score, NPCA/OPCA's "
               "smallest-variance 5 %) beside the full model, and the sidebar's **Model: M2 over** rule when it is "
               "another. The oracle keeps the components with the best test AUROC: it reads test labels, an upper "
               "bound only (absent without masks).")
    rules = variant_rules(layer, subset)
    want = (tuple(job_key), layer.name)
    if st.button("Compute the variants (one pass over the test split per rule)", key="diag_variants_button"):
        st.session_state["diag_variants_for"] = want
    if st.session_state.get("diag_variants_for") == want:
        try:
            with st.spinner("Evaluating the variants ..."):
                rows = variant_rows(job_key, layer.name, rules)
        except (ValueError, KeyError, OSError) as e:
            st.error(f"Cannot compute the variants: {md_error(e)}")
        else:
            st.dataframe(V.variants_table(rows), hide_index=True, width="stretch", key="diag_variants",
                         column_config={k: num(format="%.4f") for k in ("image AUROC", "pixel AUROC", "AUPR", "AUPRO")})
            if any(r.get("curves") for r in rows):
                st.plotly_chart(variant_curves_figure(rows), key="diag_variant_curves")
                st.caption("Each variant's curves on the test split (thinned for the plot; the table's metrics are "
                           "exact): the full model black, each subset model in its colour, the oracle dashed.")
            if model.data.label_note:
                st.caption(f"Metrics n/a: {md(model.data.label_note)}.")


def chart_downloads(model, layer, view: str, **params) -> None:
    """PNG / PDF / SVG (matplotlib) and the JSON manifest of a Diagnostics view, drawn on click."""
    stem = f"{model.category}_{model.backbone}_{''.join(ch for ch in layer.name if ch.isalnum())}_{view}"
    cols = st.columns(4)
    for col, fmt in zip(cols, V.EXPORT_FORMATS):
        col.download_button(f"{view.capitalize()} {fmt.upper()}", file_name=f"{stem}.{fmt}", mime=V.MIME[fmt],
                            data=partial(V.chart_file_bytes, model, layer, view, fmt, **params),
                            on_click="ignore", key=f"diag_{view}_{fmt}")
    cols[3].download_button(f"{view.capitalize()} manifest (JSON)", file_name=V.manifest_name(stem),
                            mime=V.MIME["json"], data=partial(V.chart_manifest_bytes, model, layer, view, **params),
                            on_click="ignore", key=f"diag_{view}_json")


def show_in_grid(images) -> None:
    """Callback: these test images in the Grid (all types shown), and go there."""
    st.session_state["grid_images"] = ",".join(map(str, images))
    st.session_state["grid_filter_test"] = V.ALL_IMAGES
    st.session_state["split"] = "test"
    st.session_state["page"] = "Grid"


def _pattern_callable(layer, fmt: str, n: int):
    return lambda: V.pattern_file_bytes(layer, fmt, n)



# ---------------------------------------------------------------------------------------
# Methods: several methods on the same data
# ---------------------------------------------------------------------------------------

def _signature(results: dict) -> tuple:
    """What identifies a set of method results in st.cache_data: labels and cache keys."""
    return tuple((lab, r.cache_key) for lab, r in results.items())


@st.cache_data(max_entries=64, show_spinner=False)
def method_scale(cache_key: str, split: str, _result) -> float:
    """The colour maximum of a method's maps: p99 over the split, as scored (cached per entry)."""
    from mvgviz.render.methods import map_scale
    return map_scale(_result, split)


def method_scales(results: dict, split: str) -> dict:
    return {lab: method_scale(r.cache_key, split, r) for lab, r in results.items() if r.has_maps}


@st.cache_data(max_entries=32, show_spinner=False)
def methods_view_picture(signature: tuple, spec_json: str, _results, _scales) -> dict:
    """The methods figure's picture as JPEG bytes at most the page's width, and its scales."""
    from mvgviz.render.methods import MethodsSpec, methods_data
    data = methods_data(_results, MethodsSpec.from_dict(json.loads(spec_json)), scales=_scales)
    raster = render_raster(data, width=V.GRID_DISPLAY_WIDTH)
    return {"width": int(raster.shape[1]), "full_width": int(raster_layout(data).width),
            "jpeg": encode_raster(raster), "note": data.scale_note,
            "columns": list(data.methods), "vmax": [None if j in data.blank_columns else float(v)
                                                    for j, v in enumerate(data.vmax)]}


@st.cache_data(max_entries=64, show_spinner=False)
def component_scale_cached(cache_key: str, split: str, component: int, _result) -> float:
    from mvgviz.explain import component_scale
    return component_scale(_result, split, component)


def page_methods(cfg: V.AppConfig, key: V.ModelKey) -> None:
    """Several methods on the sidebar's data, category, backbone and weights: run them (one
    background job), compare their metrics and maps, explain the Gaussian ones."""
    jobs = registry()
    st.header(f"Methods: {key.category} / {key.backbone}")
    st.caption("Every method runs on the same images and the same cached feature pass, and is evaluated "
               "by the same metrics (mvgviz compare). Results are cached per method and options.")
    names = V.method_names()
    # every method by default; one that is no longer registered is dropped
    st.session_state["methods_selected"] = [n for n in st.session_state.get("methods_selected", names) if n in names]
    c1, c2 = st.columns([4, 1], vertical_alignment="bottom")
    chosen = c1.multiselect("Methods", names, key="methods_selected", persist_state="session",
                            help="With their defaults for the backbone (see mvgviz compare --help).")
    running = V.active_run(jobs, key)
    if c2.button("Run / compare", type="primary", key="methods_run", disabled=not chosen or running is not None,
                 help="Fits the methods the cache lacks, one after the other, in the background."):
        V.methods_job(jobs, key, chosen, allowed=cfg.allowed)
        st.rerun()
    if running is not None:
        job_progress(running.key, "Running the methods")
    failed = V.failed_run(jobs, key, chosen)
    if failed is not None and running is None:
        st.error(f"The run failed: {md(failed.error)}")
    if not chosen:
        st.info("Choose at least one method.")
        return
    run = V.methods_view(jobs, key, chosen)

    st.subheader("Comparison")
    num = st.column_config.NumberColumn
    st.dataframe(V.methods_table(run.rows), hide_index=True, width="stretch", key="methods_table",
                 column_config={**{k: num(format="%.3f") for k in ("image AUROC", "pixel AUROC", "AUPR", "AUPRO")},
                                **{k: num(format="%.3f") for k in ("fit s", "predict s")},
                                "peak MB": num(format="%.0f"),
                                "cached": st.column_config.CheckboxColumn(help="read from the cache by the latest run")})
    st.caption("Test split. AUPR = average precision; AUPRO up to FPR 0.3. fit s: the method's fit on the cached "
               "features; predict s: scoring the test split and bringing its maps to the pixels (the backbone's "
               "pass is shared and not counted); peak MB: the process's peak memory while the method ran. "
               "Click a column header to sort.")
    for note in V.methods_notes(run.rows):
        st.caption(md(note))
    for r in run.rows:
        if r["status"] == "error":
            st.error(md(r["error"]))
    missing = [r["label"] for r in run.rows if r["status"] == "not run"]
    if missing and running is None:
        st.info(f"Not run yet: {md(', '.join(missing))}. Press Run / compare.")
    if not run.results:
        return

    results = run.results
    first = next(iter(results.values()))
    types = first.data.defect_types("test")
    n = len(types)
    st.subheader("The same images, one column per method")
    ikey = f"methods_images::{key.root}::{key.category}"
    st.session_state[ikey] = [i for i in st.session_state.get(ikey, V.default_images(types)) if 0 <= i < n]
    c1, c2, c3, c4 = st.columns([4, 2.2, 1.3, 1.3], vertical_alignment="bottom")
    images = c1.multiselect("Test images (rows)", list(range(n)), persist_state="session", format_func=lambda i: f"{i} | {types[i]}", key=ikey, max_selections=V.GRID_LIMIT)
    scale_split = c2.radio("Colour scale: 0 .. p99 of each method's maps over", ("test", "train"), horizontal=True,
                           key="methods_scale_split", help="Each column has its own scale (the methods' maps have "
                                                           "different units); rows share it.")
    show_image = c3.toggle("Show image", value=True, key="methods_show_image")
    outline = c4.toggle("GT outline", value=True, key="methods_outline")
    if not images:
        st.info("Choose at least one test image.")
    else:
        from mvgviz.render.methods import MethodsSpec
        spec = MethodsSpec(split="test", images=tuple(int(i) for i in images), scale_split=scale_split,
                           show_image=show_image, outline=outline)
        with st.spinner("Drawing the heatmaps ..."):
            scales = method_scales(results, scale_split)
            pic = methods_view_picture(_signature(results), json.dumps(spec.to_dict(), sort_keys=True), results, scales)
        st.image(pic["jpeg"], width=pic["width"], output_format="JPEG")
        note = pic["note"].rstrip()
        if pic["width"] < pic["full_width"]:
            note += f". Shown {pic['width']} px wide (full size {pic['full_width']} px: download the PNG)."
        st.caption(md(note))
        with st.expander("Colour scale of each column", expanded=False):
            st.dataframe({"method": pic["columns"], "max (colour scale)": pic["vmax"],
                          "scale": [f"p99 of its maps over the {scale_split} split" if v is not None
                                    else "no pixel map" for v in pic["vmax"]]},
                         hide_index=True, key="methods_scale_table")
        stem = V.methods_name(key, spec)
        cols = st.columns(4)
        for col, fmt in zip(cols, V.EXPORT_FORMATS):
            col.download_button(f"Download {fmt.upper()}", file_name=f"{stem}.{fmt}", mime=V.MIME[fmt],
                                data=partial(V.methods_file_bytes, results, spec, fmt, scales=scales),
                                on_click="ignore", key=f"methods_export_{fmt}", icon=":material/download:")
        cols[3].download_button("Download manifest (JSON)", file_name=V.manifest_name(stem), mime=V.MIME["json"],
                                data=partial(V.methods_manifest_bytes, results, spec, root=key.root, scales=scales),
                                on_click="ignore", key="methods_export_json", icon=":material/data_object:")

    explain_section(results, types)


@st.fragment
def explain_section(results: dict, types: list) -> None:
    """Which components make a score, for the methods that can say (has_components: per pixel;
    has_image_components: per image). A fragment: its controls rerun only this section."""
    st.subheader("Explanations: which components make the score")
    usable = [lab for lab, r in results.items() if r.has_components or r.has_image_components]
    if not usable:
        st.caption("None of these methods splits its score into whitened components (the Gaussians do: "
                   "mvg, mvg-concat and PaDiM per pixel, image-level Gaussians per image).")
        return
    c1, c2 = st.columns(2)
    lab = c1.selectbox("Method", usable, key="mx_method")
    r = results[lab]
    image = c2.selectbox("Test image", list(range(len(types))), format_func=lambda i: f"{i} | {types[i]}",
                         index=V.first_defect_image(types), key="mx_image")
    if r.has_components:
        explain_pixel(r, lab, int(image), types)
    if r.has_image_components:
        explain_image(r, lab, int(image), types)


def on_method_pixel_click(size: int) -> None:
    p = pixel_from_selection(st.session_state.get("mx_chart"), size)
    if p is not None:
        st.session_state["mx_row"], st.session_state["mx_col"] = p


def explain_pixel(r, lab: str, image: int, types: list) -> None:
    from mvgviz.explain import basis_note, cell_figure, component_maps, decompose_cell
    s = int(r.image_size)
    m = r.maps("test", [image])[0]                                          # (S, S) as scored
    where = (lab, image)
    if st.session_state.get("mx_where") != where:                         # a new image: its maximum
        rr, cc = (int(v) for v in np.unravel_index(int(np.argmax(m)), m.shape))
        st.session_state.update(mx_row=rr, mx_col=cc, mx_where=where)
    note = f"{md(lab)}: {md(basis_note(r.components_per_position, r.component_basis))} The split of a cell is exact."
    if r.components_per_position:
        st.info(note)
    else:
        st.caption(note)
    vmax = method_scale(r.cache_key, "test", r)
    left, right = st.columns(2, gap="large")
    with left:
        row, col = int(st.session_state["mx_row"]), int(st.session_state["mx_col"])
        mask = r.data.masks("test")[image]
        fig = map_figure(m, vmax, title=(f"{lab}: test image {image} as scored<br><span style='font-size:12px'>"
                                         f"inferno, 0 .. {vmax:.4g} = p99 of its maps over the test split</span>"),
                         name="score", rgb=r.data.images("test")[image], pixel=(row, col),
                         mask=mask if mask.any() else None, height=440)
        st.plotly_chart(fig, key="mx_chart", on_select=partial(on_method_pixel_click, s), selection_mode="points",
                        config={"displayModeBar": False})
        a, b = st.columns(2)
        a.number_input("Row", min_value=0, max_value=s - 1, step=1, key="mx_row")
        b.number_input("Col", min_value=0, max_value=s - 1, step=1, key="mx_col")
    with right:
        top = st.slider("Components listed", 1, 32, 8, key="mx_top")
        d = decompose_cell(r, "test", image, int(st.session_state["mx_row"]), int(st.session_state["mx_col"]),
                           top=int(top))
        st.plotly_chart(cell_figure(d, label=lab), key="mx_bars")
        st.caption(f"Feature cell ({d.cell[0]}, {d.cell[1]}) of the {d.grid[0]}x{d.grid[1]} map (one cell = "
                   f"{d.cell_pixels}x{d.cell_pixels} input pixels). Its M2 = {d.m2:.4g} is the sum of the y_c² "
                   f"listed. The map as scored shows {d.pixel_value:.4g} at the pixel: the method brings the cells "
                   "to the pixels (upsampling mixes neighbouring cells; some methods also transform the values, "
                   "e.g. PaDiM's square root and blur).")
        comp = st.selectbox("Map of component", list(d.top), format_func=lambda c: f"c {c}", key="mx_component")
        cmap = component_maps(r, "test", [image], [int(comp)])[0, 0]
        cmax = component_scale_cached(r.cache_key, "test", int(comp), r)
        st.plotly_chart(map_figure(cmap, cmax, title=(
            f"y_c² of c {int(comp)}, test image {image} (bilinear)<br><span style='font-size:12px'>inferno, 0 .. "
            f"{cmax:.4g} = p99 of y_c² over the test split</span>"), name=f"y2 c{int(comp)}",
            rgb=r.data.images("test")[image], clickable=False, height=360, mask=mask if mask.any() else None,
            pixel=(d.row, d.col)), key="mx_component_map",
            config={"displayModeBar": False})


def explain_image(r, lab: str, image: int, types: list) -> None:
    from mvgviz.explain import decompose_image, image_figure, top_images, top_images_figure
    top = st.slider("Image-level components listed", 1, 32, 10, key="mx_itop")
    d = decompose_image(r, "test", image, top=int(top))
    st.plotly_chart(image_figure(d, label=lab), key="mx_ibars")
    st.dataframe({"component": [d.names[k] for k in d.top], "index": list(d.top),
                  "level": [d.groups[int(d.group[k])] for k in d.top], "y2": [float(d.y2[k]) for k in d.top],
                  "share of all y2": [float(d.shares[k]) for k in d.top],
                  "share of its level": [float(d.group_shares[k]) for k in d.top]},
                 hide_index=True, key="mx_itable",
                 column_config={k: st.column_config.NumberColumn(format="%.3f")
                                for k in ("y2", "share of all y2", "share of its level")})
    st.caption("Each level's whitened components of the image's pooled features: their squares add up to the "
               "level's squared Mahalanobis distance; the image score adds up the levels' distances.")
    comp = st.selectbox("Images scoring highest on component", list(range(len(d.names))), index=int(d.top[0]),
                        format_func=lambda k: d.names[k], key="mx_icomponent")
    t = top_images(r, "test", int(comp), n=min(8, len(types)))
    st.plotly_chart(top_images_figure(t, types, label=lab), key="mx_topimages")
    cols = st.columns(len(t.images))
    imgs = r.data.images("test")
    for c, i, v in zip(cols, t.images, t.y2):
        c.image(imgs[int(i)], caption=f"img {int(i)} | {types[int(i)]} | y2 {v:.3g}", width="stretch")


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------

def choose_subset(layer) -> Subset | None:
    """The sidebar's **Model: M2 over** control: the model the Overview, Grid and Inspect pages show
    (M2 over all components, or a subset model of :mod:`mvgviz.variants`). A bad rule shows an error
    naming the control; the pages then show the full model."""
    choice = st.sidebar.selectbox(
        "Model: M2 over", V.SUBSET_CHOICES, key="model_subset", format_func=V.subset_choice_label,
        persist_state="session",
        help="The anomaly map is M2 = the sum of y2_c over all components, or over the components a rule keeps "
             "(a subset model): drop the N components with the highest border / position score, keep the "
             "smallest-variance components holding P % of the variance (NPCA/OPCA). These read the train split "
             "only. oracle_best:K keeps the K best components by test AUROC: it reads test labels, an upper bound.")
    typed = ""
    if choice == V.TYPED_RULE:
        typed = st.sidebar.text_input(f"Rule ({V.RULE_HELP})", key="model_subset_typed", persist_state="session",
                                      placeholder="drop_border:3")
    try:
        subset = subset_of(layer, V.subset_rule(choice, typed))
    except (ValueError, KeyError, OSError) as e:
        st.sidebar.error("Model: M2 over: bad rule")
        st.error(f"{md_error(e)}. The pages show the full model (all components) meanwhile.")
        return None
    if subset is not None and subset.oracle:
        st.sidebar.warning(md(f"{subset.description}: an upper bound, not a model."))
    elif subset is not None:
        st.sidebar.caption(md(subset.description))
    return subset


def main() -> None:
    cfg = config()
    # the grid's selection, shared by the Components, Grid and Inspect pages
    init_state(grid_images="random:4", grid_seed=0, grid_components="best:4", grid_scale=SCALES[0],
               grid_m2=True, grid_show_image=True, grid_outline=True, grid_alpha=0.5,
               grid_fast=os.environ.get("MVGVIZ_FAST_GRID", "1") != "0")
    st.sidebar.title("mvgviz")
    page = st.sidebar.radio("Page", PAGES, key="page", bind="query-params")
    root, configured = choose_root(cfg)
    if root is None:
        return
    if configured and (V.needs_demo_data(root) or V.demo_running(registry(), root)):
        demo_panel(root)
        return
    try:
        cats = V.discover_categories(root, cfg.allowed)
    except (V.DataError, OSError) as e:
        st.error(md_error(e))
        return
    for _, why in cats.skipped:
        st.sidebar.warning(f"Skipped category {md(why)}")
    if not cats.names:
        st.error(md(V.no_category_message(root)))
        return
    category = st.sidebar.selectbox("Category", cats.names, key=f"category::{root}")
    backbones = list(BACKBONES)
    backbone = st.sidebar.selectbox("Backbone", backbones, index=backbones.index(DEFAULT_BACKBONE),
                                    key="backbone")
    ok, weights = choose_weights(cfg, backbone)
    if not ok:
        return
    key = V.ModelKey(str(root), category, backbone, str(cfg.cache), weights)
    if page == "Methods":  # needs no layer model: every method is run and read on its own
        jobs_box()
        st.sidebar.caption(f"cache `{cfg.cache}` | mvgviz {__version__}")
        try:
            page_methods(cfg, key)
        except (ValueError, KeyError, OSError) as e:  # e.g. a cache entry removed under the viewer
            st.error(f"{page}: {md_error(e)}")
        return
    # a typed folder (not a configured root) is never fitted by itself: it waits for the Fit button
    model = model_status(cfg, key, is_default=(configured and category == cats.names[0]
                                               and backbone == DEFAULT_BACKBONE and weights is None))
    if model is None:
        jobs_box()
        st.sidebar.caption(f"cache `{cfg.cache}` | mvgviz {__version__}")
        return
    names = list(model.layers)
    layer_name = st.sidebar.selectbox("Layer", names, index=names.index(V.best_layer(model)), key=f"layer::{backbone}",
                                      format_func=partial(V.layer_label, model))
    split = st.sidebar.radio("Split", SPLITS[::-1], key="split", horizontal=True)  # test first
    layer = model.layer(layer_name)
    subset = choose_subset(layer)
    st.sidebar.caption(f"weights {md(model.weights)}")
    jobs_box()
    st.sidebar.caption(f"cache `{cfg.cache}` | mvgviz {__version__}")
    if model.unlabelled:
        st.sidebar.info("Unlabelled data: " + md(model.data.label_note or "the test split has no labels")
                        + ". Metrics that need labels show as n/a; everything else works.")
    if not layer.has_ranking and str(st.session_state.get("grid_components", "")).startswith(("best", "worst")):
        st.session_state["grid_components"] = "0-3"  # no ranking without masks: the first components
    try:
        if page == "Overview":
            page_overview(model, layer, key.job_key(), subset, key)
        elif page == "Components":
            page_components(model, layer)
        elif page == "Grid":
            page_grid(model, layer, split, key.job_key(), subset)
        elif page == "Diagnostics":
            page_diagnostics(model, layer, key.job_key(), subset)
        else:
            page_inspect(model, layer, split, subset)
    except (ValueError, KeyError, OSError) as e:  # e.g. a cache entry removed under the viewer
        st.error(f"{page}: {md_error(e)}")


main()
