"""Shared helpers of the tests of several methods on one category (explanations, the Methods page)."""

EXPLAINED = ("mvg", "mvg-concat", "padim", "mvg-sum", "gaussian-ad", "opca")


def fit_methods(root, cache, names=EXPLAINED, category="brick") -> dict:
    """``{name: MethodResult}`` fitted (or read) with each method's defaults, on the CPU."""
    from mvgviz.pipeline import fit_method
    return {n: fit_method(root, category, n, cache=cache, device="cpu") for n in names}
