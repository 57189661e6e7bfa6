"""mvgviz: explain multivariate Gaussian anomaly-detection models on images."""

__version__ = "0.1.0"
