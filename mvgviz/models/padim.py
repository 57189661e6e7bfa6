"""PaDiM (Defard et al., seeds ``004``/``002``): one Gaussian per feature position.

Embeddings: the backbone's first three layers, the deeper maps brought to the first layer's grid by
nearest-neighbour upsampling (PaDiM's block repetition for integer factors), concatenated, then a
fixed random subset of ``n_channels`` channels (seeded; 100 of 448 for ResNet-18, 550 of 1792 for
WideResNet-50-2, and 100/448 of the total for other backbones). At each of the P = h*w positions, a
Gaussian over the N train images' embeddings at that position, ``Sigma_ij + eps I`` (``eps`` = 0.01),
fitted with the streamed float64 sums of :class:`mvgviz.gaussian.GaussianAccumulator` (leading dimension P).

Scores: with ``Sigma_ij + eps I = L L^T`` (batched Cholesky), the components of a position's
embedding ``x`` are ``y = L^-1 (x - mu)`` (a batched triangular solve: no explicit inverse, no
per-position Python loop), and the map holds ``M2 = ||y||^2``, the squared Mahalanobis distance.
They reach the pixels as PaDiM's score: the distance ``sqrt(M2)``, upsampled bilinear and blurred
with ``sigma`` = 4 (SciPy's ``gaussian_filter``: truncate 4, mirror-symmetric borders); image
score = the maximum of that map.

The explanation: ``y`` is the Cholesky (sequential) whitening of the position's embedding: ``y_c``
is the c-th kept channel's (embedding channel ``channels[c]``) standardised residual given the channels before it in the subset's
order, and the squares add up to M2 exactly. Unlike the paper's PCA whitening (one Gaussian per
layer, components ordered by variance), PaDiM has one Gaussian per position, so PCA components
would be different directions at every position; the Cholesky components are tied to the same
embedding channels everywhere, which makes per-component maps comparable across positions (and
costs a Cholesky instead of an eigendecomposition: 10x less time).

Memory: the fit streams the train split once into float64 sums: (P, d, d) of them, added in
place (no temporary of that size); the Cholesky factors are taken over chunks of positions and
kept in float32, the state the scorer uses as it is (no second copy). Peak, beyond one batch of
features: ``P d^2 (8 + 4)`` bytes. WideResNet-50-2 at 224 (P = 3136, d = 550): 7.6 GB of sums +
3.8 GB of factors = 11.4 GB, on a 24 GiB machine 12 GiB to spare (measured: BENCHMARKS.md);
ResNet-18 (d = 100): 0.38 GB; EfficientNet-Lite0 (d = 39): 57 MB. Scoring holds the factors
(3.8 GB for WideResNet-50-2) and one batch. Scoring centres the embeddings in float32 (the
float64 mean rounded once), solves in float32 and sums each map's squared components in float64
(relative error ~1e-5 against float64, tested; far below any metric's resolution). The fit gathers
the embeddings of several batches (at most ``GROUP_BYTES``, positions first, float64) before each
update of the sums: P small products run faster with more samples each.

State arrays: ``mean`` (P, d) float64, ``cholesky`` (P, d, d) float32 lower-triangular factors
of ``Sigma_ij + eps I``, ``channels`` (d,) the chosen embedding channels; meta: grid, n_samples,
reg, embedding_channels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..conventions import ParamError
from .base import BatchScores, FeatureSource, State, check_layers, check_train_size, layer_list
from .embedding import embed

if TYPE_CHECKING:
    import torch

    from ..progress import Progress

# the most memory the fit holds for gathered embeddings (positions first, float64)
GROUP_BYTES = 128 * 2**20

# the seeds' channel counts of the embedding subset
PAPER_CHANNELS = {"resnet18": 100, "wide_resnet50_2": 550}


def default_channels(backbone: str, total: int) -> int:
    """The seeds' subset size: 100 for ResNet-18, 550 for WideResNet-50-2, else 100/448 of ``total``."""
    return min(total, PAPER_CHANNELS.get(backbone, max(1, round(total * 100 / 448))))


