"""Anomaly-detection methods on one protocol (:mod:`mvgviz.models.base`), one module each.

- :class:`~mvgviz.models.mvg.MVG`: the paper's single Gaussian per layer (all positions pooled).
- :class:`~mvgviz.models.padim.PaDiM`: one Gaussian per position over concatenated, channel-subsampled
  embeddings (the model and its tests; not yet run by :func:`mvgviz.pipeline.fit` or a CLI command).
"""

from .base import BatchScores, FeatureSource, Method, State
from .mvg import MVG
from .padim import PaDiM

METHODS = {MVG.name: MVG, PaDiM.name: PaDiM}

__all__ = ["BatchScores", "FeatureSource", "METHODS", "MVG", "Method", "PaDiM", "State"]
