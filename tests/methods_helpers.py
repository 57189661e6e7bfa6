"""Shared helpers of the tests of several methods on one category (explanations, the Methods page)."""

from contextlib import contextmanager

import pytest

EXPLAINED = ("mvg", "mvg-concat", "padim", "mvg-sum", "gaussian-ad", "opca")


@contextmanager
def imagelevel_registered():
    """Gaussian-AD and OPCA in the method registry (a no-op where main registers them)."""
    from mvgviz.models import METHODS
    from mvgviz.models.gaussian_ad import GaussianAD
    from mvgviz.models.opca import OPCA
    with pytest.MonkeyPatch.context() as mp:
        for cls in (GaussianAD, OPCA):
            if cls.name not in METHODS:
                mp.setitem(METHODS, cls.name, cls)
        yield


def fit_methods(root, cache, names=EXPLAINED, category="brick") -> dict:
    """``{name: MethodResult}`` fitted (or read) with each method's defaults, on the CPU."""
    from mvgviz.pipeline import fit_method
    return {n: fit_method(root, category, n, cache=cache, device="cpu") for n in names}