def gaussian_kernel(sigma: float) -> np.ndarray:
    """SciPy's 1-D Gaussian of ``gaussian_filter`` (truncate 4): radius ``int(4 sigma + 0.5)``, sum 1."""
    r = int(4.0 * sigma + 0.5)
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def blur(maps: "torch.Tensor", sigma: float, *, engine: str = "auto") -> "torch.Tensor":
    """(n, k, H, W) -> the same, blurred like ``scipy.ndimage.gaussian_filter(..., sigma, mode="reflect")``
    on each map (separable, mirror-symmetric borders that repeat the edge pixel).

    On the CPU (float32/float64 maps wider than the kernel's radius) OpenCV's ``sepFilter2D`` with
    ``BORDER_REFLECT`` (the same border), about 20x faster than a 1-channel torch convolution;
    elsewhere (CUDA, maps smaller than the radius) torch convolutions. Both equal SciPy's to float
    rounding (tested). ``engine="torch"`` forces the torch convolutions."""
    import torch
    import torch.nn.functional as F
    n, k, h, w = maps.shape
    kern64 = gaussian_kernel(sigma)
    r = (kern64.size - 1) // 2
    if engine == "auto" and maps.device.type == "cpu" and maps.dtype in (torch.float32, torch.float64) \
            and r < min(h, w):
        import cv2
        src = maps.detach().contiguous().numpy().reshape(n * k, h, w)
        out = np.empty_like(src)
        kern = kern64.astype(src.dtype)
        for i in range(n * k):
            cv2.sepFilter2D(src[i], -1, kern, kern, dst=out[i], borderType=cv2.BORDER_REFLECT)
        return torch.from_numpy(out.reshape(n, k, h, w))
    kern = torch.as_tensor(kern64, dtype=maps.dtype, device=maps.device)
    x = maps.reshape(n * k, 1, h, w)

    def pad(t, dim):  # scipy's "reflect": d c b a | a b c d | d c b a (also when r exceeds the size)
        size = t.shape[dim]
        idx = torch.arange(-r, size + r, device=t.device)
        period = 2 * size
        idx = torch.remainder(idx, period)
        idx = torch.where(idx >= size, period - 1 - idx, idx)
        return t.index_select(dim, idx)

    x = F.conv2d(pad(x, 2), kern.view(1, 1, -1, 1))  # rows
    x = F.conv2d(pad(x, 3), kern.view(1, 1, 1, -1))  # columns
    return x.reshape(n, k, h, w)


