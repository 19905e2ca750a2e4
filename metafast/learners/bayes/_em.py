"""EM for the hierarchical Bayesian linear model behind MetaBayes (docs/derivations.md section 2.4).

Model: w_t ~ N(mu, Sigma), y_t | w_t ~ N(Phi_t w_t, s2 I).  The E-step (Cython, ``_kernels._bayes``)
turns every task into its posterior N(m_t, S_t) and adds its sufficient statistics to fixed blocks;
this module reduces the blocks (fixed order, so thread-count invariant) and does the closed-form
M-step:

    mu    = (1/T) sum_t m_t
    Sigma = ( sum_t [S_t + (m_t - mu)(m_t - mu)^T] + nu psi I ) / (T + nu)        (full)
            (same, diagonal only / mean of the diagonal for "diag" / "iso")
    s2    = (1/N) sum_t [ ||y_t - Phi_t m_t||^2 + tr(Phi_t S_t Phi_t^T) ]

The ``nu psi I`` term is the MAP update under the prior
log p(Sigma) = -nu/2 [log|Sigma| + psi tr(Sigma^{-1})] (an inverse-Wishart pulled toward psi I with
the weight of ``nu`` pseudo-tasks).  It keeps Sigma positive definite when there are fewer tasks
than basis functions; EM then never decreases log evidence + log p(Sigma) (and never decreases the
log evidence itself when nu = 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from metafast._kernels import _bayes
from metafast.learners._prior import GaussianPrior, whitening  # noqa: F401 (re-exported to the engine)
from metafast.learners.bayes._small import SMALL_M, small_em_stats

N_BLOCKS = 256  # accumulation blocks per E-step call (depends only on the number of tasks)
COVARIANCE_TYPES = ("full", "diag", "iso")
SMALL_WORK = 1e6  # flops of an E-step call below which one thread is faster than a team


@dataclass
class Stats:
    """Summed E-step statistics of a set of tasks (all in float64)."""

    n_tasks: int = 0
    n_points: int = 0
    sum_mean: np.ndarray | None = None  # sum_t m_t
    second_moment: np.ndarray | None = None  # sum_t S_t + m_t m_t^T
    noise: float = 0.0  # sum_t ||y_t - Phi_t m_t||^2 + tr(Phi_t S_t Phi_t^T)
    log_evidence: float = 0.0  # sum_t log p(y_t)
    n_jittered: int = 0
    n_failed: int = 0
    task_log_evidence: list = field(default_factory=list)

    def __iadd__(self, other: Stats) -> Stats:
        if self.sum_mean is None:
            self.sum_mean = np.zeros_like(other.sum_mean)
            self.second_moment = np.zeros_like(other.second_moment)
        self.n_tasks += other.n_tasks
        self.n_points += other.n_points
        self.sum_mean = self.sum_mean + other.sum_mean
        self.second_moment = self.second_moment + other.second_moment
        self.noise += other.noise
        self.log_evidence += other.log_evidence
        self.n_jittered += other.n_jittered
        self.n_failed += other.n_failed
        return self

    def __add__(self, other: Stats) -> Stats:
        out = Stats()
        out += self
        out += other
        return out

    def without_tasks(self) -> Stats:
        """A copy without the per-task log evidence list (what is kept between partial_fit calls)."""
        return Stats(
            self.n_tasks,
            self.n_points,
            self.sum_mean.copy(),
            self.second_moment.copy(),
            self.noise,
            self.log_evidence,
            self.n_jittered,
            self.n_failed,
        )


def estep(
    Phi: np.ndarray,
    y: np.ndarray,
    offsets: np.ndarray,
    prior: GaussianPrior,
    n_threads: int,
    keep_task_values: bool = False,
    with_means: bool = True,
) -> tuple[Stats, np.ndarray | None]:
    """E-step over packed tasks: (summed statistics, posterior means (T, m), or None when
    ``with_means`` is False: the EM passes need only the sums, and the means cost a T x m x m
    product).

    Works in whitened coordinates w = mu + U v, v ~ N(0, I) (Sigma = U U^T): the kernel forms the
    whitened design Phi U one block of tasks at a time (one GEMM per block, in cache) and does
    the per-task Cholesky work.  The statistics are mapped back to w here.
    """
    dtype = Phi.dtype
    T = offsets.shape[0] - 1
    m = Phi.shape[1]
    mu = np.asarray(prior.mean, dtype=np.float64)
    U = whitening(prior)
    A = prior.design_map  # w = A v: the statistics stay in v's coordinates
    mu_w, U_w = (mu, U) if A is None else (A @ mu, A @ U)
    Phi = np.ascontiguousarray(Phi)
    r = np.ascontiguousarray(np.asarray(y, dtype=dtype) - Phi @ mu_w.astype(dtype), dtype=dtype)
    diag_stats = prior.kind != "full"
    if m <= SMALL_M and not (keep_task_values or with_means) and T > 0 and offsets[0] == 0:
        E, sum_v, s = small_em_stats(Phi, U_w, r, offsets, prior.noise_var)  # batched, no kernel
        return _mapped_back(T, mu, U, E, sum_v, s, diag_stats, 0, 0), None
    block = max(1, -(-T // N_BLOCKS))
    n_blocks = -(-T // block)
    V = np.empty((T, m), dtype=dtype)
    logp = np.empty(T, dtype=np.float64)
    status = np.empty(T, dtype=np.intc)
    acc_D = np.empty((n_blocks, m, m), dtype=np.float64)
    acc_m = np.empty((n_blocks, m), dtype=np.float64)
    acc_s = np.empty((n_blocks, 4), dtype=np.float64)
    _bayes.em_stats(
        Phi,
        np.ascontiguousarray(U_w, dtype=dtype),
        prior.kind != "full",
        r,
        offsets,
        float(prior.noise_var),
        diag_stats,
        block,
        kernel_threads(Phi.shape[0], T, m, n_threads),
        V,
        logp,
        status,
        acc_D,
        acc_m,
        acc_s,
    )
    D = acc_D.sum(axis=0)
    D = np.triu(D) + np.triu(D, 1).T
    s = acc_s.sum(axis=0)
    E = D + s[2] * np.eye(m)  # sum_t S'_t + v_t v_t^T in whitened coordinates
    stats = _mapped_back(
        T, mu, U, E, acc_m.sum(axis=0), s, diag_stats, int((status > 0).sum()), int((status < 0).sum())
    )
    means = (mu_w + V.astype(np.float64) @ U_w.T).astype(dtype) if with_means else None
    if keep_task_values:
        stats.task_log_evidence = [logp]
    return stats, means


def _mapped_back(T, mu, U, E, sum_v, s, diag_stats: bool, n_jittered: int, n_failed: int) -> Stats:
    """Stats of w = mu + U v from the whitened sums E = sum S'_t + v_t v_t^T and sum_v."""
    if diag_stats:
        E = np.diag(np.diag(E))
    Usv = U @ sum_v
    sum_mean = T * mu + Usv
    second = U @ E @ U.T + T * np.outer(mu, mu) + np.outer(mu, Usv) + np.outer(Usv, mu)
    if diag_stats:
        second = np.diag(np.diag(second))
    return Stats(T, int(round(s[3])), sum_mean, second, float(s[1]), float(s[0]), n_jittered, n_failed)


