"""The protocol every anomaly-detection method of mvgviz implements.

A *method* (one module per method in :mod:`mvgviz.models`) is fitted from streamed training
features and scores a split batch by batch. Orchestration (:mod:`mvgviz.pipeline`), evaluation
(:mod:`mvgviz.evaluation`) and storage (:mod:`mvgviz.results`, :mod:`mvgviz.cache`) are shared code
that knows no method by name.

The verbs (the same for every method):

- ``fit(features, *, device, progress) -> State``: read the train split of a
  :class:`FeatureSource` in batches (never all at once) and return the fitted state as named
  arrays plus a small JSON-able dict: what a cache or checkpoint holds, no pickled modules.
- ``scorer(state, device, size=(H, W)) -> Scorer``: the state made ready on a device; ``scorer(feats)``
  scores one batch, returning :class:`BatchScores`: image scores, a pixel map at feature
  resolution where the method has one, and where it can, its *explanation*: the whitened
  components whose squares add up to the map.
- ``to_pixels(maps, size)``: how the method brings feature-resolution maps (or squared
  components) to the input's pixels. This one definition serves the metrics, the component
  ranking and every display, so that what is shown is what was scored.
- ``check(features)``: raise a :class:`~mvgviz.conventions.ParamError` naming the option when
  the method cannot run on these features (e.g. SPADE's K larger than the train set), before
  any work.
- ``for_backbone(spec, **options)`` (class method): the method with the seeds' defaults for a
  backbone (:class:`mvgviz.backbones.BackboneSpec`); an unknown option, or a layer the backbone
  lacks, is a ParamError naming it.

Image-level Gaussians (Gaussian-AD, OPCA's image scores) explain an image's score by
``BatchScores.image_components``: (n, K) whitened components of the image's pooled features,
concatenated over groups (levels); ``state.meta["component_groups"]`` = ``[[group name, count], ...]``
in that order, and the squares of one group's components add up to that group's squared
Mahalanobis distance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Protocol

import numpy as np

if TYPE_CHECKING:
    import torch

    from ..progress import Progress


@dataclass(frozen=True)
class State:
    """A fitted method: named arrays (NumPy) and a JSON-able dict of scalars and lists."""

    arrays: dict[str, np.ndarray]
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class BatchScores:
    """Scores of a batch of ``n`` images (torch tensors on the scorer's device).

    image_scores: (n,) float; maps: (n, h, w) float32 at feature resolution, or None where the
    method has no pixel map; components: (n, C, h, w) float32 whitened components with
    ``sum_c components**2 == maps`` (up to float32 rounding), or None where the method cannot
    explain its map that way.
    """

    image_scores: "torch.Tensor"
    maps: "torch.Tensor | None" = None
    components: "torch.Tensor | None" = None
    image_components: "torch.Tensor | None" = None  # (n, K): see the module's docstring
    # (n, H, W): ``to_pixels(maps)`` when the scorer computed it anyway (e.g. for the image score);
    # the pipeline times it as part of predicting and does not compute it again for that
    pixels: "torch.Tensor | None" = None


class FeatureSource(Protocol):
    """Feature maps of a category's splits, read batch by batch (e.g. from the cache)."""

    layers: tuple[str, ...]

    def n_images(self, split: str) -> int: ...

    def feature_shape(self, layer: str) -> tuple[int, int, int]:
        """(C, h, w) of a layer's maps."""
        ...

    def batches(self, split: str, layers: tuple[str, ...], *, batch_size: int,
                device: "torch.device | str" = "cpu") -> Iterator[dict[str, "torch.Tensor"]]:
        """Yields ``{layer: (n, C, h, w) float32 tensor}`` on ``device``, images in index order."""
        ...


class Method(Protocol):
    """What :func:`mvgviz.pipeline.fit` needs of a method."""

    name: ClassVar[str]
    has_maps: ClassVar[bool]
    has_components: ClassVar[bool]
    # whether the single-component ranking engine (bilinear upsampling of y2_c) ranks its
    # components the way ``to_pixels`` shows them
    ranks_components: ClassVar[bool]
    # whether BatchScores.image_components is given (image-level Gaussians)
    has_image_components: ClassVar[bool]

    @classmethod
    def for_backbone(cls, spec, **options) -> "Method":
        """The method with the seeds' defaults for ``spec`` (a BackboneSpec), ``options`` overriding them."""
        ...

    def check(self, features: FeatureSource) -> None:
        """Raise a ParamError naming the option when the method cannot run on ``features``."""
        ...

    @property
    def layers(self) -> tuple[str, ...]:
        """The feature layers it reads."""
        ...

    @property
    def options(self) -> dict:
        """JSON-able options; part of the cache key."""
        ...

    def fit(self, features: FeatureSource, *, device: "torch.device", batch_size: int,
            progress: "Progress") -> State: ...

    def scorer(self, state: State, device: "torch.device", *, size: tuple[int, int]) -> Any:
        """A callable ``feats: dict[str, (n, C, h, w) tensor] -> BatchScores``; ``size`` is the
        input's (H, W)."""
        ...

    def to_pixels(self, maps: "torch.Tensor", size: tuple[int, int]) -> "torch.Tensor":
        """(n, k, h, w) feature-resolution maps -> (n, k, H, W) pixel maps."""
        ...


def check_layers(layers, features: FeatureSource, param: str = "layers") -> None:
    """A ParamError naming ``param`` when ``features`` lacks one of ``layers``."""
    from ..conventions import ParamError
    missing = [l for l in layers if l not in features.layers]
    if missing:
        raise ParamError(param, f"the features have no layer {', '.join(map(repr, missing))} "
                                f"(they have {', '.join(features.layers)})")


def check_train_size(n_needed: int, features: FeatureSource, param: str, what: str) -> None:
    """A ParamError naming ``param`` when the train split has fewer than ``n_needed`` images."""
    from ..conventions import ParamError
    n = features.n_images("train")
    if n < n_needed:
        raise ParamError(param, f"{what} needs at least {n_needed} train images, the train split has {n}")


def layer_list(spec, layers, param: str = "layers", *, finest_first: bool = True) -> tuple:
    """A layer-list option against a backbone ``spec``: a list, or one string ``"a+b"`` / ``"a,b"``
    (a scalar from the command line counts as a name) -> the layers' specs, in the order given.
    A ParamError naming ``param`` for an unknown name, a repeated layer, an empty list, or (with
    ``finest_first``) layers not ordered from the finest grid to the coarsest."""
    from ..conventions import ParamError
    if isinstance(layers, (list, tuple)):
        names = [str(n).strip() for n in layers]
    else:
        names = [n.strip() for n in str(layers).replace(",", "+").split("+")]
    names = [n for n in names if n]
    if not names:
        raise ParamError(param, f"must name at least one layer of {spec.name!r}, got {layers!r}")
    try:
        chosen = tuple(spec.layer(n) for n in names)
    except ParamError as e:
        raise ParamError(param, e.detail) from None
    if len({l.name for l in chosen}) < len(chosen):
        raise ParamError(param, f"names a layer twice: {', '.join(l.name for l in chosen)}")
    if finest_first and [l.stride for l in chosen] != sorted(l.stride for l in chosen):
        raise ParamError(param, f"must be finest first, got {', '.join(l.name for l in chosen)}")
    return chosen