@dataclass(frozen=True)
class PaDiM:
    """Per-position Gaussians over concatenated, channel-subsampled embeddings.

    Parameters
    ----------
    layers
        One or more layer names of the backbone, finest first: the first sets the grid (the seeds
        use the first three, see :meth:`for_backbone`).
    channels
        The number of embedding channels kept (random, seeded), e.g. :func:`default_channels`.
    seed, eps, sigma
        The subset's seed, the ridge ``eps`` (0.01) and the blur's ``sigma`` (4, in input pixels).
    """

    layers_: tuple[str, ...]
    channels: int
    seed: int = 0
    eps: float = 0.01
    sigma: float = 4.0

    name: ClassVar[str] = "padim"
    has_maps: ClassVar[bool] = True
    has_components: ClassVar[bool] = True
    # the single-component ranking engine upsamples bilinearly without PaDiM's blur: not used here
    ranks_components: ClassVar[bool] = False
    has_image_components: ClassVar[bool] = False

    @classmethod
    def for_backbone(cls, spec, *, layers=None, channels: int | None = None, seed: int = 0, eps: float = 0.01,
                     sigma: float = 4.0) -> "PaDiM":
        """The seeds' PaDiM on ``spec``: its first three layers (or ``layers``, finest first) and the
        seeds' subset size (or ``channels``)."""
        if layers is None:
            chosen = spec.layers[:3]
            if len(chosen) < 3:
                raise ParamError("layers", f"PaDiM needs three layers; backbone {spec.name!r} has "
                                           f"{', '.join(l.name for l in spec.layers)}")
        else:
            chosen = layer_list(spec, layers)
        total = sum(l.channels for l in chosen)
        if channels is None:
            channels = default_channels(spec.name, total)
        return cls(tuple(l.name for l in chosen), channels, seed=seed, eps=eps, sigma=sigma)

    def check(self, features: FeatureSource) -> None:
        check_layers(self.layers, features)
        total = sum(features.feature_shape(l)[0] for l in self.layers_)
        if self.channels > total:
            raise ParamError("channels", f"must be at most the embedding's {total} channels, got {self.channels}")
        check_train_size(2, features, "data", "PaDiM's per-position covariance")

    def __post_init__(self) -> None:
        if len(self.layers_) < 1:
            raise ParamError("layers", "must name at least one layer, finest first")
        if isinstance(self.channels, bool) or not isinstance(self.channels, (int, np.integer)) or self.channels < 1:
            raise ParamError("channels", f"must be a positive integer, got {self.channels!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ParamError("seed", f"must be an integer >= 0 (the channel subset's seed), got {self.seed!r}")
        for name, what in (("eps", "the ridge that makes each Sigma_ij invertible"), ("sigma", "the blur's")):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                    or not (np.isfinite(v) and v > 0):
                raise ParamError(name, f"must be a finite number > 0 ({what}), got {v!r}")

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(self.layers_)

    @property
    def options(self) -> dict:
        return {"layers": list(self.layers_), "channels": int(self.channels), "seed": int(self.seed),
                "eps": float(self.eps), "sigma": float(self.sigma)}

    def channel_subset(self, total: int) -> np.ndarray:
        """(d,) sorted indices of the kept embedding channels (seeded; the same for every call)."""
        if self.channels > total:
            raise ParamError("channels", f"must be at most the embedding's {total} channels, got {self.channels}")
        rng = np.random.default_rng(self.seed)
        return np.sort(rng.choice(total, size=self.channels, replace=False))

    def embed(self, feats: dict, idx: "torch.Tensor | None" = None) -> "torch.Tensor":
        """{layer: (n, C_l, h_l, w_l)} -> (n, C, h, w) on the first layer's grid (``idx``: channels kept);
        :func:`mvgviz.models.embedding.embed`."""
        return embed(feats, self.layers_, idx)

    def fit(self, features: FeatureSource, *, device, batch_size: int = 16,
            progress: "Progress | None" = None) -> State:
        import torch

        from ..gaussian import FitError, GaussianAccumulator, reg_tag
        total = sum(features.feature_shape(l)[0] for l in self.layers_)
        h, w = features.feature_shape(self.layers_[0])[1:]
        keep = self.channel_subset(total)
        idx = torch.as_tensor(keep, device=device)
        d, p = len(keep), h * w
        acc = GaussianAccumulator(d, device)
        # the embeddings of several batches are gathered (positions first, float64) before each update:
        # P products of (d, m) x (m, d) run faster for m of 32 and more; at most GROUP_BYTES are held
        group = max(1, min(features.n_images("train"), GROUP_BYTES // (p * d * 8)))
        buf = torch.empty((h, w, group, d), dtype=torch.float64, device=device)
        filled = 0
        for b in features.batches("train", self.layers, batch_size=batch_size, device=device):
            e = self.embed(b, idx)  # (n, d, h, w)
            i, n = 0, e.shape[0]
            while i < n:
                m = min(n - i, group - filled)
                buf[:, :, filled:filled + m].copy_(e[i:i + m].permute(2, 3, 0, 1))  # layout and dtype in one pass
                filled, i = filled + m, i + m
                if filled == group:
                    acc.update(buf.view(p, group, d), consume=True)  # (P, m, d): P Gaussians
                    filled = 0
        if filled:
            acc.update(buf.view(p, group, d)[:, :filled].contiguous(), consume=True)
        del buf
        if acc.n < 2:
            raise ParamError("data", f"PaDiM's per-position covariance needs at least 2 train images, got {acc.n}")
        chol = np.empty((p, d, d), np.float32)
        step = max(1, (64 * 2**20) // (d * d * 8))  # positions per chunk (~64 MiB of float64 each)
        buf = torch.empty((min(step, p), d, d), dtype=torch.float64, device=acc.device)  # reused: touched once
        info = torch.empty(min(step, p), dtype=torch.int32, device=acc.device)
        for a in range(0, p, step):
            cov = acc.scatter_(slice(a, a + step)).div_(acc.n - 1)  # in the sums' own memory (no longer needed)
            cov.diagonal(dim1=-2, dim2=-1).add_(self.eps)
            k = cov.shape[0]
            torch.linalg.cholesky_ex(cov, out=(buf[:k], info[:k]))  # reads the lower half
            if bool(info[:k].any()):  # cannot happen with eps > 0 and finite features; say so if it does
                raise FitError(f"PaDiM: a position's covariance + {self.eps} I is not positive definite")
            torch.from_numpy(chol[a:a + k]).copy_(buf[:k])
        mean = acc.mean().cpu().numpy()
        n = acc.n
        del acc
        return State(arrays={"mean": mean, "cholesky": chol, "channels": keep},
                     meta={"grid": [int(h), int(w)], "n_samples": int(n), "reg": reg_tag(f"ridge:{self.eps}"),
                           "embedding_channels": int(total)})

    def scorer(self, state: State, device, *, size: tuple[int, int]):
        """``score(feats) -> BatchScores``: squared-distance maps, components, pixel maps and image
        scores of a batch."""
        import torch
        chol = torch.as_tensor(np.asarray(state.arrays["cholesky"], dtype=np.float32), device=device)  # (P, d, d)
        # (P, d): the float64 mean rounded once; the centred embeddings are float32, as the solve is
        mean32 = torch.as_tensor(np.asarray(state.arrays["mean"]), dtype=torch.float64, device=device).float()
        idx = torch.as_tensor(np.asarray(state.arrays["channels"]), device=device)
        h, w = state.meta["grid"]

        def score(feats: dict) -> BatchScores:
            e = self.embed(feats, idx)                                   # (n, d, h, w)
            n, d = e.shape[:2]
            x = torch.empty((h, w, d, n), dtype=torch.float32, device=e.device)
            x.copy_(e.permute(2, 3, 1, 0))                               # positions first, in one pass
            x = x.view(h * w, d, n).sub_(mean32[:, :, None])             # (P, d, n) centred
            y = torch.linalg.solve_triangular(chol, x, upper=False)      # (P, d, n) = L^-1 (x - mu)
            m2 = torch.linalg.vector_norm(y, dim=1, dtype=torch.float64).square_().T.reshape(n, h, w).float()  # M2
            comps = y.permute(2, 1, 0).reshape(n, d, h, w)               # (n, d, h, w)
            pixels = self.to_pixels(m2[:, None], size)[:, 0]             # (n, H, W) PaDiM's score map
            return BatchScores(image_scores=pixels.flatten(1).amax(1), maps=m2, components=comps, pixels=pixels)

        return score

    def to_pixels(self, maps, size):
        """(n, k, h, w) squared distances -> (n, k, H, W) PaDiM scores: the distance (square root),
        upsampled bilinear, then the Gaussian blur (``sigma``)."""
        from ..metrics import upsample
        return blur(upsample(maps.clamp_min(0).sqrt(), size), self.sigma)


__all__ = ["PaDiM", "blur", "default_channels", "gaussian_kernel"]
