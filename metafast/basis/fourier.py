"""Fourier family: cos/sin features evaluated by angle-addition recurrences.

Columns (m = n_basis): an optional constant 1, then for every input dimension j and every
angular frequency f of that dimension the pair cos(f x_j), sin(f x_j).  If the count of
non-constant columns is odd, the very last pair keeps only its cosine.

Frequencies are grouped in *runs* (arithmetic sequences f0 + k df on one dimension).  The
kernel calls sin/cos twice per row and run (once for harmonics, where f0 == df) and rotates
for the rest of the run, re-seeding every 32 steps to bound rounding drift (see
metafast/_kernels/_fourier_tile.pxd).  Explicit frequency vectors are split into maximal runs; a
vector with no arithmetic structure costs one sin/cos pair per frequency, like numpy.

d > 1, ``multivariate="additive"`` (default): per-dimension features (no cross terms); every
dimension gets its own runs.  Learnable parameters keep the run structure (and so the
recurrence): ``log_base`` and ``log_spacing``, the logs of each run's f0 and df, so
frequencies stay positive.

d > 1, ``multivariate="lattice"``: pairs cos/sin(sum_j k_j w_j x_j) for the integer vectors k
of a total-degree half lattice (graded order), w_j = 2 pi / period_j; these capture
interactions between inputs.  Each pair is one rotation of an earlier pair
(metafast/_kernels/_lattice_tile.pxd): d sin/cos pairs per row in all.  Learnable:
``log_base`` = log w_j (d,).
"""

from __future__ import annotations

import numpy as np

from metafast._kernels import _fourier, _fourier_lattice
from metafast._validation import check_finite, check_positive_int
from metafast.basis._fused import FusedFamily, check_has_features
from metafast.basis._lattice import half_lattice, lattice_parents

_RUN_RTOL = 4 * np.finfo(np.float64).eps  # frequencies within 4 ulp of a line form a run


