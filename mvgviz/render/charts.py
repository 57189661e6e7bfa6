"""Publication figures of the Diagnostics views (matplotlib): the spectrum and the agreement map.

- :func:`spectrum_figure`: single-component pixel AUROC against eigenvalue (log axis), coloured by
  border score (issue 11's "spectrum": the components that NPCA/OPCA keep are on the left).
- :func:`agreement_figure_mpl`: one test image's M2 overlay beside its agreement map (how many
  components of a set exceed their train 99th percentile at each pixel), with the ground truth.

:func:`chart_manifest` describes either figure in JSON (model, layer, view, its parameters, the
mvgviz version), like the Grid's manifest. Nothing here imports pyplot or streamlit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import __version__
from .colours import CMAP, blend, heat_rgb

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..results import LayerModel, Model

CHARTS = ("spectrum", "agreement")


def _title(model: "Model", layer: "LayerModel") -> str:
    return f"{model.category} | {model.backbone} [{model.weights}] | layer {layer.name}"


def spectrum_figure(model: "Model", layer: "LayerModel", *, size: tuple[float, float] = (6.0, 3.6)) -> "Figure":
    """AUROC of every component against its eigenvalue (log x), colour = border score; components with
    a zero eigenvalue (floored) cannot sit on a log axis and are counted in the title."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=size, layout="constrained")
    ax = fig.add_subplot()
    w = np.asarray(layer.eigvals, dtype=np.float64)
    live = w > 0
    border = np.nan_to_num(layer.diagnostics.border_score, nan=1.0)
    if layer.has_ranking:
        auc = np.asarray(layer.component_auroc, dtype=np.float64)
        sc = ax.scatter(w[live], auc[live], c=border[live], cmap="viridis", s=12)
        full = layer.metrics["pixel_auroc"]
        if full is not None:
            ax.axhline(full, ls=":", color="#d9480f", lw=1, label=f"all components (M2): {full:.3f}")
            ax.legend(loc="lower left", fontsize=7, frameon=False)
        ax.axhline(0.5, color="#adb5bd", lw=0.8)
        ax.set_ylabel("single-component pixel AUROC")
        fig.colorbar(sc, ax=ax, label="border score")
    else:
        ax.text(0.5, 0.5, f"AUROC n/a: {layer.metrics_note or 'no ground-truth masks'}", ha="center", va="center",
                transform=ax.transAxes, fontsize=8, wrap=True)
        ax.set_yticks([])
    ax.set_xscale("log")
    ax.set_xlabel("eigenvalue (log)")
    dead = int((~live).sum())
    ax.set_title(_title(model, layer) + f"\nspectrum: {int(live.sum())} components"
                 + (f" ({dead} with eigenvalue 0 not shown)" if dead else ""), fontsize=8)
    return fig


def agreement_figure_mpl(model: "Model", layer: "LayerModel", image: int, components, *, rule: str = "",
                         alpha: float = 0.5, size: tuple[float, float] = (7.0, 3.6)) -> "Figure":
    """M2 overlay (0 .. p99 of M2 over the test split) beside the agreement map (0 .. number of
    components), the ground-truth outline on both."""
    from matplotlib.figure import Figure

    from ..agreement import agreement_map
    comps = np.asarray(components, dtype=np.int64)
    count = agreement_map(layer, "test", int(image), comps)                     # (S, S)
    m2 = layer.m2("test", [int(image)])                                         # (1, S, S)
    rgb = np.asarray(model.data.images("test")[int(image)])
    vmax = float(layer.stats("test").m2_p99)
    over = blend(rgb, heat_rgb(m2, np.array([max(vmax, 1e-12)]))[0], alpha)
    mask = np.asarray(model.data.masks("test")[int(image)])
    fig = Figure(figsize=size, layout="constrained")
    a0, a1 = fig.subplots(1, 2)
    a0.imshow(over, interpolation="none")
    a0.set_title(f"M2 (0 .. {vmax:.4g} = p99 of M2, test split)", fontsize=7)
    im = a1.imshow(count, cmap=CMAP, vmin=0, vmax=max(len(comps), 1), interpolation="none")
    a1.set_title(f"agreement: components above their train p99 ({rule or f'{len(comps)} components'})",
                 fontsize=7)
    fig.colorbar(im, ax=a1, shrink=0.8, label="components")
    for ax in (a0, a1):
        if mask.any():
            ax.contour(mask, levels=[0.5], colors="cyan", linewidths=0.8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(_title(model, layer) + f" | test image {int(image)} ({model.data.defect_types('test')[int(image)]})",
                 fontsize=8)
    return fig


def chart_manifest(model: "Model", layer: "LayerModel", view: str, **params) -> dict:
    """JSON-able description of a Diagnostics figure: what it shows and how to draw it again."""
    if view not in CHARTS:
        from ..conventions import ParamError
        raise ParamError("view", f"must be one of {', '.join(CHARTS)}, got {view!r}")
    return {"mvgviz_version": __version__, "view": view, "data_root": str(model.root),
            "category": model.category,
            "model": {"backbone": model.backbone, "weights": model.weights, "reg": model.reg,
                      "image_size": model.image_size, "storage": model.storage},
            "layer": layer.name, "metrics": layer.metrics,
            "params": {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in params.items()}}
