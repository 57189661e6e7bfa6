"""The paper's model: one multivariate Gaussian per layer, all positions pooled.

Bertoldo & Arrustico's simplified PaDiM (METHOD.md, "One Gaussian per layer"): the train feature
vectors of one layer, ``(N*h*w, C)``, give a mean and a covariance (streamed float64 sums,
optional regulariser); whitening ``Y = (X - mu) V diag(w^-1/2)`` (SciPy's PCA whitening) makes
the squared Mahalanobis map ``M2 = sum_c Y_c**2``. The explanation is exact: the components
``Y_c`` are returned with every map. Maps reach the pixels by bilinear upsampling
(:func:`mvgviz.metrics.upsample`); the image score is the maximum of the upsampled M2 map.

State arrays: ``mean`` (C,), ``eigvals`` (C,) ascending (floored to 0), ``eigvecs`` (C, C)
(column c = component c). State meta: ``floor``, ``n_samples``, ``reg``, ``shrinkage``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from .base import BatchScores, FeatureSource, State, check_layers

if TYPE_CHECKING:
    import torch

    from ..progress import Progress


@dataclass(frozen=True)
class MVG:
    """One Gaussian on one layer's pooled feature vectors.

    Parameters
    ----------
    layer
        The layer's name in its backbone (e.g. ``"layer3"``, ``"_blocks[10]"``).
    reg
        ``"none"`` (the paper), ``"ridge:EPS"`` or ``"ledoit-wolf"`` (see :mod:`mvgviz.gaussian`).
    """

    layer: str
    reg: str = "none"

    name: ClassVar[str] = "mvg"
    has_maps: ClassVar[bool] = True
    has_components: ClassVar[bool] = True
    ranks_components: ClassVar[bool] = True  # its maps reach the pixels by plain bilinear upsampling
    has_image_components: ClassVar[bool] = False

    @classmethod
    def for_backbone(cls, spec, *, layer: str | None = None, reg: str = "none") -> "MVG":
        """The paper's Gaussian on ``layer`` (default: the backbone's stride-16 layer, e.g. ``layer3``,
        ``_blocks[10]``: the level PaDiM's and SPADE's deepest layer sits at)."""
        from ..gaussian import reg_tag
        if layer is None:
            layer = next((l.name for l in spec.layers if l.stride == 16), spec.layers[-1].name)
        return cls(spec.layer(str(layer)).name, reg_tag(reg))

    def check(self, features: FeatureSource) -> None:
        check_layers(self.layers, features)

    @property
    def layers(self) -> tuple[str, ...]:
        return (self.layer,)

    @property
    def options(self) -> dict:
        from ..gaussian import reg_tag
        return {"layer": self.layer, "reg": reg_tag(self.reg)}

    def fit(self, features: FeatureSource, *, device, batch_size: int = 16,
            progress: "Progress | None" = None) -> State:
        from ..gaussian import fit_gaussian, maps_to_rows

        def batches():  # a fresh pass each call (Ledoit-Wolf makes two)
            for b in features.batches("train", self.layers, batch_size=batch_size, device=device):
                yield maps_to_rows(b[self.layer])  # (n*h*w, C)

        g = fit_gaussian(batches, reg=self.reg, device=device)
        return State(arrays={"mean": g.mean, "eigvals": g.eigvals, "eigvecs": g.eigvecs},
                     meta={"floor": g.floor, "n_samples": g.n_samples, "reg": g.reg,
                           "shrinkage": g.shrinkage, "n_zero_eigvals": int((g.eigvals == 0).sum())})

    def gaussian(self, state: State):
        """The fitted :class:`mvgviz.gaussian.Gaussian` from its state (no covariance kept)."""
        from ..gaussian import Gaussian
        eigvals, eigvecs = np.asarray(state.arrays["eigvals"]), np.asarray(state.arrays["eigvecs"])
        return Gaussian(mean=np.asarray(state.arrays["mean"]), cov=(eigvecs * eigvals) @ eigvecs.T,
                        eigvals=eigvals, eigvecs=eigvecs, floor=float(state.meta["floor"]),
                        n_samples=int(state.meta["n_samples"]), reg=state.meta["reg"],
                        shrinkage=float(state.meta.get("shrinkage", 0.0)))

    def scorer(self, state: State, device, *, size: tuple[int, int]):
        """``score(feats) -> BatchScores``; ``size``: the input's (H, W), for the image score."""
        from ..whitening import Whitener
        whitener = Whitener(self.gaussian(state), device)
        layer = self.layer

        def score(feats: dict) -> BatchScores:
            y, m2 = whitener.with_m2(feats[layer])  # (n, C, h, w), (n, h, w) summed in float64
            image_scores = self.to_pixels(m2[:, None], size).flatten(1).amax(1)  # (n,) max of upsampled M2
            return BatchScores(image_scores=image_scores, maps=m2, components=y)

        return score

    def to_pixels(self, maps, size):
        """(n, k, h, w) -> (n, k, H, W): bilinear, half-pixel centres (:func:`mvgviz.metrics.upsample`)."""
        from ..metrics import upsample
        return upsample(maps, size)
