"""mvgviz: explain multivariate Gaussian anomaly-detection models on images.

The public API, imported lazily (PEP 562) so that ``import mvgviz`` and reading a warm cache
import no torch::

    import mvgviz
    model = mvgviz.fit("demo_data", "brick")            # or mvgviz.load(...): cache only, None if absent
    layer = model.layer("_blocks[10]")
    layer.metrics, layer.ranking()[:5], layer.y2("test", images=[0], components=[3])
    mvgviz.evaluate(scores, labels)                     # the metrics of any method
    mvgviz.export_figure(model, mvgviz.GridSpec(...), "fig.pdf")

Modules: data, backbones, features, featurepass (the cached feature pass), gaussian,
whitening, models (the method protocol and the methods), evaluation, metrics, ranking,
results (reading the cache), pipeline (orchestration), render, export, inspect, cache.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.4.0"

# public name -> module that defines it
_API = {
    "fit": "pipeline", "load": "pipeline", "fit_method": "pipeline", "load_method": "pipeline",
    "compare_category": "compare",
    "Model": "results", "LayerModel": "results", "MethodResult": "results",
    "load_category": "data", "Preprocessing": "data", "DataError": "data",
    "fit_gaussian": "gaussian", "Gaussian": "gaussian",
    "Whitener": "whitening", "ScaleStats": "whitening",
    "evaluate": "evaluation",
    "auroc": "metrics", "average_precision": "metrics", "aupro": "metrics", "pixel_metrics": "metrics",
    "upsample": "metrics",
    "component_aurocs": "ranking",
    "MVG": "models", "State": "models", "METHODS": "models", "build_method": "models",
    "GridSpec": "render", "grid_data": "render", "render_raster": "render", "render_figure": "render",
    "export_figure": "export",
    "decompose_pixel": "inspect",
    "Store": "cache",
    "make_demo_dataset": "demo",
}

__all__ = ["__version__", *sorted(_API)]


def __getattr__(name: str):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'mvgviz' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_API))


if TYPE_CHECKING:  # for static analysis and IDEs
    from .cache import Store
    from .compare import compare_category
    from .data import DataError, Preprocessing, load_category
    from .demo import make_demo_dataset
    from .evaluation import evaluate
    from .export import export_figure
    from .gaussian import Gaussian, fit_gaussian
    from .inspect import decompose_pixel
    from .metrics import aupro, auroc, average_precision, pixel_metrics, upsample
    from .models import METHODS, MVG, State, build_method
    from .pipeline import fit, fit_method, load, load_method
    from .ranking import component_aurocs
    from .render import GridSpec, grid_data, render_figure, render_raster
    from .results import LayerModel, MethodResult, Model
    from .whitening import ScaleStats, Whitener