def kernel_threads(n_rows: int, n_tasks: int, m: int, n_threads: int) -> int:
    """Threads worth starting for one E-step call: one below ``SMALL_WORK`` flops, where waking
    a thread team costs more than the arithmetic (q = 2, 2,000 groups: 2.6 ms on one thread,
    20 ms on two on a busy machine)."""
    return 1 if n_rows * m * m + n_tasks * m**3 < SMALL_WORK else n_threads


def log_prior(prior: GaussianPrior, nu: float, psi) -> float:
    """log p(Sigma) = -nu/2 [log|Sigma| + tr(Sigma^{-1} Psi)] (up to a constant), Psi = psi I in
    the user's coordinates.  With a design map A the prior is on v (Sigma = A Sigma_v A^T), so
    ``psi`` is the whitened target psi A^-1 A^-T and log|Sigma| gains 2 log|det A|."""
    if nu == 0:
        return 0.0
    inv, logdet = prior.factor()
    if prior.design_map is not None:
        logdet += 2.0 * float(np.linalg.slogdet(prior.design_map)[1])
    spread = float(np.sum(inv * psi)) if np.ndim(psi) == 2 else psi * float(np.trace(inv))
    return -0.5 * nu * (logdet + spread)


def mstep(stats: Stats, prior: GaussianPrior, nu: float, psi, noise_floor: float) -> GaussianPrior:
    """Closed-form M-step (MAP in Sigma with the shrinkage prior); see the module docstring.

    ``psi`` is the shrinkage target: a float (psi I) or, in whitened coordinates, a matrix."""
    T = stats.n_tasks
    m = stats.sum_mean.shape[0]
    mu = stats.sum_mean / T
    scatter = stats.second_moment - T * np.outer(mu, mu)  # sum_t S_t + (m_t - mu)(m_t - mu)^T
    target = psi if np.ndim(psi) == 2 else psi * np.eye(m)
    if prior.kind == "full":
        cov = (scatter + nu * target) / (T + nu)
        cov = 0.5 * (cov + cov.T)
    elif prior.kind == "diag":
        cov = np.diag((np.diag(scatter) + nu * np.diag(target)) / (T + nu))
    else:
        cov = np.eye(m) * (float(np.trace(scatter)) / m + nu * float(np.trace(target)) / m) / (T + nu)
    # a variance can never be negative; round-off in float32 statistics could make it so
    d = np.diag(cov).copy()
    floor = np.finfo(np.float64).eps * max(float(d.max(initial=0.0)), 1e-300)
    if np.any(d < floor):
        cov[np.diag_indices(m)] = np.maximum(d, floor)
    noise = stats.noise / stats.n_points if stats.n_points > 0 else prior.noise_var
    return GaussianPrior(mu, cov, max(float(noise), noise_floor), prior.kind, prior.design_map)
