"""Figure export: publication figures of component grids, their manifests, and the CLI.

Command line (``mvgviz export --help``)::

    mvgviz export --data ROOT --category CAT --layer L [--split test|train]
                  [--images 0,5,9 | all | random:N] [--defect TYPE|any] [--seed S]
                  [--components best:3 | worst:3 | 12,40 | 3-7] [--subset drop_border:5 | npca:5 | ...]
                  [--scale per-component|cross-component] [--no-image] [--no-outline] [--no-m2]
                  [--dpi 200] --out FILE.(png|pdf|svg)   [model options: --backbone --weights --reg ...]
    mvgviz export --from-manifest FILE.png.json --out FILE.(png|pdf|svg) [--data ROOT] [--cache DIR]
    mvgviz export-all --data ROOT --out DIR [--categories a,b] [--layers A,B] [--components best:4]
                  [--images random:4] [--defect any] [--scale ...] [--format png|pdf|svg]

``export`` fits the model first when the cache lacks it (progress on stderr) and prints
the written paths on stdout. ``--components`` picks the grid's columns; ``--subset RULE``
picks the *model* of its last column: M2 restricted to the components the rule keeps
(``M2_S``, :mod:`mvgviz.variants`), labelled ``M2 [RULE]`` and scaled by the 99th percentile of
``M2_S`` over the split. In the ``--from-manifest`` form ``--data`` and
``--category`` are not required: the manifest names them (``--data`` overrides a data
root that moved, ``--cache`` chooses the cache folder).

Every figure ``FILE.EXT`` is written with its manifest ``FILE.EXT.json`` (the suffix is
appended, so a PNG and a PDF of one stem keep separate manifests). The manifest holds
everything needed to regenerate the figure: data root, dataset fingerprint, category,
backbone, weights tag, regulariser, preprocessing, layer, the :class:`GridSpec` (split,
image and component indices, scale, toggles, subset rule), image files and defect types, component
AUROCs and eigenvalues, the subset model's components, the colour-scale maxima used, the layer's
metrics and the mvgviz version. :func:`figure_from_manifest` re-fits or loads the model with those options and
re-renders the same figure (same maps, same maxima, same pixels for PNG).

PNGs are written at 200 dpi (``--dpi``, at least 200); PDF and SVG embed each panel as one
opaque S x S RGB image, unresampled (the blend of image and heatmap that the raster shows, so
every format shows the same colours), and keep the contours, colour-bar frames and text as
vector paths (the colour bars' gradients are embedded at 150 dpi).

``export-all`` writes ``DIR/<category>_<layer>.<format>`` (layer name reduced to letters
and digits, e.g. ``brick_blocks10.png``) and its manifest for every category (sub-folders
of ROOT with ``train/good``) and every layer, with a progress bar on stderr.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import secrets
import sys
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from . import __version__
from .conventions import ANY_DEFECT, ParamError, as_param_error, check_scale, check_split
from .render import GridSpec, grid_data, render_figure
from .selection import parse_components, parse_images

if TYPE_CHECKING:
    from .results import Model

FORMATS = ("png", "pdf", "svg")
MIN_PNG_DPI = 200
VECTOR_IMAGE_DPI = 150      # PDF/SVG: resolution of embedded images other than panels (colour bars)
MAX_ROWS = 32              # images per figure  } a figure is drawn whole, in memory: a 32 x 32 PNG
MAX_COLS = 32              # columns (+ M2)     } at 200 dpi peaks at about 2 GB; split larger grids
MAX_PNG_PIXELS = 120_000_000   # a 32 x 32 grid at 200 dpi is ~107 Mpx (Agg holds 4 bytes per pixel)
MANIFEST_KIND = "mvgviz-figure"
MANIFEST_SUFFIX = ".json"   # appended: FILE.png -> FILE.png.json


def manifest_path(out: str | Path) -> Path:
    """Where the manifest of figure ``out`` goes: ``out`` + ``.json``."""
    out = Path(out)
    return out.with_name(out.name + MANIFEST_SUFFIX)


def check_out(out: str | Path, arg: str = "--out") -> tuple[Path, str]:
    """Validate an output path; returns (path, format)."""
    p = Path(out)
    fmt = p.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"{arg} must end in .png, .pdf or .svg, got {str(out)!r}")
    if p.parent and not p.parent.exists():
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(f"{arg}: cannot create folder {str(p.parent)!r}: {e.strerror}") from e
    return p, fmt


def check_grid_size(spec: GridSpec) -> None:
    """A figure holds at most :data:`MAX_ROWS` images x :data:`MAX_COLS` columns
    (components, plus M2): it is drawn whole in memory (a CLI export of 34 x 113 took 8.7 GB
    and wrote a 420 MB PNG). ParamError naming ``images`` or ``components``, saying how to split."""
    n, m = len(spec.images), len(spec.components) + spec.show_m2
    for param, count, cap, what in (("images", n, MAX_ROWS, "images (rows)"),
                                    ("components", m, MAX_COLS, "columns (components" + (" + M2)" if spec.show_m2 else ")"))):
        if count > cap:
            parts = -(-count // cap)
            raise ParamError(param, f"asks for {count} {what}; a figure holds at most {MAX_ROWS} images x "
                                    f"{MAX_COLS} columns (it is drawn whole, in memory): split it into {parts} "
                                    f"exports of at most {cap} {param} each")


def check_pixels(fig, fmt: str, dpi: int) -> None:
    """A PNG holds at most :data:`MAX_PNG_PIXELS` pixels (the renderer holds them all);
    ParamError naming ``dpi`` with the largest dpi that fits."""
    if fmt != "png":
        return
    w_in, h_in = (float(v) for v in fig.get_size_inches())
    px = (w_in * dpi) * (h_in * dpi)
    if px > MAX_PNG_PIXELS:
        fit = int((MAX_PNG_PIXELS / (w_in * h_in)) ** 0.5)
        hint = (f"lower it to {fit}" if fit >= MIN_PNG_DPI else "split the grid") + ", or export PDF or SVG"
        raise ParamError("dpi", f"{dpi} makes a {round(w_in * dpi)} x {round(h_in * dpi)} px PNG "
                                f"({px / 1e6:.0f} Mpx); a PNG holds at most {MAX_PNG_PIXELS / 1e6:.0f} Mpx: {hint}")


def _weights_arg(model: "Model", weights: str | None) -> str | None:
    """The ``fit(weights=...)`` argument that reproduces ``model.weights`` (None if unknown)."""
    if weights is not None:
        return str(weights)
    if model.weights_arg is not None:  # what fit()/load() were given
        return model.weights_arg
    # the standard weights need no argument (None); a file the model does not know stays unknown
    return "random" if "RANDOM" in model.weights else None


# ---------------------------------------------------------------------------------------
# Manifest
# ---------------------------------------------------------------------------------------

def manifest(model: "Model", spec: GridSpec, *, weights: str | None = None, data=None) -> dict:
    """Everything needed to regenerate a figure of ``spec`` (JSON types only).

    Parameters
    ----------
    model
        The fitted model shown.
    spec
        The grid.
    weights
        The ``weights`` argument the model was fitted with, if the model does not know it
        (``Model.weights_arg`` is set by :func:`~mvgviz.pipeline.fit` and ``load``);
        ``"random"`` and the standard weights are recovered from the tag.
    data
        A :class:`~mvgviz.render.GridData` already built for ``spec`` (saves a read).

    Returns
    -------
    dict
        Keys: ``kind``, ``mvgviz_version``, ``created``, ``model`` (data root, dataset
        fingerprint, category, backbone, weights tag and argument, reg, preprocessing,
        device-independent cache key), ``layer`` (name, channels, feature size,
        metrics), ``spec`` (:meth:`GridSpec.to_dict`), ``images`` (index, file, defect
        type), ``components`` (index, eigenvalue, single-component AUROC), ``subset`` (None
        for the full model, else the M2 column's model: ``rule``, the ``components`` it keeps,
        ``oracle``), ``scale`` (mode, ``vmax`` per column, column labels, note), ``metrics``
        (the layer's full model's).
    """
    from .variants import subset_of
    d = data if data is not None else grid_data(model, spec)
    lm = model.layer(spec.layer)
    sub = subset_of(lm, spec.subset)
    files = model.data.files(spec.split)
    types = model.data.defect_types(spec.split)
    pre = model.preprocessing
    wtag = model.weights
    warg = _weights_arg(model, weights)
    return {
        "kind": MANIFEST_KIND,
        "mvgviz_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {
            "data": str(Path(model.root).resolve()),
            "dataset_fingerprint": lm.dataset_fingerprint,
            "category": model.category,
            "backbone": model.backbone,
            "weights": wtag,
            "weights_arg": warg,
            "weights_arg_known": warg is not None or wtag.startswith("imagenet:"),
            "reg": model.reg,
            "preprocessing": {"resize": pre.resize, "crop": pre.crop, "mean": list(pre.mean), "std": list(pre.std)},
            "cache_key": lm.cache_key,
        },
        "layer": {"name": lm.name, "channels": lm.channels, "feature_size": list(lm.feature_size)},
        "spec": spec.to_dict(),
        "images": [{"index": int(i), "file": files[i], "defect": types[i]} for i in spec.images],
        "components": [{"index": int(c), "eigenvalue": float(lm.eigvals[c]),
                        "auroc": float(lm.component_auroc[c])} for c in spec.components],
        "subset": None if sub is None else {"rule": sub.rule, "components": list(sub.components),
                                            "n_components": len(sub.components), "oracle": sub.oracle},
        "scale": {"mode": spec.scale, "split": spec.split, "vmax": [float(v) for v in d.vmax],
                  "columns": list(d.column_labels), "note": d.scale_note,
                  "m2_vmax": float(d.vmax[-1]) if spec.show_m2 else None},
        "metrics": {k: float(v) for k, v in lm.metrics.items()},
    }


def read_manifest(path: str | Path) -> dict:
    """Load and check a manifest (:func:`check_manifest`); ValueError naming the file and,
    for a bad value, the key (``model.reg``, ``scale.vmax``, ...)."""
    p = Path(path)
    try:
        man = json.loads(p.read_text())
    except OSError as e:
        raise ValueError(f"--from-manifest: cannot read {str(p)!r}: {e.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"--from-manifest: {str(p)!r} is not JSON ({e})") from None
    if not isinstance(man, dict) or man.get("kind") != MANIFEST_KIND:
        raise ValueError(f"--from-manifest: {str(p)!r} is not an mvgviz figure manifest "
                         f"(expected a JSON object with kind {MANIFEST_KIND!r})")
    for key in ("model", "spec", "scale"):
        if key not in man:
            raise ValueError(f"--from-manifest: {str(p)!r} lacks the key {key!r}")
    try:
        check_manifest(man)
    except ValueError as e:
        raise ValueError(f"--from-manifest: {str(p)!r}: {e}") from None
    return man


class _Bad(ValueError):
    """A bad manifest value; the message starts with its key path."""


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and bool(np.isfinite(v))


# key -> (required, check, what it must be); checks take the value
_STR = (lambda v: isinstance(v, str), "a string")
_OPT_STR = (lambda v: v is None or isinstance(v, str), "a string or null")
_BOOL = (lambda v: isinstance(v, bool), "true or false")
_DICT = (lambda v: isinstance(v, dict), "an object")
_LIST = (lambda v: isinstance(v, list), "a list")
_POS_INT = (lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0, "a positive integer")
_NUM3 = (lambda v: isinstance(v, list) and len(v) == 3 and all(_is_num(x) for x in v), "a list of 3 numbers")
_POS3 = (lambda v: _NUM3[0](v) and all(x > 0 for x in v), "a list of 3 positive numbers")
_OPT_POS = (lambda v: v is None or (_is_num(v) and v > 0), "a positive number or null")

_TOP = {"kind": (True, _STR), "mvgviz_version": (False, _STR), "created": (False, _STR),
        "model": (True, _DICT), "layer": (False, _DICT), "spec": (True, _DICT), "images": (False, _LIST),
        "components": (False, _LIST), "subset": (False, (lambda v: v is None or isinstance(v, dict),
                                                          "an object or null")),
        "scale": (True, _DICT), "metrics": (False, _DICT), "figure": (False, _DICT)}
_MODEL = {"data": (True, _STR), "dataset_fingerprint": (False, _STR), "category": (True, _STR),
          "backbone": (True, _STR), "weights": (True, _STR), "weights_arg": (False, _OPT_STR),
          "weights_arg_known": (False, _BOOL), "reg": (True, _STR), "preprocessing": (True, _DICT),
          "cache_key": (False, _STR)}
_PRE = {"resize": (True, _POS_INT), "crop": (True, _POS_INT), "mean": (True, _NUM3), "std": (True, _POS3)}
_SCALE = {"mode": (True, _STR), "split": (False, _STR), "vmax": (True, _LIST), "columns": (False, _LIST),
          "note": (False, _STR), "m2_vmax": (False, _OPT_POS)}
_FIGURE = {"file": (False, _STR), "format": (False, _STR), "dpi": (False, _POS_INT),
           "size_inches": (False, _LIST)}


def _check_keys(d: dict, schema: dict, where: str) -> None:
    unknown = sorted(set(d) - set(schema))
    if unknown:
        raise _Bad(f"unknown key {where}{unknown[0]!r} (expected {', '.join(schema)})")
    for key, (required, (ok, what)) in schema.items():
        if key not in d:
            if required:
                raise _Bad(f"missing key {where}{key!r}")
            continue
        if not ok(d[key]):
            raise _Bad(f"{where}{key} must be {what}, got {json.dumps(d[key])[:60]}")


def check_manifest(man: dict) -> None:
    """Check every section of a manifest that :func:`figure_from_manifest` reads, before
    any work: no unknown key, every key's JSON type, the grid spec, and ``scale.vmax`` (one
    finite positive maximum per column of the spec, the colour-scale mode of the spec).

    Raises
    ------
    ValueError
        One line naming the key: ``"model.reg must be a string, got 3"``,
        ``"unknown key model.'extra' (expected ...)"``.
    """
    _check_keys(man, _TOP, "")
    _check_keys(man["model"], _MODEL, "model.")
    _check_keys(man["model"]["preprocessing"], _PRE, "model.preprocessing.")
    pre = man["model"]["preprocessing"]
    if pre["crop"] > pre["resize"]:
        raise _Bad(f"model.preprocessing.crop must be <= resize ({pre['resize']}), got {pre['crop']}")
    try:
        spec = GridSpec.from_dict(man["spec"])
    except ValueError as e:
        raise _Bad(f"bad spec: {e}") from None
    _check_keys(man["scale"], _SCALE, "scale.")
    sc = man["scale"]
    if sc["mode"] != spec.scale:
        raise _Bad(f"scale.mode must be the spec's scale {spec.scale!r}, got {json.dumps(sc['mode'])}")
    n_cols = len(spec.components) + spec.show_m2
    vmax = sc["vmax"]
    if len(vmax) != n_cols or not all(_is_num(v) and v > 0 for v in vmax):
        raise _Bad(f"scale.vmax must be a list of {n_cols} positive numbers (one per column), "
                   f"got {json.dumps(vmax)[:60]}")
    if "figure" in man:
        fig = man["figure"]
        _check_keys(fig, _FIGURE, "figure.")
        if fig.get("format", "png") not in FORMATS:
            raise _Bad(f"figure.format must be one of {', '.join(FORMATS)}, got {json.dumps(fig['format'])}")
        if fig.get("format") == "png" and fig.get("dpi", MIN_PNG_DPI) < MIN_PNG_DPI:
            raise _Bad(f"figure.dpi must be >= {MIN_PNG_DPI} for a PNG, got {fig['dpi']}")


# ---------------------------------------------------------------------------------------
# Writing figures
# ---------------------------------------------------------------------------------------

def save_figure(fig, out: Path, fmt: str, *, dpi: int = MIN_PNG_DPI) -> int:
    """Save with reproducible metadata (no creation date in PDF/SVG); returns the dpi used.

    ``dpi`` applies to PNG (at least 200); PDF and SVG embed the panels unresampled and
    other images at ``VECTOR_IMAGE_DPI`` (text, contours and colour-bar frames stay vector).
    """
    if fmt == "png" and dpi < MIN_PNG_DPI:
        raise ValueError(f"--dpi must be >= {MIN_PNG_DPI} for PNG, got {dpi}")
    if fmt != "png":
        dpi = VECTOR_IMAGE_DPI
    meta = {"png": {"Software": f"mvgviz {__version__}"},
            "pdf": {"Creator": f"mvgviz {__version__}", "CreationDate": None},
            "svg": {"Creator": f"mvgviz {__version__}", "Date": None}}[fmt]
    import matplotlib
    with matplotlib.rc_context({"svg.hashsalt": "mvgviz", "pdf.compression": 6}):
        # zlib level 3: ~40% faster than matplotlib's default 6 on these noisy maps, ~12% larger
        extra = {"pil_kwargs": {"compress_level": 3}} if fmt == "png" else {}
        fig.savefig(out, format=fmt, dpi=dpi, metadata=meta, facecolor="white", **extra)
    return dpi


def export_figure(model: "Model", spec: GridSpec, out: str | Path, *, dpi: int = MIN_PNG_DPI,
                  weights: str | None = None) -> list[Path]:
    """Write the figure of ``spec`` to ``out`` and its manifest to ``out + ".json"``.

    Parameters
    ----------
    model, spec
        What to draw.
    out
        ``*.png`` (at ``dpi`` >= 200), ``*.pdf`` or ``*.svg``. Written atomically: the
        figure and its manifest go to temporary files in ``out``'s folder, renamed into
        place when both are complete (a full disk leaves no partial file behind).
    dpi
        PNG resolution (at least 200); PDF/SVG embed their images at ``VECTOR_IMAGE_DPI``.
    weights
        The model's weights argument when it was a file (recorded in the manifest).

    Returns
    -------
    list of Path
        ``[figure, manifest]``.

    Raises
    ------
    ValueError
        A grid over :data:`MAX_ROWS` x :data:`MAX_COLS` panels or a PNG over
        :data:`MAX_PNG_PIXELS` (checked before any rendering; the message says how to split).
    OSError
        The figure or manifest could not be written; one line naming the path.
    """
    out, fmt = check_out(out)
    check_grid_size(spec)
    data = grid_data(model, spec)
    fig = render_figure(data)
    check_pixels(fig, fmt, dpi)
    man = manifest(model, spec, weights=weights, data=data)
    mpath = manifest_path(out)
    tmp_fig, tmp_man = _temp_path(out), _temp_path(mpath)
    target = out
    try:
        dpi = save_figure(fig, tmp_fig, fmt, dpi=dpi)
        man["figure"] = {"file": out.name, "format": fmt, "dpi": int(dpi),
                         "size_inches": [float(v) for v in fig.get_size_inches()]}
        target = mpath
        with open(tmp_man, "w") as f:
            f.write(json.dumps(man, indent=1))
        target = out
        os.replace(tmp_fig, out)
        target = mpath
        os.replace(tmp_man, mpath)
    except OSError as e:
        raise OSError(f"cannot write {str(target)!r}: {e.strerror or e} (nothing left behind: the figure and its "
                      "manifest are written to temporary files and renamed into place)") from None
    finally:
        for t in (tmp_fig, tmp_man):
            t.unlink(missing_ok=True)
    return [out, mpath]


def _temp_path(path: Path) -> Path:
    """A fresh hidden name beside ``path`` (same folder, so ``os.replace`` is atomic)."""
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def figure_from_manifest(manifest_path: str | Path, out: str | Path, *, data=None, cache=None,
                         device: str = "auto", weights: str | None = None, progress=None,
                         dpi: int | None = None) -> list[Path]:
    """Regenerate a figure from its manifest.

    Loads (or re-fits, if the cache lacks it) the manifest's model with
    :func:`mvgviz.pipeline.fit` (its category, backbone, weights, regulariser,
    preprocessing, only the figure's layer) and renders the manifest's spec again.

    Parameters
    ----------
    manifest_path
        A ``*.json`` written by :func:`export_figure`.
    out
        New figure path (``.png``/``.pdf``/``.svg``; any of them, whatever the original).
    data
        Data root to use instead of the manifest's (moved data set).
    cache
        Cache folder (default: ``$MVGVIZ_CACHE`` or the repository's ``cache/``).
    device
        Fitting device when a re-fit is needed (speed only).
    weights
        Weights file for a model fitted with ``weights=PATH`` (the manifest keeps only
        its tag).
    progress
        A :class:`~mvgviz.progress.Progress` for the fit.
    dpi
        PNG resolution; default the manifest's (when it describes a PNG), else 200.

    Returns
    -------
    list of Path
        ``[figure, manifest]`` (the new manifest of the new figure).

    Warns
    -----
    UserWarning
        When the data set's fingerprint or the colour-scale maxima differ from the
        manifest's (the figure is then not identical).
    """
    from .data import Preprocessing
    from .pipeline import fit
    check_out(out)
    man = read_manifest(manifest_path)
    mm = man["model"]
    try:
        spec = GridSpec.from_dict(man["spec"])
    except (ValueError, TypeError) as e:
        raise ValueError(f"--from-manifest: bad spec in {str(manifest_path)!r}: {e}") from None
    check_grid_size(spec)
    warg = weights if weights is not None else mm.get("weights_arg")
    if warg is None and not str(mm.get("weights", "")).startswith("imagenet:"):
        raise ValueError(f"--from-manifest: the model was fitted with a weights file ({mm.get('weights')}); "
                         "give its path with --weights")
    pre = Preprocessing(**{k: tuple(v) if isinstance(v, list) else v for k, v in mm["preprocessing"].items()})
    root = data if data is not None else mm["data"]
    model = fit(root, mm["category"], backbone=mm["backbone"], layers=[spec.layer], weights=warg,
                reg=mm["reg"], device=device, cache=cache, preprocessing=pre, progress=progress)
    lm = model.layer(spec.layer)
    if mm.get("dataset_fingerprint") and lm.dataset_fingerprint != mm["dataset_fingerprint"]:
        warnings.warn(f"the data set under {str(root)!r} differs from the manifest's "
                      f"(fingerprint {lm.dataset_fingerprint} != {mm['dataset_fingerprint']}); "
                      "the figure will differ", stacklevel=2)
    if model.weights != mm.get("weights"):
        warnings.warn(f"weights tag {model.weights!r} differs from the manifest's {mm.get('weights')!r}",
                      stacklevel=2)
    if dpi is None:
        fig_info = man.get("figure", {})
        dpi = int(fig_info.get("dpi", MIN_PNG_DPI)) if fig_info.get("format") == "png" else MIN_PNG_DPI
    paths = export_figure(model, spec, out, dpi=dpi, weights=warg if warg not in (None, "random") else None)
    new = json.loads(paths[1].read_text())
    old_v, new_v = np.asarray(man["scale"]["vmax"], float), np.asarray(new["scale"]["vmax"], float)
    if old_v.shape != new_v.shape or not np.allclose(old_v, new_v, rtol=1e-6, atol=0):
        warnings.warn("colour-scale maxima differ from the manifest's: "
                      f"{old_v.tolist()} -> {new_v.tolist()}", stacklevel=2)
    old_s, new_s = man.get("subset"), new.get("subset")
    if isinstance(old_s, dict) and new_s is not None and old_s.get("components") != new_s["components"]:
        warnings.warn(f"the subset rule {new_s['rule']} now keeps other components than the manifest's "
                      f"({len(new_s['components'])} instead of {len(old_s.get('components') or [])})", stacklevel=2)
    return paths


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------

def _grid_args(p: argparse.ArgumentParser, *, images_default: str, components_default: str) -> None:
    p.add_argument("--split", default="test", help="test (default) or train")
    p.add_argument("--images", default=images_default,
                   help=f"image indices in the split, 0-based sorted MVTec order: 0,5,9 or 3-7, 'all', "
                        f"or random:N (seeded by --seed) (default: {images_default})")
    p.add_argument("--defect", default=None,
                   help=f"only images of this defect type (test split), or '{ANY_DEFECT}' for every non-good image")
    p.add_argument("--seed", type=int, default=0, help="seed of --images random:N (default 0)")
    p.add_argument("--components", default=components_default,
                   help=f"best:N (highest single-component AUROC first), worst:N, or indices 12,40 / 3-7 "
                        f"(0-based, ascending eigenvalue) (default: {components_default})")
    p.add_argument("--subset", default=None, metavar="RULE",
                   help="the model of the M2 column: M2 over the components a rule keeps (drop_border:N, "
                        "drop_position:N, npca:P; oracle_best:K reads test labels, an upper bound), labelled "
                        "'M2 [RULE]', on the scale 0..p99 of that M2 over the split (default: all components). "
                        "Not --components, which picks the grid's columns")
    p.add_argument("--scale", default="per-component",
                   help="per-component (default: each column 0..p99 of its y2_c) or cross-component "
                        "(one max for all components, p99 of all y2, so a row sums to M2)")
    p.add_argument("--no-image", action="store_true", help="heatmaps alone, no blend with the image")
    p.add_argument("--no-outline", action="store_true", help="no ground-truth contour")
    p.add_argument("--no-m2", action="store_true", help="no M2 column")
    p.add_argument("--alpha", type=float, default=0.5, help="heatmap weight of the blend (default 0.5, the paper's)")
    p.add_argument("--dpi", type=int, default=MIN_PNG_DPI, help=f"PNG resolution (default and minimum {MIN_PNG_DPI})")


def add_export_parsers(sub, model_args: Callable[..., None]) -> None:
    """Add ``export`` and ``export-all`` to the ``mvgviz`` subcommands."""
    p = sub.add_parser(
        "export", help="write a figure (PNG/PDF/SVG) of a component grid and its JSON manifest",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Two forms:\n"
            "  mvgviz export --data ROOT --category CAT --layer L [grid options] --out FILE.(png|pdf|svg)\n"
            "  mvgviz export --from-manifest FILE.png.json --out FILE.(png|pdf|svg) [--data ROOT] [--cache DIR]\n\n"
            "The first writes a figure of a grid (rows: images, columns: components, then M2, or with\n"
            "--subset RULE the M2 of a subset model), fitting\n"
            "the model first if the cache lacks it, and its manifest FILE.png.json (the figure's name\n"
            "plus .json). The second regenerates a figure from a manifest: the data root, category,\n"
            "model options and grid come from the manifest (--data overrides a data root that moved).\n"
            "Only --layer is fitted unless --layers names more. Written paths are printed on stdout."))
    model_args(p, required=())  # --from-manifest names them; checked in run_export
    p.add_argument("--layer", default=None, help="the layer to show (required unless --from-manifest)")
    _grid_args(p, images_default="0", components_default="best:4")
    p.add_argument("--from-manifest", default=None, metavar="JSON",
                   help="regenerate the figure described by this manifest (the other grid options are ignored)")
    p.add_argument("--out", required=True, help="output figure: *.png, *.pdf or *.svg")

    p = sub.add_parser(
        "export-all", help="one figure + manifest per (category, layer) of a data root",
        description="For every category of ROOT (folders with train/good) and every layer, write "
                    "DIR/<category>_<layer>.<format> (e.g. brick_blocks10.png) and its manifest "
                    "(.<format>.json). With --images random:N or all on the test split the images "
                    "are drawn from the defect images unless --defect says otherwise.")
    model_args(p, required=("data",), category=False)
    p.add_argument("--categories", default=None, help="comma-separated subset of the categories (default: all)")
    _grid_args(p, images_default="random:4", components_default="best:4")
    p.add_argument("--format", default="png", help="png (default), pdf or svg")
    p.add_argument("--out", required=True, help="output folder")


def _spec_from_args(args, model: "Model", layer: str) -> GridSpec:
    check_split(args.split)
    check_scale(args.scale)
    try:
        lm = model.layer(layer)
    except (KeyError, ValueError) as e:
        raise as_param_error(e, "layer") from None
    defect = args.defect
    if defect is not None and args.split == "train":
        raise ValueError("--defect applies to the test split only (train images are all good)")
    n = len(model.data.files(args.split))
    images = parse_images(args.images, n, defect_types=model.data.defect_types(args.split),
                          defect=defect, seed=args.seed)
    comps = parse_components(args.components, lm)
    subset = getattr(args, "subset", None)
    if subset is not None:
        from .variants import select
        select(lm, subset)                                                # ParamError naming --subset
    return GridSpec(layer=lm.name, split=args.split, images=images, components=comps, scale=args.scale,
                    show_m2=not args.no_m2, show_image=not args.no_image, outline=not args.no_outline,
                    alpha=args.alpha, subset=subset)


def _check_common(args) -> None:
    check_split(args.split)
    check_scale(args.scale)
    if not 0.0 <= args.alpha <= 1.0:
        raise ValueError(f"--alpha must be in [0, 1], got {args.alpha}")
    if args.dpi < MIN_PNG_DPI:
        raise ValueError(f"--dpi must be >= {MIN_PNG_DPI}, got {args.dpi}")
    if getattr(args, "subset", None) is not None:                          # its form, before any fit
        from .variants import canonical_rule
        canonical_rule(args.subset)
        if args.no_m2:
            raise ParamError("subset", ": the subset model is drawn in the M2 column, which --no-m2 removes")


def run_export(args, fit_from_args: Callable) -> int:
    """Run ``export`` or ``export-all``; prints written paths on stdout, returns 0."""
    if args.command == "export":
        return _run_export(args, fit_from_args)
    if args.command == "export-all":
        return _run_export_all(args, fit_from_args)
    raise ValueError(f"unknown export command {args.command!r}")


def _run_export(args, fit_from_args) -> int:
    if args.from_manifest:
        check_out(args.out)
        from .progress import TqdmProgress
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            paths = figure_from_manifest(args.from_manifest, args.out, data=args.data, cache=args.cache,
                                         device=args.device, weights=args.weights,
                                         progress=TqdmProgress(quiet=args.quiet))
        for w in caught:
            print(f"mvgviz: warning: {w.message}", file=sys.stderr)
        for p in paths:
            print(p)
        return 0
    missing = [o for o, v in (("--data", args.data), ("--category", args.category), ("--layer", args.layer)) if not v]
    if missing:
        raise ValueError(f"{', '.join(missing)} required (or give --from-manifest FILE.json)")
    _check_common(args)
    check_out(args.out)
    from .backbones import get_spec, parse_layers
    try:
        layer = get_spec(args.backbone).layer(args.layer).name      # validates before fitting
    except ValueError as e:
        raise as_param_error(e, "layer") from None
    args = copy.copy(args)
    chosen = [l.name for l in parse_layers(get_spec(args.backbone), args.layers)] if args.layers else []
    args.layers = ",".join(dict.fromkeys(chosen + [layer]))          # fit only what is shown (+ --layers)
    model = fit_from_args(args)
    spec = _spec_from_args(args, model, layer)
    for p in export_figure(model, spec, args.out, dpi=args.dpi, weights=_file_weights(args.weights)):
        print(p)
    return 0


def _file_weights(weights: str | None) -> str | None:
    return str(Path(weights).resolve()) if weights not in (None, "random") else None


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "", name) or "layer"


def _run_export_all(args, fit_from_args) -> int:
    from tqdm import tqdm

    from .backbones import get_spec, parse_layers
    from .data import list_categories
    _check_common(args)
    fmt = str(args.format).lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {args.format!r}")
    root = Path(args.data)
    found = list_categories(root)
    wanted = args.categories
    if wanted:
        cats = [c.strip() for c in wanted.split(",") if c.strip()]
        unknown = [c for c in cats if c not in found]
        if unknown:
            raise ValueError(f"--categories: unknown {', '.join(map(repr, unknown))} in {str(root)!r}; "
                             f"found {', '.join(found) or 'none'}")
    else:
        cats = found
    if not cats:
        raise ValueError(f"--data: no category (folder with train/good) under {str(root)!r}")
    layers = [l.name for l in parse_layers(get_spec(args.backbone), args.layers)]
    out_dir = Path(args.out)
    if out_dir.suffix.lower().lstrip(".") in FORMATS:
        raise ValueError(f"--out must be a folder for export-all, got {str(out_dir)!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    defect = args.defect
    if defect is None and args.split == "test" and args.images.strip().lower().startswith(("random:", "all")):
        defect = ANY_DEFECT  # by default show defect images
    bar = tqdm(total=len(cats) * len(layers), desc="export-all", unit="fig", file=sys.stderr,
               disable=args.quiet, dynamic_ncols=True)
    try:
        for cat in cats:
            a = copy.copy(args)
            a.category, a.layers, a.defect = cat, ",".join(layers), defect
            model = fit_from_args(a)
            for layer in layers:
                bar.set_postfix_str(f"{cat} {layer}", refresh=False)
                spec = _spec_from_args(a, model, layer)
                out = out_dir / f"{cat}_{_safe(layer)}.{fmt}"
                for p in export_figure(model, spec, out, dpi=args.dpi, weights=_file_weights(args.weights)):
                    tqdm.write(str(p), file=sys.stdout)
                bar.update(1)
    finally:
        bar.close()
    return 0
