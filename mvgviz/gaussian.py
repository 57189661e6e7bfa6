"""One multivariate Gaussian per layer, fitted by streaming float64 sums.

All positions of all training images are pooled (the paper's simplified PaDiM): the
features ``(N, C, H, W)`` are seen as ``N*H*W`` samples of dimension ``C``.

Regularisation (recorded in :class:`Gaussian` and in every cache key):

- ``"none"`` (default, the paper): the unbiased empirical covariance ``S``.
- ``"ridge:EPS"``: ``S + EPS * I`` (PaDiM uses 0.01).
- ``"ledoit-wolf"``: scikit-learn's ``ledoit_wolf`` estimate (its biased empirical
  covariance shrunk towards ``mu * I``), from a second streaming pass.

Eigenvalue floor: the eigendecomposition ``S = V diag(w) V^T`` (``w`` ascending) has
rounding noise of order ``C * eps64 * max(w)``; eigenvalues at or below
``floor = C * finfo(float64).eps * max(w)`` (numpy's ``matrix_rank`` tolerance) are set
to 0. Dead ReLU channels, constant channels and ``C > N*H*W`` make such eigenvalues.
Whitening treats them as SciPy's ``Covariance`` does, as a pseudo-inverse: their
components are identically 0 and contribute nothing to M2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions that compute, so that reading the regulariser's
# name (cache keys, a warm report) does not pay for importing it.


class FitError(ValueError):
    """Bad input to the Gaussian fit (too few samples, bad regulariser, non-finite features)."""


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
            raise FitError(f"--reg: ridge needs a positive number, e.g. ridge:0.01, got {reg!r}")
        return "ridge", eps
    raise FitError(f"--reg must be 'none', 'ridge:EPS' or 'ledoit-wolf', got {reg!r}")


def reg_tag(reg: str | None) -> str:
    kind, eps = parse_reg(reg)
    return f"ridge:{eps:g}" if kind == "ridge" else kind


@dataclass(frozen=True)
class Gaussian:
    """A fitted Gaussian with its eigendecomposition (NumPy, float64).

    mean: (C,); cov: (C, C) as regularised; eigvals: (C,) ascending, floored to 0 at or
    below ``floor``; eigvecs: (C, C), column c is component c; n_samples: N*H*W.
    """

    mean: np.ndarray
    cov: np.ndarray
    eigvals: np.ndarray
    eigvecs: np.ndarray
    floor: float
    n_samples: int
    reg: str
    shrinkage: float = 0.0

    @property
    def n_components(self) -> int:
        return self.mean.shape[0]

    def covariance(self):
        """``scipy.stats.Covariance`` of the floored eigendecomposition."""
        from scipy.stats import Covariance
        return Covariance.from_eigendecomposition((self.eigvals, self.eigvecs))

    def whitener(self) -> np.ndarray:
        """(C, C) float64 ``W`` with ``whiten(x) = x @ W``, taken once from SciPy.

        Equals ``V diag(w^-1/2)`` with zero columns where ``w == 0`` (PCA whitening).
        """
        return self.covariance().whiten(np.eye(self.n_components))


class GaussianAccumulator:
    """Streaming sums for mean and covariance in float64 on ``device``.

    Sums are taken around a shift ``K`` (the first batch's mean) so that
    ``sum (x-K)(x-K)^T - n (mu-K)(mu-K)^T`` does not cancel catastrophically.
    """

    def __init__(self, channels: int, device: torch.device | str = "cpu"):
        import torch
        self.c = channels
        self.device = torch.device(device)
        self.n = 0
        self.shift: torch.Tensor | None = None
        self.s1 = torch.zeros(channels, dtype=torch.float64, device=self.device)
        self.s2 = torch.zeros(channels, channels, dtype=torch.float64, device=self.device)

    def update(self, feats: torch.Tensor) -> None:
        """feats: (N, C, H, W) or (M, C)."""
        import torch
        x = _as_rows(feats, self.c).to(self.device, torch.float64)  # (M, C)
        if not torch.isfinite(x).all():
            raise FitError("features contain NaN or inf: check the input images and the backbone weights")
        if self.shift is None:
            self.shift = x.mean(0)
        x = x - self.shift
        self.n += x.shape[0]
        self.s1 += x.sum(0)
        self.s2 += x.T @ x

    def mean(self) -> torch.Tensor:
        return self.shift + self.s1 / self.n

    def scatter(self) -> torch.Tensor:
        """sum (x - mu)(x - mu)^T, (C, C) float64."""
        import torch
        d = self.s1 / self.n
        return self.s2 - self.n * torch.outer(d, d)


def _as_rows(feats: torch.Tensor, channels: int) -> torch.Tensor:
    if feats.ndim == 4:
        if feats.shape[1] != channels:
            raise FitError(f"features have {feats.shape[1]} channels, expected {channels}")
        return feats.permute(0, 2, 3, 1).reshape(-1, channels)  # (N*H*W, C)
    if feats.ndim == 2 and feats.shape[1] == channels:
        return feats
    raise FitError(f"features must be (N, C, H, W) or (M, C) with C={channels}, got {tuple(feats.shape)}")


def fit_gaussian(batches: Callable[[], Iterable[torch.Tensor]] | torch.Tensor | np.ndarray, *,
                 reg: str | None = "none", device: torch.device | str | None = None) -> Gaussian:
    """Fit one Gaussian to all feature vectors, streaming.

    Parameters
    ----------
    batches
        Either a tensor/array (N, C, H, W) or (M, C), or a callable returning a fresh
        iterable of (N_i, C, H, W) tensors each time it is called (Ledoit-Wolf makes a
        second pass).
    reg
        ``"none"``, ``"ridge:EPS"`` or ``"ledoit-wolf"``.
    device
        Where the float64 sums live; default: the first batch's device.
    """
    import torch
    kind, eps = parse_reg(reg)
    if isinstance(batches, (np.ndarray, torch.Tensor)):
        t = torch.as_tensor(batches)
        batches_fn = lambda: [t]  # noqa: E731
    else:
        batches_fn = batches
    acc: GaussianAccumulator | None = None
    for b in batches_fn():
        b = torch.as_tensor(b)
        if acc is None:
            acc = GaussianAccumulator(b.shape[1], device or b.device)
        acc.update(b)
    if acc is None or acc.n < 2:
        raise FitError(f"need at least 2 feature vectors to fit a covariance, got {0 if acc is None else acc.n}")
    mu = acc.mean()
    scatter = acc.scatter()
    c = acc.c
    shrinkage = 0.0
    if kind == "ledoit-wolf":
        cov, shrinkage = _ledoit_wolf(batches_fn, mu, scatter, acc.n, acc.device)
    else:
        cov = scatter / (acc.n - 1)
        if kind == "ridge":
            cov = cov + eps * torch.eye(c, dtype=torch.float64, device=acc.device)
    cov = 0.5 * (cov + cov.T)
    w, v = torch.linalg.eigh(cov)  # ascending
    floor = float(c * np.finfo(np.float64).eps * max(float(w.max()), 0.0))
    w = torch.where(w > floor, w, torch.zeros_like(w))
    return Gaussian(mean=mu.cpu().numpy(), cov=cov.cpu().numpy(), eigvals=w.cpu().numpy(),
                    eigvecs=v.cpu().numpy(), floor=floor, n_samples=acc.n, reg=reg_tag(reg),
                    shrinkage=float(shrinkage))


def _ledoit_wolf(batches_fn, mu: torch.Tensor, scatter: torch.Tensor, n: int,
                 device: torch.device) -> tuple[torch.Tensor, float]:
    """sklearn.covariance.ledoit_wolf from streaming sums plus one pass for sum ||x-mu||^4."""
    import torch
    c = mu.shape[0]
    beta_ = torch.zeros((), dtype=torch.float64, device=device)
    for b in batches_fn():
        x = _as_rows(torch.as_tensor(b), c).to(device, torch.float64) - mu
        beta_ += (x.pow(2).sum(1) ** 2).sum()  # sum_i ||x_i||^4 = sum of <X2^T, X2>
    emp = scatter / n  # biased, as sklearn
    tr = torch.trace(emp)
    m = tr / c
    delta_ = (emp ** 2).sum()
    beta = (beta_ / n - delta_) / (c * n)
    delta = (delta_ - 2.0 * m * tr + c * m ** 2) / c
    beta = torch.minimum(beta, delta)
    s = 0.0 if float(beta) == 0 else float(beta / delta)
    cov = (1.0 - s) * emp + s * m * torch.eye(c, dtype=torch.float64, device=device)
    return cov, s
