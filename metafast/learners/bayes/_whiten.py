"""Whitened coordinates for the MetaBayes EM: a basis map A that makes the pooled training Gram
the identity.

The model is invariant to an invertible linear map of the basis (w = A v turns the prior
N(mu, Sigma) on w into N(A^-1 mu, A^-1 Sigma A^-T) on v, with the same predictions), but EM's
speed is not: its isotropic start, SQUAREM's step lengths and the quasi-Newton curvature all
see the coordinates.  With Phi A, whose pooled Gram is (a multiple of) the identity, every
direction of weight space is equally well determined by the data, so the iterations behave as
on a well-conditioned basis whatever the user's columns are (scikit-learn polynomial features,
unions of families).

The map never touches the designs: the E-step kernel already multiplies each block of the
design by the prior's Cholesky factor, and A is folded into that factor (Phi (A U_v) =
(Phi A) U_v), so a whitened pass costs what a plain pass costs.  The prior carries A
(``GaussianPrior.design_map``); the estimator maps the fitted prior back at the end.

Covariance structures: "full" uses the symmetric inverse square root of the Gram (any map
keeps the full model); "diag" only rescales columns (a rotation would change what a diagonal
Sigma means); "iso" is left as it is (only a multiple of the identity keeps it isotropic, and
the start already has the data's scale).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.linalg import qr

RANK_TOL = {np.dtype(np.float64): 1e-13, np.dtype(np.float32): 1e-6}  # relative eigenvalue cut


@dataclass
class WhiteningMap:
    """w = A v: ``A`` (m, m), ``A_inv`` its inverse, ``logdet`` log|det A|, ``dropped`` the basis
    columns that are linear combinations of the others in the training rows (empty: full rank)."""

    A: np.ndarray
    A_inv: np.ndarray
    logdet: float
    dropped: list

    def target(self, psi: float) -> np.ndarray:
        """The shrinkage target psi I of the user's coordinates, in whitened ones: psi A^-1 A^-T."""
        return psi * (self.A_inv @ self.A_inv.T)


def dependent_columns(gram: np.ndarray, rank: int) -> list:
    """The columns a pivoted QR of the Gram leaves last: those not needed to span its range."""
    if rank >= gram.shape[0]:
        return []
    _, _, piv = qr(gram, pivoting=True, mode="economic")
    return sorted(int(j) for j in piv[rank:])


def missing_columns(gram: np.ndarray, n_rows: int, dtype) -> list:
    """Basis columns the training rows cannot tell apart from the others (rank deficiency)."""
    C = np.asarray(gram, dtype=np.float64) / max(int(n_rows), 1)
    lam = np.linalg.eigvalsh(0.5 * (C + C.T))
    top = float(lam.max(initial=0.0))
    if not np.isfinite(top) or top <= 0:
        return list(range(C.shape[0]))
    tol = RANK_TOL.get(np.dtype(dtype), RANK_TOL[np.dtype(np.float64)])
    return dependent_columns(C, int((lam > tol * top).sum()))


def warn_dependent(dropped: list, m: int, what: str = "MetaBayes") -> None:
    """The rank-deficiency warning: which columns, and what the fit does about them."""
    if not dropped:
        return
    shown = ", ".join(map(str, dropped[:20])) + (", ..." if len(dropped) > 20 else "")
    warnings.warn(
        f"{what}: the training design has rank {m - len(dropped)} < {m} basis functions; basis "
        f"column(s) {shown} are zero or linear combinations of the others in the training rows. EM "
        "runs on the range of the design (the prior is not learned in the other directions); use "
        "fewer basis functions or remove duplicate columns",
        UserWarning,
        stacklevel=5,
    )


def whitening_map(gram: np.ndarray, n_rows: int, kind: str, dtype) -> WhiteningMap | None:
    """The map that makes ``gram / n_rows`` the identity on its range (None for "iso").

    Directions outside the range (duplicate or all-zero columns, fewer rows than columns) get
    the scale of the largest eigenvalue: the data say nothing there, so the prior keeps its
    start in them, finite, and never produces NaN.
    """
    C = np.asarray(gram, dtype=np.float64) / max(int(n_rows), 1)
    C = 0.5 * (C + C.T)
    tol = RANK_TOL.get(np.dtype(dtype), RANK_TOL[np.dtype(np.float64)])
    lam, V = np.linalg.eigh(C)
    top = float(lam.max(initial=0.0))
    if not np.isfinite(top) or top <= 0:
        return None  # no information at all: stay in the user's coordinates
    keep = lam > tol * top
    rank = int(keep.sum())
    dropped = dependent_columns(C, rank)
    if kind == "iso":
        return None
    if kind == "diag":
        d = np.diag(C).copy()
        d = np.where(d > tol * max(float(d.max()), 0.0), d, float(d.max()))
        a = 1.0 / np.sqrt(d)
        return WhiteningMap(np.diag(a), np.diag(1.0 / a), float(np.log(a).sum()), dropped)
    lam = np.where(keep, lam, top)
    s = 1.0 / np.sqrt(lam)
    A = (V * s) @ V.T
    A_inv = (V / s) @ V.T
    return WhiteningMap(0.5 * (A + A.T), 0.5 * (A_inv + A_inv.T), float(np.log(s).sum()), dropped)


def to_user(mean_v: np.ndarray, cov_v: np.ndarray, wmap: WhiteningMap | None) -> tuple[np.ndarray, np.ndarray]:
    """(mu, Sigma) in the user's coordinates from whitened ones."""
    if wmap is None:
        return mean_v, cov_v
    cov = wmap.A @ cov_v @ wmap.A.T
    return wmap.A @ mean_v, 0.5 * (cov + cov.T)


def to_whitened(mean: np.ndarray, cov: np.ndarray, wmap: WhiteningMap | None) -> tuple[np.ndarray, np.ndarray]:
    """(mu, Sigma) in whitened coordinates from the user's."""
    if wmap is None:
        return mean, cov
    cov_v = wmap.A_inv @ cov @ wmap.A_inv.T
    return wmap.A_inv @ mean, 0.5 * (cov_v + cov_v.T)
