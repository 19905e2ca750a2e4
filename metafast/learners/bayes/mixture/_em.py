"""The EM engine of the mixture prior: packed-task input checks, parameters, E- and M-steps.

Works on packed design matrices (Phi (N, m), y (N,), task row offsets (T+1,)), already rescaled
by the estimator (``_mixture.MixturePrior``); the E-step for every task and component is one
Cython call (``metafast._kernels._mixture.em_step``).  The equations are in ``_mixture``'s module
docstring and docs/derivations.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.linalg import solve_triangular

from metafast._kernels import _mixture as _k
from metafast._validation import check_offsets, check_X, check_y
from metafast.parallel import one_blas_thread
from metafast.tasks._taskset import gather_task_rows

_RESP_FLOOR = 1e-10  # a task's component with a smaller responsibility adds no M-step statistics
_MIN_WEIGHT = 0.5  # a component holding less than half a task's worth of responsibility collapsed
_COVAR_FLOOR = 1e-9  # relative diagonal floor added to every Sigma_c (in the rescaled space)
_NOISE_FLOOR = 1e-8  # smallest noise variance, as a fraction of the mean squared target (y has unit
# RMS in the rescaled space): predictive std >= 1e-4 x RMS(y), noise-free tasks allowed
_BLOCK_BYTES = 128 * 2**20  # memory budget of the per-block M-step statistics
_MAX_BLOCKS = 64
_CHUNK_ROWS = 512  # design rows per level-3 call in the EM kernel (at most)
_CHUNK_BYTES = 16 * 2**20  # per-thread scratch budget of those calls


# ---------------------------------------------------------------------------------------- input
def _check_packed(Phi: Any, y: Any, offsets: Any, name: str = "Phi", n_basis: int | None = None):
    """Validated float64 (Phi, y, offsets int64) of packed tasks."""
    Phi = check_X(Phi, name, n_features=n_basis, dtype=np.float64)
    y = check_y(y, "y" if name == "Phi" else "y_" + name.split("_")[-1], n_samples=Phi.shape[0])
    oname = "offsets" if name == "Phi" else name.split("_")[-1] + "_offsets"
    return Phi, y, check_offsets(offsets, Phi.shape[0], oname)


def _check_query(Phi_q: Any, q_offsets: Any, n_basis: int, n_tasks: int):
    Phi_q = check_X(Phi_q, "Phi_q", n_features=n_basis, dtype=np.float64)
    return Phi_q, check_offsets(q_offsets, Phi_q.shape[0], "q_offsets", n_tasks=n_tasks)


def _take_tasks(Phi: np.ndarray, y: np.ndarray, offsets: np.ndarray, idx: np.ndarray):
    """The packed (Phi, y, offsets) of the tasks ``idx``, in that order (TaskSet's row gather)."""
    rows, new_off = gather_task_rows(offsets, np.asarray(idx, dtype=np.int64))
    return np.ascontiguousarray(Phi[rows]), np.ascontiguousarray(y[rows]), new_off


def _symmetrise_lower(G: np.ndarray) -> np.ndarray:
    """Full symmetric matrices from the row-major lower triangles the kernel fills."""
    low = np.tril(G)
    return low + np.swapaxes(np.tril(G, -1), -1, -2)


# ---------------------------------------------------------------------------------------- params
class _Params:
    """Mixture parameters in the rescaled space, with the Cholesky factors the kernels need."""

    def __init__(self, weights, means, covs, noise_var):
        self.weights = np.asarray(weights, dtype=np.float64)
        self.means = np.ascontiguousarray(means, dtype=np.float64)
        self.noise_var = float(noise_var)
        self.covs, self.chol, self.n_jitter = _factor_covariances(np.asarray(covs, dtype=np.float64))

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def log_weights(self) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(self.weights)


def _factor_covariances(covs: np.ndarray):
    """Symmetrised covariances with a small relative floor and their lower Cholesky factors."""
    m = covs.shape[-1]
    covs = 0.5 * (covs + np.swapaxes(covs, -1, -2))
    scale = np.maximum(np.trace(covs, axis1=-2, axis2=-1) / m, np.finfo(np.float64).tiny)
    eye = np.eye(m)
    covs = covs + (_COVAR_FLOOR * scale)[:, None, None] * eye
    n_jitter = 0
    chol = np.empty_like(covs)
    for c in range(covs.shape[0]):  # C factorisations of m x m once per iteration, not per task
        jitter = 0.0
        while True:
            try:
                chol[c] = np.linalg.cholesky(covs[c] + jitter * eye)
                break
            except np.linalg.LinAlgError:
                n_jitter += 1
                jitter = 1e-8 * scale[c] if jitter == 0.0 else jitter * 10.0
                if jitter > scale[c]:
                    raise FloatingPointError(
                        "a component covariance is not positive definite even with jitter"
                    ) from None
        covs[c] += jitter * eye
    return covs, np.ascontiguousarray(chol), n_jitter


def posterior(Phi, y, offsets, p: _Params, post_means, post_covs, n_threads: int):
    """(responsibilities (T, C), log evidence (T,)) of packed rescaled tasks under ``p``; fills
    each task's per-component posterior means (and covariances unless ``post_covs`` is None)."""
    T = len(offsets) - 1
    resp, log_ev = np.empty((T, p.n_components)), np.empty(T)
    n_jitter = np.zeros(T, dtype=np.int32)
    covs = post_covs if post_covs is not None else np.empty((1, 1, 1, 1))
    with one_blas_thread():
        _k.posterior(
            Phi,
            y,
            offsets,
            p.chol,
            p.means,
            p.log_weights,
            p.noise_var,
            resp,
            log_ev,
            post_means,
            covs,
            n_jitter,
            post_covs is not None,
            n_threads,
        )
    if np.any(n_jitter < 0):
        raise FloatingPointError("a task's marginal covariance could not be factored even with jitter")
    return resp, log_ev


# ---------------------------------------------------------------------------------------- EM
def _collapse_threshold(n_tasks: int, n_comp: int) -> float:
    """Total responsibility below which a component counts as collapsed (and is dropped)."""
    return min(_MIN_WEIGHT, 0.5 * n_tasks / n_comp)


class _EM:
    """E- and M-steps over fixed packed (rescaled) data; one instance per fit."""

    def __init__(self, Phi, y, offsets, covariance, n_threads, prior_weight=0.0):
        self.Phi, self.y, self.offsets = Phi, y, offsets
        self.covariance = covariance
        self.n_threads = n_threads
        self.prior_weight = float(prior_weight)
        self.psi = 1.0 / max(Phi.shape[1], 1)  # shrinkage target psi I: the isotropic start
        self.n_tasks = len(offsets) - 1
        self.n_points = int(offsets[-1])
        self.n_basis = Phi.shape[1]
        self.n_jitter = 0

    def _blocks(self, n_comp: int) -> np.ndarray:
        m = self.Phi.shape[1]
        per_block = max(1, n_comp * m * m * 8)
        n_blocks = int(max(1, min(self.n_tasks, _MAX_BLOCKS, _BLOCK_BYTES // per_block)))
        return np.linspace(0, self.n_tasks, n_blocks + 1).round().astype(np.int64)

    def _chunk_rows(self, n_comp: int) -> int:
        """Rows per level-3 call: _CHUNK_ROWS, fewer when per-thread scratch (3 C m rows) would
        exceed _CHUNK_BYTES."""
        m = self.Phi.shape[1]
        return int(np.clip(_CHUNK_BYTES // (3 * n_comp * m * 8), 32, _CHUNK_ROWS))

    def estep(self, p: _Params, accumulate: bool = True) -> dict:
        T, C, m = self.n_tasks, p.n_components, self.Phi.shape[1]
        blocks = self._blocks(C) if accumulate else np.array([0, T], dtype=np.int64)
        B = len(blocks) - 1
        out = dict(
            log_lik=np.empty((T, C)),
            resp=np.empty((T, C)),
            log_ev=np.empty(T),
            n_jitter=np.zeros(T, dtype=np.int32),
            sum_r=np.zeros((B, C)),
            sum_u=np.zeros((B, C, m) if accumulate else (1, 1, 1)),
            sum_G=np.zeros((B, C, m, m) if accumulate else (1, 1, 1, 1)),
            sum_noise=np.zeros(B),
        )
        with one_blas_thread():
            _k.em_step(
                self.Phi,
                self.y,
                self.offsets,
                p.chol,
                p.means,
                p.log_weights,
                p.noise_var,
                blocks,
                out["log_lik"],
                out["resp"],
                out["log_ev"],
                out["n_jitter"],
                out["sum_r"],
                out["sum_u"],
                out["sum_G"],
                out["sum_noise"],
                _RESP_FLOOR,
                accumulate,
                self._chunk_rows(C),
                self.n_threads,
            )
        if np.any(out["n_jitter"] < 0):
            bad = int(np.flatnonzero(out["n_jitter"] < 0)[0])
            raise FloatingPointError(
                f"the marginal covariance of task {bad} could not be factored even "
                "with jitter: check the basis design for inf/huge values"
            )
        self.n_jitter += int(out["n_jitter"].sum())
        out["total"] = float(out["log_ev"].sum())
        out["objective"] = out["total"] + self.log_prior(p)
        return out

    def posterior_means(self, p: _Params) -> np.ndarray:
        """(T, m) posterior means of every task under the one-component prior ``p``."""
        post = np.empty((self.n_tasks, 1, self.n_basis))
        posterior(self.Phi, self.y, self.offsets, p, post, None, self.n_threads)
        return post[:, 0, :]

    def take(self, idx: np.ndarray) -> _EM:
        """The same EM on the tasks ``idx`` only."""
        return _EM(
            *_take_tasks(self.Phi, self.y, self.offsets, idx), self.covariance, self.n_threads, self.prior_weight
        )

    def log_prior(self, p: _Params) -> float:
        """sum_c log p(Sigma_c) = -nu/2 sum_c [log|Sigma_c| + psi tr(Sigma_c^{-1})] (0 when nu = 0)."""
        if self.prior_weight == 0.0:
            return 0.0
        L = p.chol
        logdet = 2.0 * np.log(np.einsum("cii->ci", L)).sum(axis=1)
        m = L.shape[-1]
        Linv = np.linalg.solve(L, np.broadcast_to(np.eye(m), L.shape))  # tr(S^-1) = ||L^-1||_F^2
        tr_inv = np.einsum("cij,cij->c", Linv, Linv)
        return float(-0.5 * self.prior_weight * np.sum(logdet + self.psi * tr_inv))

    def mstep(self, p: _Params, stats: dict) -> tuple[_Params, list]:
        """Closed-form updates; components whose weight collapsed are dropped (and returned)."""
        r = stats["sum_r"].sum(axis=0)
        U = stats["sum_u"].sum(axis=0)
        G = _symmetrise_lower(stats["sum_G"].sum(axis=0))
        keep = r >= _collapse_threshold(self.n_tasks, p.n_components)
        dropped = [(int(c), float(r[c])) for c in np.flatnonzero(~keep)]
        r, U, G = r[keep], U[keep], G[keep]
        Sig, mu = p.covs[keep], p.means[keep]
        d = np.einsum("cij,cj->ci", Sig, U) / r[:, None]
        means = mu + d
        covs = Sig + Sig @ (G / r[:, None, None]) @ Sig - d[:, :, None] * d[:, None, :]
        eye = np.eye(covs.shape[-1])
        if self.covariance == "diag":
            covs = np.einsum("cii->ci", covs)[:, :, None] * eye
        elif self.covariance == "spherical":
            covs = (np.trace(covs, axis1=-2, axis2=-1) / covs.shape[-1])[:, None, None] * eye
        nu = self.prior_weight
        if nu > 0.0:  # MAP: r_c tasks' scatter plus nu pseudo-tasks of covariance psi I
            covs = (r[:, None, None] * covs + (nu * self.psi) * eye) / (r + nu)[:, None, None]
        noise = stats["sum_noise"].sum() / max(self.n_points, 1)
        noise = max(noise, _NOISE_FLOOR)  # y has unit RMS here: the floor is relative to its scale
        return _Params(r / r.sum(), means, covs, noise), dropped

    def run(self, p: _Params, n_iter: int, tol: float, stats: dict | None = None, progress=None):
        """EM from p for up to n_iter iterations; returns (params, last E-step stats, history,
        dropped, converged).  history[i] is (summed log evidence, MAP objective) after iteration i;
        convergence is judged on the objective (what MAP-EM climbs)."""
        stats = self.estep(p) if stats is None else stats
        history, dropped, converged = [], [], False
        prev = stats["objective"]
        for it in range(n_iter):
            p, drop = self.mstep(p, stats)
            dropped += [(it, c, w) for c, w in drop]
            stats = self.estep(p)
            history.append((stats["total"], stats["objective"]))
            if progress is not None:
                progress.update(1)
            if not drop and abs(stats["objective"] - prev) <= tol * max(abs(stats["objective"]), 1.0):
                converged = True
                break
            prev = stats["objective"]
        return p, stats, history, dropped, converged


def _gaussian_log_lik(Phi: np.ndarray, y: np.ndarray, mean: np.ndarray, cov: np.ndarray, noise_var: float) -> float:
    """log N(y; Phi mean, Phi cov Phi^T + noise_var I): one component's predictive density."""
    K = Phi @ cov @ Phi.T
    K[np.diag_indices_from(K)] += noise_var
    L = np.linalg.cholesky(0.5 * (K + K.T))
    z = solve_triangular(L, y - Phi @ mean, lower=True)
    return float(-0.5 * z @ z - np.log(np.diag(L)).sum() - 0.5 * len(y) * np.log(2 * np.pi))


def _mixture_moments(resp: np.ndarray, cmean: np.ndarray, cvar: np.ndarray):
    """Mean and variance of sum_c resp_c N(cmean_c, cvar_c), row by row (variance >= 0 by form)."""
    mean = np.sum(resp * cmean, axis=1)
    var = np.sum(resp * (cvar + (cmean - mean[:, None]) ** 2), axis=1)
    return mean, var
