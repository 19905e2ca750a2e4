"""SimpleShot's normalisation of the representation (Wang et al. 2019; Tian et al. 2020):
centre the basis vectors by their meta-train mean, then scale each to unit L2 norm.

``normalize="l2"`` only scales; ``"center-l2"`` centres first.  The mean is computed once from
every training row and kept, so adapt/predict apply the same map.  A row whose (centred) vector is
0 stays 0 (no division by zero).
"""

from __future__ import annotations

import copy

import numpy as np

from metafast.basis._base import BasisFamily

OPTIONS = ("none", "l2", "center-l2")


class Normalized(BasisFamily):
    """design(X) = (phi(X) - center) / |phi(X) - center| row by row; ``inner`` is fitted."""

    _n_basis_from_fit = True

    def __init__(self, inner: BasisFamily | None = None, center: np.ndarray | None = None):
        self.inner = inner
        self.center = center

    @property
    def n_basis(self):
        return getattr(self.inner, "n_basis", None)

    def fit(self, X, y=None):
        if not isinstance(self.inner, BasisFamily) or not self.inner.__sklearn_is_fitted__():
            raise TypeError("parameter 'inner' of Normalized must be a fitted BasisFamily")
        m = self.inner.n_basis
        c = np.zeros(m) if self.center is None else np.asarray(self.center, dtype=np.float64)
        if c.shape != (m,):
            raise ValueError(f"parameter 'center' must have shape ({m},); got {c.shape}")
        self.inner_, self.center_ = copy.deepcopy(self.inner), c
        return self

    def design(self, X):
        Phi = self.inner_.design(X)
        Z = Phi - self.center_.astype(Phi.dtype)
        norm = np.sqrt(np.einsum("ij,ij->i", Z, Z))
        norm[norm == 0] = 1.0
        return Z / norm[:, None]


def normalize_basis(basis: BasisFamily, ts, option: str) -> BasisFamily:
    """``basis`` followed by the normalisation ``option`` (the centre from every row of ``ts``)."""
    if option == "none":
        return basis
    center = None
    if option == "center-l2":
        center = np.asarray(basis.design(np.concatenate([ts.X_support, ts.X_query])), dtype=np.float64).mean(axis=0)
    return Normalized(basis, center).fit(ts.X_support[:1])


__all__ = ["OPTIONS", "Normalized", "normalize_basis"]
