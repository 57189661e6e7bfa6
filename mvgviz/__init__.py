"""mvgviz: explain multivariate Gaussian anomaly-detection models on images."""

__version__ = "0.2.0"
