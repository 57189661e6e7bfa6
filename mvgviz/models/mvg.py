"""The paper's model: one multivariate Gaussian per layer, all positions pooled; and its
multi-layer combinations (:class:`MVGSum`: the sum of the layers' scores; :class:`MVGConcat`: one
Gaussian on the concatenated layers).

Bertoldo & Arrustico's simplified PaDiM (METHOD.md, "One Gaussian per layer"): the train feature
vectors of one layer, ``(N*h*w, C)``, give a mean and a covariance (streamed float64 sums,
optional regulariser); whitening ``Y = (X - mu) V diag(w^-1/2)`` (SciPy's PCA whitening) makes
the squared Mahalanobis map ``M2 = sum_c Y_c**2``. The explanation is exact: the components
``Y_c`` are returned with every map. Maps reach the pixels by bilinear upsampling
(:func:`mvgviz.metrics.upsample`); the image score is the maximum of the upsampled M2 map.

State arrays: ``mean`` (C,), ``eigvals`` (C,) ascending (floored to 0), ``eigvecs`` (C, C)
(column c = component c). State meta: ``floor``, ``n_samples``, ``reg``, ``shrinkage``.

Multi-layer (``mvg-sum``, ``mvg-concat``; the seeds' "multi-layer Gaussians"):

- :class:`MVGSum`: the paper's Gaussian fitted on each layer separately; the image score is the
  sum of the layers' image scores (each the max of its upsampled M2 map) and the pixel map the sum
  of the layers' upsampled M2 maps. Its maps are stored at the input's pixels (layers have
  different grids); the per-layer components are each layer's own (the Components page of that
  layer's ``mvg``).
- :class:`MVGConcat`: one Gaussian on the embedding of several layers (the deeper maps brought to
  the finest layer's grid by nearest upsampling and concatenated, :func:`mvgviz.models.embedding.embed`),
  all positions pooled: the paper's model on a wider feature vector, explained the same way (its
  components' squares add up to its M2 map).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from .base import BatchScores, FeatureSource, State, check_layers, check_train_size, layer_list

if TYPE_CHECKING:
    import torch

    from ..progress import Progress


class _PooledGaussian:
    """One Gaussian on pooled feature vectors of ``_input(feats)`` (n, C, h, w): fit, whiten, score."""

    reg: str
    has_maps: ClassVar[bool] = True
    has_components: ClassVar[bool] = True
    ranks_components: ClassVar[bool] = True  # its maps reach the pixels by plain bilinear upsampling
    has_image_components: ClassVar[bool] = False

    def _input(self, feats: dict) -> "torch.Tensor":
        raise NotImplementedError

    def fit(self, features: FeatureSource, *, device, batch_size: int = 16,
            progress: "Progress | None" = None) -> State:
        from ..gaussian import fit_gaussian, maps_to_rows

        def batches():  # a fresh pass each call (Ledoit-Wolf makes two)
            for b in features.batches("train", self.layers, batch_size=batch_size, device=device):
                yield maps_to_rows(self._input(b))  # (n*h*w, C)

        g = fit_gaussian(batches, reg=self.reg, device=device)
        return State(arrays={"mean": g.mean, "eigvals": g.eigvals, "eigvecs": g.eigvecs},
                     meta={"floor": g.floor, "n_samples": g.n_samples, "reg": g.reg,
                           "shrinkage": g.shrinkage, "n_zero_eigvals": int((g.eigvals == 0).sum())})

    def gaussian(self, state: State):
        """The fitted :class:`mvgviz.gaussian.Gaussian` from its state (no covariance kept)."""
        return _gaussian(state.arrays, state.meta)

    def scorer(self, state: State, device, *, size: tuple[int, int]):
        """``score(feats) -> BatchScores``; ``size``: the input's (H, W), for the image score."""
        from ..whitening import Whitener
        whitener = Whitener(self.gaussian(state), device)

        def score(feats: dict) -> BatchScores:
            y, m2 = whitener.with_m2(self._input(feats))  # (n, C, h, w), (n, h, w) summed in float64
            pixels = self.to_pixels(m2[:, None], size)[:, 0]  # (n, H, W) the scored map
            return BatchScores(image_scores=pixels.flatten(1).amax(1), maps=m2, components=y, pixels=pixels)

        return score

    def to_pixels(self, maps, size):
        """(n, k, h, w) -> (n, k, H, W): bilinear, half-pixel centres (:func:`mvgviz.metrics.upsample`)."""
        from ..metrics import upsample
        return upsample(maps, size)


