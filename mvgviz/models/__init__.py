"""Anomaly-detection methods on one protocol (:mod:`mvgviz.models.base`), one module each.

- :class:`~mvgviz.models.mvg.MVG`: the paper's single Gaussian per layer (all positions pooled).
"""

from .base import BatchScores, FeatureSource, Method, State
from .mvg import MVG

METHODS = {MVG.name: MVG}

__all__ = ["BatchScores", "FeatureSource", "METHODS", "MVG", "Method", "State"]