def _split_runs(freqs: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs (start, length) where freqs[start + k] == f0 + k * df to ~4 ulp, df > 0."""
    runs, i, K = [], 0, len(freqs)
    while i < K:
        L = 1
        while i + L < K:
            trial = freqs[i : i + L + 1]
            df = (trial[-1] - trial[0]) / L
            if df <= 0:
                break
            line = trial[0] + np.arange(L + 1) * df
            if np.any(np.abs(line - trial) > _RUN_RTOL * np.abs(trial).max()):
                break
            L += 1
        runs.append((i, L))
        i += L
    return runs


class Fourier(FusedFamily):
    """Fourier features cos(f x), sin(f x) with angular frequencies f (radians per unit of x).

    Parameters
    ----------
    n_basis : int
        Number of columns m, including the constant column when ``include_constant``.
    frequencies : array-like of shape (K,), optional
        Positive angular frequencies, used for every input dimension; then n_basis must be
        c + 2 K d or c + 2 K d - 1 (c = 1 with the constant).  Default: harmonics
        2 pi k / period_j, k = 1, 2, ..., of each dimension's fitted domain, the columns
        shared out as evenly as possible between dimensions.
    period : float or array-like of shape (d,), optional
        Base period of the default harmonics; default twice the fitted span of each
        dimension (so non-periodic data on the domain is not forced to be periodic).
    include_constant : bool
        Put the constant 1 in column 0.
    multivariate : {"additive", "lattice"}
        d > 1 only: additive per-dimension features, or a total-degree frequency lattice with
        cross terms (default harmonics only).  Identical in 1-D.
    n_jobs : int, optional
        Threads for the kernels (None = all cores).
    """

    _bounded_features = True  # cos and sin: no overflow check needed on the design

    def __init__(
        self,
        n_basis: int = 64,
        frequencies=None,
        period=None,
        include_constant: bool = True,
        multivariate: str = "additive",
        n_jobs: int | None = None,
    ):
        self.n_basis = n_basis
        self.frequencies = frequencies
        self.period = period
        self.include_constant = include_constant
        self.multivariate = multivariate
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None):
        m = check_positive_int(self.n_basis, "n_basis")
        d = check_has_features(X)
        c = 1 if self.include_constant else 0
        lo, hi = X.min(axis=0).astype(np.float64), X.max(axis=0).astype(np.float64)
        self.domain_ = np.stack([lo, hi])
        if self.multivariate not in ("additive", "lattice"):
            raise ValueError(f"parameter 'multivariate' must be 'additive' or 'lattice'; got {self.multivariate!r}")
        self.lattice_vectors_ = None
        if self.multivariate == "lattice" and d > 1:
            self._set_lattice(lo, hi, m - c, d)
            runs = []
        elif self.frequencies is None:
            runs = self._harmonic_runs(lo, hi, m - c, d)
        else:
            runs = self._explicit_runs(m, c, d)
        self._set_runs(runs, c)
        return self

    def _set_lattice(self, lo, hi, n_free: int, d: int) -> None:
        """Total-degree half lattice of ceil(n_free / 2) frequency vectors (module docstring)."""
        if self.frequencies is not None:
            raise ValueError(
                "multivariate='lattice' uses harmonics of the fitted domain (set 'period' to "
                "change them); explicit 'frequencies' need multivariate='additive'"
            )
        span = np.where(hi > lo, hi - lo, 1.0)
        self.base_ = 2.0 * np.pi / self._period(d, 2.0 * span)
        self.lattice_vectors_ = half_lattice(d, (n_free + 1) // 2)
        self._lattice_structure = lattice_parents(self.lattice_vectors_)

    def _harmonic_runs(self, lo, hi, n_free: int, d: int) -> list[tuple]:
        """Default: harmonics 2 pi k / period_j, n_free columns shared out in cos/sin pairs.

        An odd n_free ends with a lone cosine on the last dimension, so only the very last
        column breaks the pairing.  Runs are (dim, f0, df, length, ncols).
        """
        span = np.where(hi > lo, hi - lo, 1.0)
        period = self._period(d, 2.0 * span)
        pairs = n_free // 2
        per_dim = [2 * (pairs // d + (1 if j < pairs % d else 0)) for j in range(d)]
        per_dim[-1] += n_free % 2
        runs = []
        for j, q in enumerate(per_dim):
            if q:
                f = 2.0 * np.pi / period[j]
                runs.append((j, f, f, (q + 1) // 2, q))
        return runs

    def _explicit_runs(self, m: int, c: int, d: int) -> list[tuple]:
        """The given frequencies on every dimension, split into arithmetic runs."""
        if self.period is not None:
            raise ValueError("give either 'frequencies' or 'period', not both")
        freqs = self._frequencies()
        capacity = c + 2 * freqs.shape[0] * d
        if m not in (capacity, capacity - 1):
            raise ValueError(
                f"parameter 'n_basis'={m} does not match {freqs.shape[0]} frequencies on "
                f"{d} feature(s): use n_basis={capacity} (cos and sin of each) or "
                f"{capacity - 1} (the last sine dropped)"
            )
        runs, pieces = [], _split_runs(freqs)
        for j in range(d):
            for start, L in pieces:
                f0 = freqs[start]
                df = (freqs[start + L - 1] - f0) / (L - 1) if L > 1 else f0
                runs.append((j, f0, df, L, 2 * L))
        if m == capacity - 1:
            j, f0, df, L, nc = runs[-1]
            runs[-1] = (j, f0, df, L, nc - 1)
        return runs

    def _period(self, d: int, default: np.ndarray) -> np.ndarray:
        if self.period is None:
            return default
        p = np.asarray(self.period, dtype=np.float64)
        if p.ndim == 0:
            p = np.full(d, float(p))
        if p.shape != (d,) or not np.all(np.isfinite(p)) or np.any(p <= 0):
            raise ValueError(f"parameter 'period' must be a positive finite number or {d} of them; got {self.period!r}")
        return p

    def _frequencies(self) -> np.ndarray:
        try:
            f = np.asarray(self.frequencies, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"parameter 'frequencies' must be numbers; got {self.frequencies!r}") from None
        if f.ndim != 1 or f.shape[0] == 0:
            raise ValueError(f"parameter 'frequencies' must be a non-empty 1-D array; got shape {f.shape}")
        check_finite(f, "frequencies")
        if np.any(f <= 0):
            raise ValueError(
                "parameter 'frequencies' must be > 0 (angular frequencies; use "
                "include_constant=True for the zero frequency)"
            )
        return f

    def _set_runs(self, runs, c: int) -> None:
        col = c
        cols = []
        for _, _, _, _, nc in runs:
            cols.append(col)
            col += nc
        self.run_dim_ = np.array([r[0] for r in runs], dtype=np.intp)
        self.run_f0_ = np.array([r[1] for r in runs], dtype=np.float64)
        self.run_df_ = np.array([r[2] for r in runs], dtype=np.float64)
        self.run_len_ = np.array([r[3] for r in runs], dtype=np.intp)
        self.run_ncols_ = np.array([r[4] for r in runs], dtype=np.intp)
        self.run_col_ = np.array(cols, dtype=np.intp)
        self.run_first_ = (np.cumsum(self.run_len_) - self.run_len_).astype(np.intp)

    # ------------------------------------------------------------------ fitted description
    @property
    def frequencies_(self) -> np.ndarray:
        """Angular frequency of every cos/sin pair, in column order.

        (K,) for additive features (see ``frequency_dims_``); (K, d) frequency vectors for the
        lattice.
        """
        if self.lattice_vectors_ is not None:
            return self.lattice_vectors_ * self.base_
        return (
            np.concatenate([f0 + np.arange(L) * df for f0, df, L in zip(self.run_f0_, self.run_df_, self.run_len_)])
            if len(self.run_len_)
            else np.zeros(0)
        )

    @property
    def frequency_dims_(self) -> np.ndarray:
        """(K,) input dimension of every frequency (additive features only)."""
        if self.lattice_vectors_ is not None:
            raise AttributeError("lattice features mix dimensions: see frequencies_ (K, d)")
        return np.repeat(self.run_dim_, self.run_len_)

    def _run_args(self):
        return (
            self.run_dim_,
            self.run_len_,
            self.run_col_,
            self.run_ncols_,
            self.run_f0_,
            self.run_df_,
            bool(self.include_constant),
        )

    def _lattice_args(self):
        return (self.base_, *self._lattice_structure, bool(self.include_constant))

    # ------------------------------------------------------------------ kernels
    def _kernel_design(self, X, Phi, n_threads):
        if self.lattice_vectors_ is not None:
            _fourier_lattice.lattice_design(X, *self._lattice_args(), Phi, n_threads)
        else:
            _fourier.fourier_design(X, *self._run_args(), Phi, n_threads)

    def _kernel_weighted_sum(self, X, W, out, n_threads):
        if self.lattice_vectors_ is not None:
            _fourier_lattice.lattice_weighted_sum(X, *self._lattice_args(), W, out, n_threads)
        elif W.shape[1] == 1:  # one output: weights applied inside the recurrence
            w = np.ascontiguousarray(W[:, 0], dtype=np.float64)
            _fourier.fourier_weighted_sum_1(X, *self._run_args(), w, out[:, 0], n_threads)
        else:
            _fourier.fourier_weighted_sum(X, *self._run_args(), W, out, n_threads)

    def _kernel_weighted_sum_tasks(self, X, offsets, W, out, n_threads):
        if self.lattice_vectors_ is not None:
            _fourier_lattice.lattice_weighted_sum_tasks(X, *self._lattice_args(), offsets, W, out, n_threads)
        else:
            _fourier.fourier_weighted_sum_tasks(X, *self._run_args(), offsets, W, out, n_threads)

    # ------------------------------------------------------------------ meta-learning hooks
    def learnable_params(self) -> dict[str, np.ndarray]:
        """Additive: log of each run's first frequency and spacing (single-frequency runs:
        spacing unused).  Lattice: log of the base frequency of each dimension."""
        if not self.__sklearn_is_fitted__():
            return {}
        if self.lattice_vectors_ is not None:
            return {"log_base": np.log(self.base_)}
        return {"log_base": np.log(self.run_f0_), "log_spacing": np.log(self.run_df_)}

    def with_params(self, **params) -> Fourier:
        checked = self._checked_params(params)
        new = super().with_params()
        if new.lattice_vectors_ is not None:
            if "log_base" in checked:
                new.base_ = np.exp(checked["log_base"])
            return new
        if "log_base" in checked:
            new.run_f0_ = np.exp(checked["log_base"])
        if "log_spacing" in checked:
            new.run_df_ = np.exp(checked["log_spacing"])
        return new

    def design_vjp(self, X, G) -> dict[str, np.ndarray]:
        """Gradients of sum(G * design(X)) w.r.t. the learnable parameters."""
        Xc = self._check_input(X)
        Ga = self._check_G(G, Xc.shape[0], Xc.dtype)
        if self.lattice_vectors_ is not None:
            return self._lattice_vjp(Xc, Ga)
        K = int(self.run_len_.sum())
        n_chunks = max(1, -(-Xc.shape[0] // _fourier.ROWS_PER_CHUNK))
        partial = np.zeros((n_chunks, K), dtype=np.float64)
        if Xc.shape[0]:
            _fourier.fourier_frequency_grad(
                Xc, *self._run_args(), self.run_first_, Ga, partial, self._threads(Xc.shape[0])
            )
        g = partial.sum(axis=0)  # d/df_k, fixed summation order whatever the thread count
        run_of = np.repeat(np.arange(len(self.run_len_)), self.run_len_)
        k = np.arange(K) - np.repeat(self.run_first_, self.run_len_)
        d_f0 = np.bincount(run_of, weights=g, minlength=len(self.run_len_))
        d_df = np.bincount(run_of, weights=g * k, minlength=len(self.run_len_))
        return {"log_base": d_f0 * self.run_f0_, "log_spacing": d_df * self.run_df_}

    def _lattice_vjp(self, Xc, Ga) -> dict[str, np.ndarray]:
        d = Xc.shape[1]
        n_chunks = max(1, -(-Xc.shape[0] // _fourier_lattice.ROWS_PER_CHUNK))
        partial = np.zeros((n_chunks, d), dtype=np.float64)
        if Xc.shape[0]:
            K = np.ascontiguousarray(self.lattice_vectors_, dtype=np.float64)
            _fourier_lattice.lattice_base_grad(Xc, *self._lattice_args(), K, Ga, partial, self._threads(Xc.shape[0]))
        return {"log_base": partial.sum(axis=0) * self.base_}
