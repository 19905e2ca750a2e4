"""Direct maximisation of the MetaBayes objective by L-BFGS-B with the exact gradient of one pass.

The objective is F(theta) = sum_t log p(y_t | theta) + log p(Sigma), theta = (mu, Sigma, s2).
By Fisher's identity its gradient is the expected complete-data gradient under the posterior,
which needs exactly the sums one E-step pass already returns (``Stats``):

    dF/dmu    = Sigma^-1 (sum_t m_t - T mu)
    dF/dSigma = 1/2 Sigma^-1 [ Scatter + nu Psi - (T + nu) Sigma ] Sigma^-1,
                Scatter = sum_t S_t + (m_t - mu)(m_t - mu)^T
    dF/dlog s2 = 1/2 [ sum_t (||y_t - Phi_t m_t||^2 + tr(Phi_t S_t Phi_t^T)) / s2 - N ]

so one evaluation (value and gradient) costs one EM pass.  The free parameters are mu, the
Cholesky factor L of Sigma (Sigma = L L^T, log of its diagonal; "diag"/"iso": the log
variances) and log s2, bounded below by the noise floor.  The EM's whitened coordinates make
this well conditioned, and L-BFGS-B's line search (Wolfe conditions) makes every accepted
iterate increase F: the trace of kept iterates never decreases.  If the line search fails,
the run falls back to SQUAREM EM from the best point (the safeguard), which is monotone too.

The zero of the M-step fixed point is a zero of this gradient (EM's fixed points are
stationary points of F), so both stop at the same optimum.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from metafast.learners.bayes._em import GaussianPrior, Stats

_MAX_LOG = 700.0


def _factor(prior: GaussianPrior) -> np.ndarray:
    """U with Sigma = U U^T: the lower Cholesky factor, or the diagonal of standard deviations."""
    if prior.kind == "full":
        return np.linalg.cholesky(0.5 * (prior.cov + prior.cov.T))
    return np.diag(np.sqrt(np.diag(prior.cov)))


class Coordinates:
    """The optimiser's vector x = (z, K, t) around a centre prior (mu0, U0 U0^T, s0):

        mu = mu0 + U0 z,   Sigma = U0 K K^T U0^T,   s2 = s0 exp(t)

    with K lower triangular with log diagonal ("diag"/"iso": log of K's diagonal squared).
    Centred on the start, the complete-data curvature (EM's metric) is about T I in every
    direction, so L-BFGS starts from a well-scaled problem instead of learning the scales."""

    def __init__(self, centre: GaussianPrior):
        self.like = centre
        self.mu0 = centre.mean.copy()
        self.U0 = _factor(centre)
        self.s0 = float(centre.noise_var)
        self.m = centre.mean.shape[0]

    def start(self) -> np.ndarray:
        m = self.m
        n_f = m * (m + 1) // 2 if self.like.kind == "full" else (m if self.like.kind == "diag" else 1)
        return np.zeros(m + n_f + 1)

    def prior(self, x: np.ndarray) -> tuple[GaussianPrior, np.ndarray]:
        """(prior, K) at x."""
        m, kind = self.m, self.like.kind
        z, f, t = x[:m], x[m:-1], float(x[-1])
        if kind == "full":
            rows, cols = np.tril_indices(m)
            vals = f.copy()
            diag = rows == cols
            vals[diag] = np.exp(np.minimum(vals[diag], _MAX_LOG))
            K = np.zeros((m, m))
            K[rows, cols] = vals
        else:
            k = np.exp(0.5 * np.minimum(f if kind == "diag" else np.full(m, f[0]), _MAX_LOG))
            K = np.diag(k)
        UK = self.U0 @ K
        cov = UK @ UK.T
        noise = self.s0 * float(np.exp(min(t, _MAX_LOG)))
        return GaussianPrior(self.mu0 + self.U0 @ z, 0.5 * (cov + cov.T), noise, kind, self.like.design_map), K

    def log_noise_bound(self, floor: float) -> float:
        return float(np.log(floor / self.s0))

    def gradient(self, stats: Stats, prior: GaussianPrior, K: np.ndarray, nu: float, psi) -> np.ndarray:
        """dF/dx from the statistics of one pass at ``prior`` (module docstring)."""
        T, m, kind = stats.n_tasks, self.m, self.like.kind
        mu, sm = prior.mean, stats.sum_mean
        scatter = stats.second_moment - np.outer(mu, sm) - np.outer(sm, mu) + T * np.outer(mu, mu)
        target = psi if np.ndim(psi) == 2 else psi * np.eye(m)
        inv, _ = prior.factor()
        g_mu = inv @ (sm - T * mu)
        G = 0.5 * inv @ (scatter + nu * target - (T + nu) * prior.cov) @ inv
        Gc = self.U0.T @ (0.5 * (G + G.T)) @ self.U0  # dF/d(K K^T)
        if kind == "full":
            dK = np.tril(2.0 * Gc @ K)
            rows, cols = np.tril_indices(m)
            g_f = dK[rows, cols]
            g_f[rows == cols] *= np.diag(K)
        elif kind == "diag":
            g_f = np.diag(Gc) * np.diag(K) ** 2
        else:
            g_f = np.array([float(np.diag(Gc) @ np.diag(K) ** 2)])
        g_t = 0.5 * (stats.noise / prior.noise_var - stats.n_points)
        return np.concatenate((self.U0.T @ g_mu, g_f, [g_t]))


def gradient_norm(stats: Stats, prior: GaussianPrior, nu: float, psi) -> float:
    """max |dF/dx| / T at a prior and its statistics, in coordinates centred on it (what
    ``convergence_`` reports: the gradient in units of the prior's own spread)."""
    coords = Coordinates(prior)
    at, K = coords.prior(coords.start())
    return float(np.abs(coords.gradient(stats, at, K, nu, psi)).max()) / max(stats.n_tasks, 1)


def gradient_tol(tol: float) -> float:
    """The gradient-per-task threshold matching ``tol`` (an objective change per task): near the
    optimum the remaining gain per task is about |g|^2 / (2 curvature), with the curvature per
    task of order one in the centred coordinates, so |g| <= sqrt(tol) / 3 leaves < tol / 18."""
    return float(np.sqrt(tol)) / 3.0


def lbfgs(run, prior: GaussianPrior, stats: Stats):
    """Maximise the objective from ``prior`` (whose statistics are ``stats``) by L-BFGS-B.

    ``run`` is the ``EMRun`` (passes, history, stopping rule).  Starts from the EM step of
    ``prior`` (free: its statistics are at hand).  Returns (prior, stats, reason).
    """
    lr = run.learner
    run.change_rule = False
    gtol = gradient_tol(lr.tol)
    coords = Coordinates(run.mstep(stats, prior))
    x0 = coords.start()
    n = x0.shape[0]
    T = stats.n_tasks
    evaluated: dict = {}
    best = {"f": np.inf, "prior": prior, "stats": stats}

    def fun(x):
        cand, K = coords.prior(x)
        cand_stats = run.estep(cand)
        F = run.objective(cand_stats, cand)
        if not np.isfinite(F):
            return np.inf, np.zeros(n)
        g = coords.gradient(cand_stats, cand, K, lr._nu, lr._psi)
        evaluated[x.tobytes()] = (cand, cand_stats, g)
        if -F < best["f"]:
            best.update(f=-F, prior=cand, stats=cand_stats)
        return -F / T, -g / T

    low = coords.log_noise_bound(lr._noise_floor)

    def callback(intermediate_result):
        x = intermediate_result.x
        kept = evaluated.get(x.tobytes())
        if kept is None:
            return
        evaluated.clear()
        evaluated[x.tobytes()] = kept
        g = kept[2].copy()
        if x[-1] <= low + 1e-12 and g[-1] < 0:  # the noise floor holds: no ascent left there
            g[-1] = 0.0
        run.gradient_norm = float(np.abs(g).max()) / T
        run.converged = run.gradient_norm <= gtol
        if run.keep(kept[0], kept[1]):
            raise StopIteration

    bounds = [(None, None)] * (n - 1) + [(coords.log_noise_bound(lr._noise_floor), None)]
    budget = max(run.budget, 1)
    res = minimize(
        fun,
        x0,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        callback=callback,
        options={"maxiter": budget, "maxfun": 3 * budget, "ftol": 0.0, "gtol": 0.0, "maxcor": 20},
    )
    prior, stats = best["prior"], best["stats"]
    run.change_rule = True
    if run.converged:
        return prior, stats, f"gradient per task {run.gradient_norm:.2g} <= {gtol:.2g}"
    if lr._objective[-1] < -best["f"]:  # the best point was a trial point: keep it
        run.keep(prior, stats)
    if run.converged:
        return prior, stats, "objective change per task below tol"
    if run.budget <= 0:
        return prior, stats, "max_iter reached"
    # the line search stopped (round-off near the optimum, or a boundary): monotone EM finishes
    prior, stats = run.squarem(prior, stats)
    why = f"objective change per task below tol (SQUAREM EM after L-BFGS: {res.message})"
    return prior, stats, why if run.converged else "max_iter reached"
