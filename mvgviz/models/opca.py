"""OPCA (Wang, Xu & Chen, seed ``001``): per-layer Gaussians on the least-variance principal components.

Per layer ``l``: the train images' feature maps averaged over positions (global average pooling, as
Gaussian-AD, :mod:`mvgviz.models.gaussian_ad`); PCA of these pooled vectors; keep the principal
components with the *smallest* variance that together explain ``fraction`` (0.05) of the variance
("OPCA", the opposite of PCA); a Gaussian (Ledoit-Wolf) of the pooled vectors in that subspace
(mean ``mu_l``, covariance ``Sigma_l``).

Scores:

- Image: ``S(x) = sum_l M_l(x)``, ``M_l`` the Mahalanobis distance of the image's pooled vector at
  layer l in the kept subspace. ``BatchScores.image_components`` (n, K): the whitened components of
  each layer's pooled vector, layers concatenated in ``layers`` order, ``state.meta["component_groups"]``
  = ``[[layer, k_l], ...]``; the squares of layer l's block add up to ``M_l(x)**2``.
- Pixels: at layer l, the same distance (same ``mu_l``, ``Sigma_l``, same kept components) of the
  feature vector at each position, an ``h_l x w_l`` map ``S_l``; each upsampled bilinear
  (:func:`mvgviz.metrics.upsample`) to the input's (H, W); the map is their unweighted mean over
  the layers.

Because the layers have different grids, ``BatchScores.maps`` are returned already at the input's
size, (n, H, W) with (H, W) the ``size`` given to :meth:`OPCA.scorer`; :meth:`OPCA.to_pixels` is the
identity on maps of that size (other sizes: a bilinear resize of the averaged map, which is not the
mean of the layers' maps upsampled to that size directly). There are no per-position components
(``has_components = False``): they live on different grids.

Definitions and defaults, with the seed's sentences behind them:

- Keep the smallest-variance components: "applying the opposite operation in the principal component
  analysis (PCA) by retaining those principal components with the least variance (i.e., those with
  the smallest eigenvalues)".
- ``fraction = 0.05``: "The default variance threshold of the OPCA approach is 0.05", "OPCA-0.05 means
  we retain principal components that account for 5% of the overall variance". The fewest such
  components reaching at least 5 % (a boundary hit exactly counts as reached; components with zero
  variance are never kept): :func:`mvgviz.models.imagelevel.kept_components`.
- PCA first, then the Gaussian: "reduce dimensionality based on Principal Components Analysis (PCA),
  then build the distribution of normal features via the multivariate Gaussian (MVG)".
- ``reg = "ledoit-wolf"``: "we use the empirical mean mu and estimate Sigma using shrinkage as proposed
  by Ledoit et al." (scikit-learn's estimator exactly, i.e. its biased covariance shrunk; the PCA
  uses METHOD.md's unbiased covariance, whose variance fractions are the same).
- Image score from pooled vectors, summed over layers: Eq. (4) "S(x_t) := sum_{l=1}^{L} M_l", each
  ``M_l`` a distance between "the intermediate outputs of each layer" and the layer's Gaussian; the
  spatial use comes separately ("Since intermediate features maintain spatial dimensions, we propose
  to apply Mahalanobis distance ... yielding a matrix S_l of size h_l x w_l"), so the image-level
  ``M_l`` is one vector per layer: the pooled one, as METHOD.md has it ("like Rippel").
- Distance, not its square: "Mahalanobis distance [15] is used", Eq. (3). (The seed's text of Eq. (3)
  shows no root, but its extraction drops radicals and signs, e.g. Eq. (1)'s exponent; METHOD.md's
  Rippel sums distances and Wang's method is "like Rippel".)
- The maps: "upsample the spatial anomaly scores of each layer using bilinear interpolation and denote
  their unweighted mean as the final anomaly score per pixel". The seed applies Eq. (3), i.e. the
  layer's one Gaussian, to the features at each position: the maps use the pooled Gaussian; no second
  Gaussian of the positions is fitted.
- ``layers``: every layer of the backbone: "We use different layers of ResNet-18 to extract features
  using a default setting of 0-3 layers (index from 0)" (all four). For EfficientNet-B4 the seed uses
  its levels 3-7 of 9; mvgviz's EfficientNet-Lite0 taps four blocks that do not map onto those, so all
  are used. Note the seed's finding that "shallow networks ... should use all features": on ResNet-18
  its OPCA did not help.

METHOD.md and the seed agree on this method (the lead's brief says METHOD.md wins on a difference;
none was found). Where the seed is silent, METHOD.md fills in: average pooling, the pseudo-inverse for
zero eigenvalues, bilinear with half-pixel centres (OpenCV's ``INTER_LINEAR``).

Memory: fit streams the train split one layer at a time (three passes per layer: PCA, then
Ledoit-Wolf's two), holding one batch of one layer's maps and float64 ``C x C`` sums. State per layer:
mean (C,), eigenvalues (k,), eigenvectors (C, k), PCA eigenvalues (C,), float64, at most
``8 C (C + 3)`` bytes (WideResNet-50-2: 11 MB). Scoring holds a batch's maps in float64 (n * h * w * C
* 8 bytes for the finest layer: 16 images of WideResNet-50-2's layer1, 103 MB) and the (n, H, W)
output; the maps a caller keeps are at the input's size, H * W * 4 bytes per image (224 x 224: 196 KiB),
not at feature resolution.

State arrays per layer i (:func:`mvgviz.models.imagelevel.levels_state`): ``mean_i``, ``eigvals_i``,
``eigvecs_i``, ``pca_eigvals_i``. Meta: ``layers``, ``component_groups``, ``fraction``, ``reg``,
``n_samples``, ``levels``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from .base import BatchScores, FeatureSource, State, check_layers, check_train_size
from .imagelevel import (PooledScorer, check_fraction, check_layer_names, fit_levels, layers_option, levels_state,
                         reject_unknown)

if TYPE_CHECKING:
    import torch

    from ..progress import Progress

DEFAULT_FRACTION = 0.05  # "The default variance threshold of the OPCA approach is 0.05"


@dataclass(frozen=True)
class OPCA:
    """Wang et al.'s OPCA: per-layer Gaussians on the smallest-variance principal components.

    Parameters
    ----------
    layers
        The layer names, a tuple (a list is accepted and stored as a tuple).
    fraction
        The kept components' share of the variance, in (0, 1] (0.05).
    reg
        The Gaussian's regulariser (:func:`mvgviz.gaussian.parse_reg`): ``"ledoit-wolf"`` (default),
        ``"none"`` or ``"ridge:EPS"``.
    """

    layers: tuple[str, ...]
    fraction: float = DEFAULT_FRACTION
    reg: str = "ledoit-wolf"

    name: ClassVar[str] = "opca"
    has_maps: ClassVar[bool] = True
    has_components: ClassVar[bool] = False  # per-layer components live on different grids
    ranks_components: ClassVar[bool] = False
    has_image_components: ClassVar[bool] = True

    def __post_init__(self) -> None:
        from ..gaussian import reg_tag
        object.__setattr__(self, "layers", check_layer_names(self.layers))
        object.__setattr__(self, "fraction", check_fraction(self.fraction, "fraction"))
        object.__setattr__(self, "reg", reg_tag(self.reg))  # a bad value: ParamError `reg`

    @classmethod
    def for_backbone(cls, spec, *, layers=None, fraction: float = DEFAULT_FRACTION,
                     reg: str = "ledoit-wolf", **unknown) -> "OPCA":
        """OPCA on ``spec`` (a BackboneSpec): every layer by default (the seed's ResNet-18 setting), or
        ``layers`` (a list, ``"a+b"`` or ``"a,b"``; kept in backbone order). An unknown option is a
        ParamError naming it."""
        reject_unknown(cls.name, unknown, ("layers", "fraction", "reg"))
        return cls(layers_option(spec, layers), fraction=fraction, reg=reg)

    @property
    def options(self) -> dict:
        return {"layers": list(self.layers), "fraction": float(self.fraction), "reg": self.reg}

    def check(self, features: FeatureSource) -> None:
        """The layers exist and the train split has the 2 images a covariance needs.

        The selection keeps at least one component whenever a layer's pooled features vary
        (``fraction`` > 0 is checked at construction); a layer with constant pooled features is a
        ParamError ``layers`` during :meth:`fit`.
        """
        check_layers(self.layers, features)
        check_train_size(2, features, "data", "OPCA's per-layer covariance")

    def fit(self, features: FeatureSource, *, device, batch_size: int = 16,
            progress: "Progress | None" = None) -> State:
        """PCA, selection and Gaussian per layer, streamed over the train split (three passes per layer)."""
        levels = fit_levels(features, self.layers, batch_size=batch_size, device=device, reg=self.reg,
                            keep="smallest", fraction=self.fraction)
        return levels_state(self.layers, levels, {"fraction": self.fraction})

    def scorer(self, state: State, device, *, size: tuple[int, int]):
        """``score(feats) -> BatchScores``: image scores (n,) float64 (the sum of the layers' pooled
        distances), ``image_components`` (n, K) float32 and ``maps`` (n, H, W) float32 at ``size``
        (the mean over layers of the upsampled distance maps)."""
        pooled = PooledScorer(state, device)
        size = (int(size[0]), int(size[1]))

        def score(feats: dict) -> BatchScores:
            dist, comps = pooled(feats)  # (n, L), (n, K) float64
            return BatchScores(image_scores=dist.sum(1), maps=self._maps(pooled, feats, size),
                               image_components=comps.float())

        return score

    @staticmethod
    def _maps(pooled: PooledScorer, feats: dict, size: tuple[int, int]) -> "torch.Tensor":
        """(n, H, W) float32: the mean over layers of each layer's distance map, upsampled bilinear."""
        import torch

        from ..metrics import upsample
        total = None
        with torch.no_grad():
            for layer, mu, wm in zip(pooled.layers, pooled.means, pooled.whiteners):
                x = feats[layer].to(pooled.device, torch.float64)  # (n, C, h, w)
                n, c, h, w = x.shape
                y = (x.permute(0, 2, 3, 1).reshape(-1, c) - mu) @ wm  # (n*h*w, k) whitened
                d = y.square().sum(1).sqrt().reshape(n, 1, h, w)  # (n, 1, h, w) distance map S_l
                up = upsample(d, size)  # (n, 1, H, W), float64
                total = up if total is None else total + up
        return (total / len(pooled.layers))[:, 0].float()

    def to_pixels(self, maps, size):
        """(n, k, h, w) -> (n, k, H, W). OPCA's maps are already at the input's size: the identity
        when ``(h, w) == size``; otherwise a bilinear resize (:func:`mvgviz.metrics.upsample`) of
        the averaged maps."""
        from ..metrics import upsample
        if tuple(maps.shape[-2:]) == (int(size[0]), int(size[1])):
            return maps
        return upsample(maps, size)


__all__ = ["DEFAULT_FRACTION", "OPCA"]