def _gaussian(arrays: dict, meta: dict, prefix: str = ""):
    from ..gaussian import Gaussian
    eigvals, eigvecs = np.asarray(arrays[prefix + "eigvals"]), np.asarray(arrays[prefix + "eigvecs"])
    return Gaussian(mean=np.asarray(arrays[prefix + "mean"]), cov=(eigvecs * eigvals) @ eigvecs.T,
                    eigvals=eigvals, eigvecs=eigvecs, floor=float(meta["floor"]),
                    n_samples=int(meta["n_samples"]), reg=meta["reg"],
                    shrinkage=float(meta.get("shrinkage", 0.0)))


def _layer_names(spec, layers, default) -> tuple[str, ...]:
    """``layers`` (a list or "a+b") as the backbone's names, finest first; ``default`` when None."""
    from ..conventions import ParamError
    chosen = default if layers is None else layer_list(spec, layers)
    if len(chosen) < 2:
        raise ParamError("layers", f"a multi-layer Gaussian needs at least two layers, got "
                                   f"{', '.join(l.name for l in chosen) or 'none'}")
    return tuple(l.name for l in chosen)


@dataclass(frozen=True)
class MVG(_PooledGaussian):
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

    def _input(self, feats: dict):
        return feats[self.layer]


class _MultiLayer:
    """What the multi-layer Gaussians share: the ``layers_`` and ``reg`` options and their check."""

    layers_: tuple[str, ...]
    reg: str

    def check(self, features: FeatureSource) -> None:
        check_layers(self.layers, features)
        check_train_size(1, features, "data", "a Gaussian")

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(self.layers_)

    @property
    def options(self) -> dict:
        from ..gaussian import reg_tag
        return {"layers": list(self.layers_), "reg": reg_tag(self.reg)}


@dataclass(frozen=True)
class MVGConcat(_MultiLayer, _PooledGaussian):
    """One Gaussian on the concatenated embedding of ``layers_`` (finest first), all positions pooled."""

    layers_: tuple[str, ...]
    reg: str = "none"

    name: ClassVar[str] = "mvg-concat"

    @classmethod
    def for_backbone(cls, spec, *, layers=None, reg: str = "none") -> "MVGConcat":
        """Default: the backbone's first three layers (PaDiM's embedding, without its channel subset)."""
        from ..gaussian import reg_tag
        return cls(_layer_names(spec, layers, spec.layers[:3]), reg_tag(reg))

    def _input(self, feats: dict):
        from .embedding import embed
        return embed(feats, self.layers_)


@dataclass(frozen=True)
class MVGSum(_MultiLayer):
    """The paper's Gaussian on each of ``layers_``; scores and maps summed over the layers."""

    layers_: tuple[str, ...]
    reg: str = "none"

    name: ClassVar[str] = "mvg-sum"
    has_maps: ClassVar[bool] = True
    has_components: ClassVar[bool] = False  # per-layer components live on different grids
    ranks_components: ClassVar[bool] = False
    has_image_components: ClassVar[bool] = False

    @classmethod
    def for_backbone(cls, spec, *, layers=None, reg: str = "none") -> "MVGSum":
        """Default: every layer of the backbone."""
        from ..gaussian import reg_tag
        return cls(_layer_names(spec, layers, spec.layers), reg_tag(reg))

    def fit(self, features: FeatureSource, *, device, batch_size: int = 16,
            progress: "Progress | None" = None) -> State:
        arrays, metas = {}, []
        for i, layer in enumerate(self.layers_):
            st = MVG(layer, self.reg).fit(features, device=device, batch_size=batch_size, progress=progress)
            arrays.update({f"l{i}_{k}": v for k, v in st.arrays.items()})
            metas.append(st.meta)
        return State(arrays=arrays, meta={"layers": metas})

    def scorer(self, state: State, device, *, size: tuple[int, int]):
        """``score(feats) -> BatchScores``: maps at the input's pixels (the sum of the upsampled M2)."""
        import torch

        from ..metrics import upsample
        from ..whitening import Whitener
        whiteners = [Whitener(_gaussian(state.arrays, state.meta["layers"][i], f"l{i}_"), device)
                     for i in range(len(self.layers_))]

        def score(feats: dict) -> BatchScores:
            total, image = None, None
            for layer, wh in zip(self.layers_, whiteners):
                _, m2 = wh.with_m2(feats[layer])
                px = upsample(m2[:, None], size)[:, 0]                  # (n, H, W) this layer's scored map
                total = px if total is None else total + px
                s = px.flatten(1).amax(1).double()                       # this layer's image score
                image = s if image is None else image + s
            total = total.to(torch.float32)
            return BatchScores(image_scores=image, maps=total, pixels=total)

        return score

    def to_pixels(self, maps, size):
        """The maps are stored at the input's pixels: unchanged (other sizes: bilinear)."""
        from ..metrics import upsample
        return maps if tuple(maps.shape[-2:]) == tuple(size) else upsample(maps, size)
