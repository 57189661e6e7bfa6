"""SPADE (Cohen & Hoshen, as described in seed ``002``): nearest neighbours, images then pixels.

Image score (seed 002, 3.2.1): the test image's feature vector ``f_y`` is compared with the N train
images' by Euclidean distance; its score is the mean *squared* distance to its K nearest train
images, ``d(y) = 1/K sum_{x in N_K(f_y)} ||f_y - f_x||^2`` (K = 50: "the original paper uses K = 50
and kappa = 1"; by default capped at the train set's size when it has fewer than 50 images, the K
used recorded as the result's effective option; a K asked for that exceeds the train set is an
error). The image-level feature vector is one layer's map globally average-pooled over its
positions (``image_layer``, default the backbone's deepest layer here; see the notes).

Pixel map (seed 002, 3.3.1; METHOD.md "The neighbouring methods"): each position p of the test
image is represented by the concatenation of the first, second and third blocks' features (the
deeper maps nearest-upsampled to the first layer's grid, :func:`mvgviz.models.embedding.embed`,
the same embedding as PaDiM's, without a channel subset). Its gallery is the features *at the same
position* p of the K nearest train images, ``G = {F(x_1, p), ..., F(x_K, p)}``, and its score is the
mean squared distance to its kappa nearest gallery vectors,
``d(y, p) = 1/kappa sum_{x in N_kappa(F(y, p))} ||F(x, p) - F(y, p)||^2`` (kappa = 1). The map (at
feature resolution) reaches the pixels by bilinear upsampling (:func:`mvgviz.metrics.upsample`) and
the Gaussian blur of sigma = 4 ("A Gaussian filter with parameter sigma = 4 on the anomaly maps as
suggested in both the papers"; :func:`mvgviz.models.padim.blur`, SciPy's ``gaussian_filter``). The
image score is the pooled kNN score above, not the map's maximum.

Notes (where this module chooses):

- Squared distances, in both scores, as the seed's two formulas write them. METHOD.md ("The
  neighbouring methods") says "mean distance" without saying squared or plain; it is read as
  agreeing with the seed, whose formulas are taken as the definition. (Squared and plain give the
  same pixel ranking within a map when kappa = 1, but not the same image ranking when K > 1, nor the
  same blurred maps.) Otherwise METHOD.md and the seed agree on SPADE (K = 50, the same-position
  gallery among the K neighbours, blur sigma 4); had they differed, METHOD.md would have been
  followed here.
- Pooling: the seed does not say which image-level feature vector SPADE uses; the original SPADE
  globally average-pools the network's last convolutional block. Here that is the deepest layer the
  backbone specification offers: ``layer4`` (512) for ResNet-18, ``_blocks[15]`` (320) for
  EfficientNet-Lite0, but ``layer3`` (1024) for WideResNet-50-2, whose specification in mvgviz stops
  at ``layer3`` (the original's is ``layer4``'s 2048 channels).
- The gallery is the same position's features only (the seed's ``G`` and METHOD.md's wording). The
  original SPADE paper's gallery holds all positions of the K neighbours (alignment-free); that
  variant is not implemented.
- The pixel layers are concatenated into one embedding (seed 002, 3.1: "SPADE concatenates the
  features from the various blocks"), one distance over all channels, not one map per layer
  averaged.

Memory. The state is the train set itself: ``pooled`` (N, D) float32 and ``gallery`` (N, C, h, w)
float32. With 200 train images at 224x224: WideResNet-50-2 (C = 256 + 512 + 1024 = 1792 at 56x56,
D = 1024): gallery 200 x 1792 x 3136 x 4 B = 4.50 GB (22.5 MB per image), pooled 0.8 MB; ResNet-18
(C = 448): 1.12 GB; EfficientNet-Lite0, the demo backbone (C = 24 + 40 + 112 = 176 at 56x56,
D = 320): gallery 200 x 176 x 3136 x 4 B = 0.44 GB (2.2 MB per image), pooled 0.26 MB. It grows
linearly with the train set (PaDiM's does not). The fit streams the train split into these arrays
(host memory); the scorer moves both to its device. Per scored batch of n images, beyond the
batch's own features and embedding (n, C, h, w): the image kNN's differences are computed in
chunks of train images, and the pixel distances in chunks of (image, neighbour) pairs, each chunk
at most :data:`CHUNK_ELEMENTS` float32/float64 values (or one image's embedding, when that is
larger), plus the (n, K, h, w) float32 distances; so the batch size, not K or N, sets the rest.

State arrays: ``pooled`` (N, D), ``gallery`` (N, C, h, w); meta: grid (h, w), n_train,
image_layer, pixel_layers, embedding_channels (C), pooled_channels (D), k, kappa, distance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..conventions import ParamError
from .base import BatchScores, FeatureSource, State, check_layers, layer_list
from .embedding import embed
from .imagelevel import pool

if TYPE_CHECKING:
    import torch

    from ..progress import Progress

# the seed's K and kappa ("the original paper uses K = 50 and kappa = 1") and blur sigma
DEFAULT_K = 50
DEFAULT_KAPPA = 1
DEFAULT_SIGMA = 4.0

# elements per chunk of the scorer's temporary differences (2**25: 128 MiB of float32); only memory
# and speed depend on it, never the scores
CHUNK_ELEMENTS = 2 ** 25


def image_knn(query: "torch.Tensor", bank: "torch.Tensor", k: int, *,
              chunk: int = CHUNK_ELEMENTS) -> tuple["torch.Tensor", "torch.Tensor"]:
    """The k nearest rows of ``bank`` to each row of ``query``, by squared Euclidean distance.

    query: (n, D), bank: (N, D), k <= N. Returns (n, k) float64 squared distances, ascending, and
    (n, k) int64 indices into ``bank``. Differences are formed explicitly (no ``|a|^2 + |b|^2 - 2ab``
    cancellation), in float64, ``chunk`` elements at a time (rows of ``bank``).
    """
    import torch
    q = query.to(torch.float64)
    b = bank.to(device=q.device, dtype=torch.float64)
    n, d = q.shape
    step = max(1, chunk // max(1, n * d))
    d2 = torch.cat([(q[:, None, :] - b[None, i:i + step]).square_().sum(-1)  # (n, step)
                    for i in range(0, b.shape[0], step)], dim=1)                 # (n, N)
    vals, idx = torch.topk(d2, k, dim=1, largest=False, sorted=True)
    return vals, idx


def position_knn(emb: "torch.Tensor", gallery: "torch.Tensor", neighbours: "torch.Tensor", kappa: int, *,
                 chunk: int = CHUNK_ELEMENTS) -> "torch.Tensor":
    """The mean squared distance of each position to its kappa nearest gallery vectors at that position.

    emb: (n, C, h, w) test embeddings; gallery: (N, C, h, w) train embeddings; neighbours: (n, K)
    indices into the gallery (image i's K nearest train images); kappa <= K. Returns (n, h, w)
    float32: ``mean over the kappa smallest of ||gallery[neighbours[i, j], :, p] - emb[i, :, p]||^2``
    over j, at every position p. The (image, neighbour) pairs are gathered in chunks of at most
    ``chunk`` elements (or one image's embedding when that is larger).
    """
    import torch
    n, c, h, w = emb.shape
    kk = neighbours.shape[1]
    per = c * h * w                                  # elements of one gathered embedding
    imgs = max(1, min(n, chunk // per))              # images per chunk
    slots = max(1, min(kk, chunk // (imgs * per)))   # neighbours per chunk
    d2 = torch.empty((n, kk, h, w), dtype=torch.float32, device=emb.device)
    for i in range(0, n, imgs):
        e = emb[i:i + imgs, None].float()            # (m, 1, C, h, w)
        for j in range(0, kk, slots):
            g = gallery[neighbours[i:i + imgs, j:j + slots]]  # (m, s, C, h, w) gathered copy
            d2[i:i + imgs, j:j + slots] = g.sub_(e).square_().sum(2)  # (m, s, h, w)
    return d2.topk(kappa, dim=1, largest=False).values.mean(1)  # (n, h, w)


@dataclass(frozen=True)
class SPADE:
    """Image-level kNN on pooled features; per-position kNN among the K nearest train images.

    Parameters
    ----------
    image_layer
        The layer whose globally average-pooled features give the image-level kNN.
    pixel_layers
        One or more layers, finest first, concatenated on the first one's grid for the pixel map.
    k
        K, the number of nearest train images; None (default): 50, or the train set's size when it
        is smaller (:meth:`k_for`); a number larger than the train set is an error (:meth:`check`).
    kappa
        The number of nearest gallery vectors averaged at each position (1); at most ``k``.
    sigma
        The blur's sigma in input pixels (4).
    """

    image_layer: str
    pixel_layers: tuple[str, ...]
    k: int | None = None
    kappa: int = DEFAULT_KAPPA
    sigma: float = DEFAULT_SIGMA

    name: ClassVar[str] = "spade"
    has_maps: ClassVar[bool] = True
    has_components: ClassVar[bool] = False
    ranks_components: ClassVar[bool] = False
    has_image_components: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if not isinstance(self.image_layer, str) or not self.image_layer:
            raise ParamError("image_layer", f"must be a layer name, got {self.image_layer!r}")
        pixel = self.pixel_layers
        if isinstance(pixel, str) or not all(isinstance(l, str) and l for l in pixel) or len(pixel) < 1:
            raise ParamError("pixel_layers", f"must name at least one layer, finest first, got {pixel!r}")
        object.__setattr__(self, "pixel_layers", tuple(pixel))
        for param in ("k", "kappa"):
            v = getattr(self, param)
            if param == "k" and v is None:  # the seeds' 50, or the train set's size if smaller
                continue
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ParamError(param, f"must be a positive integer, got {v!r}")
        if self.kappa > (DEFAULT_K if self.k is None else self.k):
            raise ParamError("kappa", f"must be at most K = {DEFAULT_K if self.k is None else self.k} (the gallery at each position holds "
                                      f"the K nearest images' vectors), got {self.kappa}")
        if isinstance(self.sigma, bool) or not isinstance(self.sigma, (int, float, np.floating)) \
                or not (math.isfinite(self.sigma) and self.sigma > 0):
            raise ParamError("sigma", f"must be a finite number > 0, got {self.sigma!r}")

    @classmethod
    def for_backbone(cls, spec, *, image_layer: str | None = None, pixel_layers=None, k: int | None = None,
                     kappa: int = DEFAULT_KAPPA, sigma: float = DEFAULT_SIGMA) -> "SPADE":
        """The seed's SPADE on ``spec``: the image kNN on the deepest layer (or ``image_layer``), the
        pixel map on the first three layers (or ``pixel_layers``, finest first, a list or "a+b+c")."""
        image = spec.layers[-1] if image_layer is None else layer_list(spec, [image_layer], "image_layer")[0]
        if pixel_layers is None:
            chosen = spec.layers[:3]
            if len(chosen) < 3:
                raise ParamError("pixel_layers", f"SPADE needs three layers; backbone {spec.name!r} has "
                                                 f"{', '.join(l.name for l in spec.layers)}")
        else:
            chosen = layer_list(spec, pixel_layers, "pixel_layers")
        return cls(image.name, tuple(l.name for l in chosen), k=k, kappa=kappa, sigma=sigma)

    def check(self, features: FeatureSource) -> None:
        check_layers(self.pixel_layers, features, "pixel_layers")
        check_layers((self.image_layer,), features, "image_layer")
        n = features.n_images("train")
        if self.k is not None and self.k > n:
            raise ParamError("k", f"must be at most the train set's size: K = {self.k} nearest train images "
                                  f"were asked for, the train split has {n}")
        if self.kappa > self.k_for(n):
            raise ParamError("kappa", f"must be at most K = {self.k_for(n)} (the train split has {n} images), "
                                      f"got {self.kappa}")

    def k_for(self, n_train: int) -> int:
        """The K used with ``n_train`` train images: ``k``, or by default the seeds' 50 capped at
        the train set's size (recorded in the state: ``meta["effective_options"]``)."""
        return min(DEFAULT_K, n_train) if self.k is None else int(self.k)

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.pixel_layers + (self.image_layer,)))

    @property
    def options(self) -> dict:
        return {"image_layer": self.image_layer, "pixel_layers": list(self.pixel_layers),
                "k": None if self.k is None else int(self.k),
                "kappa": int(self.kappa), "sigma": float(self.sigma)}

    def embed(self, feats: dict) -> "torch.Tensor":
        """{layer: (n, C_l, h_l, w_l)} -> (n, C, h, w): the pixel layers on the first one's grid."""
        return embed(feats, self.pixel_layers)

    def fit(self, features: FeatureSource, *, device, batch_size: int = 16,
            progress: "Progress | None" = None) -> State:
        """Stream the train split into the state: pooled features and the embedding gallery."""
        from ..progress import Progress
        progress = progress or Progress()
        n = features.n_images("train")
        c = sum(features.feature_shape(l)[0] for l in self.pixel_layers)
        h, w = features.feature_shape(self.pixel_layers[0])[1:]
        d = features.feature_shape(self.image_layer)[0]
        pooled = np.empty((n, d), dtype=np.float32)
        gallery = np.empty((n, c, h, w), dtype=np.float32)
        i = 0
        with progress.task("spade gallery", total=n) as t:
            for b in features.batches("train", self.layers, batch_size=batch_size, device=device):
                e = self.embed(b)                                  # (m, C, h, w)
                m = e.shape[0]
                gallery[i:i + m] = e.float().cpu().numpy()
                pooled[i:i + m] = pool(b[self.image_layer]).cpu().numpy()  # (m, D)
                i += m
                t.update(m)
        if i != n:
            raise ValueError(f"the train split yielded {i} images, expected {n}")
        return State(arrays={"pooled": pooled, "gallery": gallery},
                     meta={"grid": [int(h), int(w)], "n_train": int(n), "image_layer": self.image_layer,
                           "pixel_layers": list(self.pixel_layers), "embedding_channels": int(c),
                           "pooled_channels": int(d), "k": self.k_for(n), "kappa": int(self.kappa),
                           "distance": "squared euclidean", "effective_options": {"k": self.k_for(n)}})

    def scorer(self, state: State, device, *, size: tuple[int, int]):
        """``score(feats) -> BatchScores``: the kNN image scores and the (n, h, w) pixel maps of a batch."""
        import torch
        bank = torch.as_tensor(np.asarray(state.arrays["pooled"]), dtype=torch.float64, device=device)  # (N, D)
        gallery = torch.as_tensor(np.asarray(state.arrays["gallery"]), dtype=torch.float32, device=device)
        n_train = gallery.shape[0]
        if self.k is not None and self.k > n_train:
            raise ParamError("k", f"must be at most the train set's size: K = {self.k}, the state holds "
                                  f"{n_train} train images")
        k = self.k_for(n_train)

        def score(feats: dict) -> BatchScores:
            e = self.embed(feats).to(device=gallery.device, dtype=torch.float32)  # (n, C, h, w)
            if e.shape[1:] != gallery.shape[1:]:
                raise ValueError(f"the embedding's shape {tuple(e.shape[1:])} differs from the fitted "
                                 f"gallery's {tuple(gallery.shape[1:])}")
            d2, idx = image_knn(pool(feats[self.image_layer]).float().to(bank.device), bank, k)  # float32 as stored
            maps = position_knn(e, gallery, idx, self.kappa)                                # (n, h, w)
            return BatchScores(image_scores=d2.mean(1), maps=maps)

        return score

    def to_pixels(self, maps, size):
        """(n, k, h, w) squared-distance maps -> (n, k, H, W): upsampled bilinear, then the Gaussian
        blur (``sigma``; :func:`mvgviz.models.padim.blur`)."""
        from ..metrics import upsample
        from .padim import blur
        return blur(upsample(maps, size), self.sigma)


__all__ = ["CHUNK_ELEMENTS", "SPADE", "image_knn", "pool", "position_knn"]
