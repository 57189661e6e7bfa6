"""Multivariate Gaussians fitted by streaming float64 sums, channels last.

Samples are ``(..., M, C)`` (SciPy's convention): ``M`` samples of dimension ``C``; leading
dimensions index independent Gaussians. The paper's simplified PaDiM fits one Gaussian per
layer to all positions of all training images pooled: the features ``(N, C, H, W)`` become
``N*H*W`` rows of ``C`` (:func:`maps_to_rows`). PaDiM proper fits one per position: ``(P, M, C)``.

Regularisation (recorded in :class:`Gaussian` and in every cache key):

- ``"none"`` (default, the paper): the unbiased empirical covariance ``S``.
- ``"ridge:EPS"``: ``S + EPS * I`` (PaDiM uses 0.01).
- ``"ledoit-wolf"``: scikit-learn's ``ledoit_wolf`` estimate (its biased empirical
  covariance shrunk towards ``mu * I``), from a second streaming pass.

Eigenvalue floor, per Gaussian: the eigendecomposition ``S = V diag(w) V^T`` (``w`` ascending) has
rounding noise of order ``C * eps64 * max(w)``; eigenvalues at or below
``floor = C * finfo(float64).eps * max(w)`` (numpy's ``matrix_rank`` tolerance) are set
to 0. Dead ReLU channels, constant channels and ``C > M`` make such eigenvalues.
Whitening treats them as SciPy's ``Covariance`` does, as a pseudo-inverse: their
components are identically 0 and contribute nothing to M2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from .conventions import ParamError

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions that compute, so that reading the regulariser's
# name (cache keys, a warm report) does not pay for importing it.


class FitError(ValueError):
    """Bad input to the Gaussian fit (too few samples, bad regulariser, non-finite features)."""


class RegError(FitError, ParamError):
    """A bad ``reg`` value; names the parameter (:class:`ParamError`)."""


def parse_reg(reg: str | None) -> tuple[str, float]:
    """``"none" | "ridge:EPS" | "ledoit-wolf"`` -> (kind, eps)."""
    reg = (reg or "none").strip().lower()
    if reg == "none":
        return "none", 0.0
    if reg in ("ledoit-wolf", "ledoit_wolf", "lw"):
        return "ledoit-wolf", 0.0
    if reg.startswith("ridge:"):
        try:
            eps = float(reg.split(":", 1)[1])
        except ValueError:
            eps = -1.0
        if not eps > 0:
            raise RegError("reg", f": ridge needs a positive number, e.g. ridge:0.01, got {reg!r}")
        return "ridge", eps
    raise RegError("reg", f"must be 'none', 'ridge:EPS' or 'ledoit-wolf', got {reg!r}")


def reg_tag(reg: str | None) -> str:
    kind, eps = parse_reg(reg)
    return f"ridge:{eps:g}" if kind == "ridge" else kind


@dataclass(frozen=True)
class Gaussian:
    """Fitted Gaussians with their eigendecompositions (NumPy, float64).

    A leading batch shape ``B`` (``()`` for one Gaussian) indexes independent Gaussians.

    mean: (*B, C); cov: (*B, C, C) as regularised; eigvals: (*B, C) ascending, floored to 0
    at or below ``floor``; eigvecs: (*B, C, C), column c is component c; floor: float, or
    (*B) array when batched; n_samples: samples per Gaussian; shrinkage: Ledoit-Wolf's
    coefficient (0 otherwise), float or (*B) array.
    """

    mean: np.ndarray
    cov: np.ndarray
    eigvals: np.ndarray
    eigvecs: np.ndarray
    floor: float | np.ndarray
    n_samples: int
    reg: str
    shrinkage: float | np.ndarray = 0.0

    @property
    def n_components(self) -> int:
        return self.mean.shape[-1]

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self.mean.shape[:-1]

    def at(self, *index: int) -> "Gaussian":
        """The single Gaussian at batch ``index`` (one integer per batch dimension)."""
        if len(index) != len(self.batch_shape):
            raise IndexError(f"index needs {len(self.batch_shape)} integers for batch shape "
                             f"{self.batch_shape}, got {index}")
        return Gaussian(mean=self.mean[index], cov=self.cov[index], eigvals=self.eigvals[index],
                        eigvecs=self.eigvecs[index], floor=float(np.asarray(self.floor)[index]),
                        n_samples=self.n_samples, reg=self.reg,
                        shrinkage=float(np.asarray(self.shrinkage)[index]))

    def covariance(self):
        """``scipy.stats.Covariance`` of the floored eigendecomposition (one Gaussian only)."""
        from scipy.stats import Covariance
        if self.batch_shape:
            raise ValueError(f"covariance() needs one Gaussian, this one has batch shape {self.batch_shape}: "
                             "use .at(i).covariance()")
        return Covariance.from_eigendecomposition((self.eigvals, self.eigvecs))

    def whitener(self) -> np.ndarray:
        """(*B, C, C) float64 ``W`` with ``whiten(x) = x @ W``.

        ``V diag(w^-1/2)`` with zero columns where ``w == 0`` (PCA whitening, the pseudo-inverse
        SciPy's ``Covariance`` uses). One Gaussian: taken from SciPy (``whiten(eye(C))``);
        batched: the same formula, evaluated like SciPy does, per Gaussian.
        """
        if not self.batch_shape:
            return self.covariance().whiten(np.eye(self.n_components))
        w = self.eigvals
        positive = w > 0
        inv_sqrt = 1.0 / np.sqrt(np.where(positive, w, 1.0))
        return self.eigvecs * np.where(positive, inv_sqrt, 0.0)[..., None, :]


def maps_to_rows(feats):
    """Feature maps (N, C, H, W) -> channels-last rows (N*H*W, C), as array or tensor like ``feats``.

    A copy in general (the layout changes); dtype and device are kept. ``fit_gaussian`` and the
    accumulator take rows, so a stream of maps becomes ``lambda: map(maps_to_rows, maps())``.
    """
    if feats.ndim != 4:
        raise FitError(f"feats must be feature maps (N, C, H, W), got shape {tuple(feats.shape)}")
    c = feats.shape[1]
    if isinstance(feats, np.ndarray):
        return feats.transpose(0, 2, 3, 1).reshape(-1, c)
    return feats.permute(0, 2, 3, 1).reshape(-1, c)


class GaussianAccumulator:
    """Streaming sums for means and covariances in float64 on ``device``.

    Takes chunks (*B, m, C), channels last: ``*B`` are independent Gaussians (fixed by the
    first chunk), m samples of each. Sums are taken around a shift ``K`` (the first chunk's
    mean per Gaussian) so that ``sum (x-K)(x-K)^T - n (mu-K)(mu-K)^T`` does not cancel
    catastrophically.
    """

    def __init__(self, channels: int, device: torch.device | str = "cpu"):
        import torch
        self.c = channels
        self.device = torch.empty(0, device=device).device  # "cuda" -> "cuda:0": comparable with tensors' devices
        self.n = 0
        self.batch_shape: tuple[int, ...] | None = None
        self.shift: torch.Tensor | None = None
        self.s1: torch.Tensor | None = None  # (*B, C)
        self.s2: torch.Tensor | None = None  # (*B, C, C)

    def update(self, x: torch.Tensor | np.ndarray, *, consume: bool = False) -> None:
        """x: (*B, m, C) samples, any float dtype; summed in float64. ``consume=True``: ``x`` may be
        overwritten (a contiguous float64 tensor on the accumulator's device is then centred in place,
        no copy)."""
        import torch
        x = _as_samples(x, self.c, self.batch_shape)
        if x.shape[-2] == 0:
            return
        reuse = consume and x.dtype == torch.float64 and x.device == self.device and x.is_contiguous()
        x = x if reuse else x.to(self.device, torch.float64, copy=True)  # float64, centred in place below
        first = self.shift is None
        shift = x.mean(-2) if first else self.shift
        x.sub_(shift.unsqueeze(-2))
        part = x.sum(-2)
        # a NaN or an infinity anywhere in x reaches its Gaussian's sum (inf - inf = NaN): checking
        # the (*B, C) sums finds it without a pass over x, before anything is added
        if not torch.isfinite(part).all():
            raise FitError("features contain NaN or inf: check the input images and the backbone weights")
        m = x.shape[-2]
        flat = x.reshape(-1, m, self.c)
        if first:  # the first chunk's products are the sums (no zero-filled array to add them to)
            self.batch_shape, self.shift, self.s1 = tuple(x.shape[:-2]), shift, part
            self.s2 = torch.bmm(flat.mT, flat).reshape(*self.batch_shape, self.c, self.c)
        else:
            self.s1 += part
            self.s2.view(-1, self.c, self.c).baddbmm_(flat.mT, flat)  # in place: no temporary of the sums' size
        self.n += m

    def scatter_(self, index: slice) -> torch.Tensor:
        """:meth:`scatter` of the Gaussians ``index`` computed in the sums' own memory and returned
        as a view of it: the sums of those Gaussians are gone afterwards (PaDiM's chunked fit)."""
        d = self.s1[index] / self.n
        s2 = self.s2[index]
        flat = s2.view(-1, self.c, self.c)
        flat.baddbmm_(d.reshape(-1, self.c, 1), d.reshape(-1, 1, self.c), alpha=-self.n)
        return s2

    def mean(self) -> torch.Tensor:
        """(*B, C) float64."""
        return self.shift + self.s1 / self.n

    def scatter(self) -> torch.Tensor:
        """sum (x - mu)(x - mu)^T, (*B, C, C) float64 (one new array)."""
        import torch
        d = self.s1 / self.n
        return torch.addcmul(self.s2, d.unsqueeze(-1), d.unsqueeze(-2), value=-self.n)


def _as_samples(x, channels: int, batch_shape: tuple[int, ...] | None) -> torch.Tensor:
    """(*B, m, C) as a tensor; checks C and, after the first chunk, B."""
    import torch
    x = torch.as_tensor(x)
    if x.ndim < 2 or x.shape[-1] != channels:
        raise FitError(f"samples must be (..., M, C) with C={channels} channels last, got shape {tuple(x.shape)}"
                       " (feature maps (N, C, H, W) go through maps_to_rows)")
    if not x.is_floating_point():
        x = x.double()
    if batch_shape is not None and tuple(x.shape[:-2]) != batch_shape:
        raise FitError(f"every chunk must have the batch shape {batch_shape} of the first, got shape {tuple(x.shape)}")
    return x


def fit_gaussian(x: Callable[[], Iterable[torch.Tensor | np.ndarray]] | torch.Tensor | np.ndarray, *,
                 reg: str | None = "none", device: torch.device | str | None = None) -> Gaussian:
    """Fit Gaussians to channels-last samples, streaming float64 sums.

    Parameters
    ----------
    x
        Samples (*B, M, C), array or tensor, channels last (SciPy's convention); or a
        zero-argument callable returning a fresh iterable of chunks (*B, m_i, C), the same
        ``*B`` in every chunk (Ledoit-Wolf calls it twice). ``*B`` are independent Gaussians,
        e.g. (P, M, C) fits one Gaussian per position as PaDiM does; (M, C) fits one. Feature
        maps (N, C, H, W) pooled over positions: ``lambda: map(maps_to_rows, maps())``.
    reg
        ``"none"``, ``"ridge:EPS"`` or ``"ledoit-wolf"`` (sklearn's ``ledoit_wolf``, per Gaussian).
    device
        Where the float64 sums live; default: the first chunk's device.

    Returns
    -------
    Gaussian
        Batch shape ``*B``; ``n_samples`` is the number of samples of each Gaussian.
    """
    import torch
    kind, eps = parse_reg(reg)
    if isinstance(x, (np.ndarray, torch.Tensor)):
        whole = x
        chunks_fn = lambda: (whole,)  # noqa: E731
    elif callable(x):
        chunks_fn = x
    else:
        raise FitError(f"x must be an array, a tensor or a callable returning chunks, got {type(x).__name__}")
    acc: GaussianAccumulator | None = None
    for b in chunks_fn():
        b = torch.as_tensor(b)
        if acc is None:
            if b.ndim < 2:
                raise FitError(f"samples must be (..., M, C), got shape {tuple(b.shape)}")
            acc = GaussianAccumulator(b.shape[-1], device or b.device)
        acc.update(b)
    if acc is None or acc.n < 2:
        raise FitError(f"need at least 2 samples per Gaussian to fit a covariance, got {0 if acc is None else acc.n}")
    mu = acc.mean()
    scatter = acc.scatter()
    c = acc.c
    eye = torch.eye(c, dtype=torch.float64, device=acc.device)
    shrinkage = torch.zeros(acc.batch_shape, dtype=torch.float64)
    if kind == "ledoit-wolf":
        cov, shrinkage = _ledoit_wolf(chunks_fn, acc, mu, scatter)
    else:
        cov = scatter / (acc.n - 1)
        if kind == "ridge":
            cov = cov + eps * eye
    cov = 0.5 * (cov + cov.mT)
    w, v = torch.linalg.eigh(cov)  # ascending, per Gaussian
    floor = eigval_floor(w)  # (*B)
    w = torch.where(w > floor.unsqueeze(-1), w, torch.zeros_like(w))
    batched = bool(acc.batch_shape)

    def out(t):
        a = t.cpu().numpy()
        return a if batched else float(a)
    return Gaussian(mean=mu.cpu().numpy(), cov=cov.cpu().numpy(), eigvals=w.cpu().numpy(),
                    eigvecs=v.cpu().numpy(), floor=out(floor), n_samples=acc.n, reg=reg_tag(reg),
                    shrinkage=out(shrinkage))


def eigval_floor(w: torch.Tensor) -> torch.Tensor:
    """(*B) the floor at or below which eigenvalues (*B, C) count as 0: ``C eps max(w)``."""
    return w.shape[-1] * np.finfo(np.float64).eps * w.amax(-1).clamp(min=0.0)


def _ledoit_wolf(chunks_fn, acc: GaussianAccumulator, mu: torch.Tensor,
                 scatter: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sklearn.covariance.ledoit_wolf per Gaussian, from the streamed sums plus one pass for
    ``sum_i ||x_i - mu||^4``. Returns cov (*B, C, C) and shrinkage (*B)."""
    import torch
    n, c = acc.n, acc.c
    beta_ = torch.zeros(acc.batch_shape, dtype=torch.float64, device=acc.device)
    for b in chunks_fn():
        x = _as_samples(b, c, acc.batch_shape).to(acc.device, torch.float64) - mu.unsqueeze(-2)
        beta_ += x.square().sum(-1).square().sum(-1)  # sum_i ||x_i||^4 = sum of <X2^T, X2>
    emp = scatter / n  # biased, as sklearn
    tr = torch.diagonal(emp, dim1=-2, dim2=-1).sum(-1)  # (*B)
    m = tr / c
    if c == 1:  # sklearn: one feature, no shrinkage
        return emp, torch.zeros_like(tr).cpu()
    delta_ = emp.square().sum((-2, -1))
    beta = (beta_ / n - delta_) / (c * n)
    delta = (delta_ - 2.0 * m * tr + c * m ** 2) / c
    beta = torch.minimum(beta, delta)
    s = torch.where(beta == 0, torch.zeros_like(beta), beta / torch.where(delta == 0, 1.0, delta))
    eye = torch.eye(c, dtype=torch.float64, device=acc.device)
    cov = (1.0 - s)[..., None, None] * emp + (s * m)[..., None, None] * eye
    return cov, s.cpu()
