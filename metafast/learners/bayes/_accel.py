"""Extrapolation steps that accelerate the MetaBayes EM (SQUAREM and over-relaxation).

EM is a fixed-point map F on the prior theta = (mu, Sigma, log sigma^2).  SQUAREM (Varadhan and
Roland 2008, scheme S3) takes two EM steps theta1 = F(theta0), theta2 = F(theta1), and jumps along
the parabola through them:

    r = theta1 - theta0,   v = theta2 - 2 theta1 + theta0,   a = max(1, min(a_max, ||r|| / ||v||))
    theta' = theta0 + 2 a r + a^2 v                      (a = 1 gives theta2, the plain EM pair)

The noise variance is extrapolated in log space (so it stays positive) and Sigma linearly, with
``a`` halved toward 1 until Sigma is positive definite.  The caller evaluates the objective at
theta' and keeps it only if it did not decrease (else it takes theta2), so the fit stays monotone.
``a_max`` grows x4 after a kept full-length step and shrinks after a rejected one (the schedule of
the SQUAREM reference implementation).
"""

from __future__ import annotations

import numpy as np

from metafast.learners.bayes._em import GaussianPrior, Stats, mstep

STEP_GROWTH = 4.0  # a_max multiplier after a kept step at a_max (and divisor after a rejection)
STEP_MAX_START = 1.0  # the first pair is a plain EM pair; a_max grows from there


def _cov_part(prior: GaussianPrior) -> np.ndarray:
    return prior.cov if prior.kind == "full" else np.diag(prior.cov)


def _vector(prior: GaussianPrior) -> np.ndarray:
    """theta as one vector: mean, covariance (the free entries), log noise variance."""
    return np.concatenate((prior.mean, _cov_part(prior).ravel(), [np.log(prior.noise_var)]))


def _unit_weights(prior: GaussianPrior) -> np.ndarray:
    """Per-entry weights that make the step length a independent of the units of the weights
    (mean_i in prior standard deviations, Sigma_ij in sd_i sd_j), so rescaling a basis function
    or the targets leaves the EM path unchanged."""
    sd = np.sqrt(np.maximum(np.diag(prior.cov), np.finfo(np.float64).tiny))
    cov_w = 1.0 / np.outer(sd, sd) if prior.kind == "full" else 1.0 / sd**2
    return np.concatenate((1.0 / sd, cov_w.ravel(), [1.0]))


def _is_positive_definite(cov: np.ndarray) -> bool:
    if not np.all(np.isfinite(cov)):
        return False
    try:
        np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        return False
    return True


def _prior_at(theta: np.ndarray, like: GaussianPrior, noise_floor: float) -> GaussianPrior | None:
    """The prior a parameter vector stands for; None if its covariance is not positive definite."""
    m = like.mean.shape[0]
    mean = theta[:m].copy()
    if like.kind == "full":
        cov = theta[m : m + m * m].reshape(m, m)
        cov = 0.5 * (cov + cov.T)
    else:
        d = theta[m : 2 * m]
        if like.kind == "iso":
            d = np.full(m, d.mean())
        cov = np.diag(d)
    if not _is_positive_definite(cov):
        return None
    noise = float(np.exp(min(theta[-1], 700.0)))
    return GaussianPrior(mean, cov, max(noise, noise_floor), like.kind, like.design_map)


def squarem_step(
    theta0: GaussianPrior, theta1: GaussianPrior, theta2: GaussianPrior, step_max: float, noise_floor: float
) -> tuple[GaussianPrior, float]:
    """(theta', a): the SQUAREM point from three successive EM iterates and the step length used.

    a = 1 returns theta2 itself (nothing to gain: the caller can skip evaluating it).
    """
    t0, t1, t2 = _vector(theta0), _vector(theta1), _vector(theta2)
    r = t1 - t0
    v = t2 - 2.0 * t1 + t0
    w = _unit_weights(theta0)
    rr, vv = float((w * r) @ (w * r)), float((w * v) @ (w * v))
    if not (vv > 0 and np.isfinite(rr) and np.isfinite(vv)):
        return theta2, 1.0
    a = min(max(1.0, np.sqrt(rr / vv)), step_max)
    while a > 1.0 + 1e-12:
        cand = _prior_at(t0 + 2.0 * a * r + a * a * v, theta2, noise_floor)
        if cand is not None:
            return cand, a
        a = 0.5 * (a + 1.0)
    return theta2, 1.0


def next_step_max(step_max: float, a: float, accepted: bool) -> float:
    """a_max for the next SQUAREM iteration."""
    if not accepted:
        return max(STEP_MAX_START, step_max / STEP_GROWTH)
    if a >= step_max * (1 - 1e-12):
        return step_max * STEP_GROWTH
    return step_max


def overrelaxed(old: GaussianPrior, new: GaussianPrior, eta: float, noise_floor: float) -> GaussianPrior | None:
    """The over-relaxed step old + eta (new - old) (Salakhutdinov and Roweis 2003; noise in log
    space); None if Sigma loses positive definiteness."""
    cov = old.cov + eta * (new.cov - old.cov)
    cov = 0.5 * (cov + cov.T)
    if not _is_positive_definite(cov):
        return None
    noise = old.noise_var * (new.noise_var / old.noise_var) ** eta
    return GaussianPrior(
        old.mean + eta * (new.mean - old.mean), cov, max(float(noise), noise_floor), new.kind, new.design_map
    )


class EMRun:
    """One EM run of a MetaBayes fit: plain, over-relaxed or SQUAREM iterations.

    ``learner`` supplies ``_estep_all(source, prior, cache)`` (one pass over the data),
    ``_objective_of(stats, prior)`` and ``_record(stats, prior)`` (which appends to the history),
    and the settings ``max_iter``, ``tol``, ``_nu``, ``_psi``, ``_noise_floor``.  ``fixed`` are
    frozen statistics added to every M-step (partial_fit).  Every kept update is recorded and is
    one iteration; the objective never decreases from one recorded update to the next.
    """

    def __init__(self, learner, source, cache, fixed, n_tasks: int):
        self.learner, self.source, self.cache, self.fixed = learner, source, cache, fixed
        self.tol_total = learner.tol * n_tasks
        self.budget = learner.max_iter
        self.converged = False
        self.reason = None
        self.change_rule = True  # stop on the objective's change (L-BFGS stops on its gradient)
        self.bar = None

    # ------------------------------------------------------------------ pieces
    def mstep(self, stats: Stats, prior: GaussianPrior) -> GaussianPrior:
        lr = self.learner
        total = stats if self.fixed is None else combined(stats, self.fixed)
        return mstep(total, prior, lr._nu, lr._psi, lr._noise_floor)

    def estep(self, prior: GaussianPrior) -> Stats:
        self.learner.n_passes_ += 1
        return self.learner._estep_all(self.source, prior, self.cache)

    def keep(self, prior: GaussianPrior, stats: Stats) -> bool:
        """Record a kept update; True when the run should stop (converged or out of budget)."""
        lr = self.learner
        lr._record(stats, prior)
        lr._passes_at.append(lr.n_passes_)
        lr.n_iter_ += 1
        self.budget -= 1
        if self.bar is not None:
            self.bar.update(1)
        if self.change_rule and abs(lr._objective[-1] - lr._objective[-2]) <= self.tol_total:
            self.converged = True
        return self.converged or self.budget <= 0

    def objective(self, stats: Stats, prior: GaussianPrior) -> float:
        return self.learner._objective_of(stats, prior)

    # ------------------------------------------------------------------ schemes
    def plain(self, prior: GaussianPrior, stats: Stats):
        while self.budget > 0:
            prior = self.mstep(stats, prior)
            stats = self.estep(prior)
            if self.keep(prior, stats):
                break
        return prior, stats

    def overrelax(self, prior: GaussianPrior, stats: Stats):
        """Adaptive over-relaxed EM: eta x1.5 after a kept stretched step (at most 16), back to
        the plain step and eta = 1 when the stretched step lowers the objective."""
        eta = 1.0
        while self.budget > 0:
            em_prior = self.mstep(stats, prior)
            cand = overrelaxed(prior, em_prior, eta, self.learner._noise_floor) if eta > 1 else em_prior
            cand_stats = self.estep(cand) if cand is not None else None
            if cand is not em_prior and (
                cand is None or self.objective(cand_stats, cand) < self.learner._objective[-1]
            ):
                cand, cand_stats, eta = em_prior, self.estep(em_prior), 1.0
            else:
                eta = min(eta * 1.5, 16.0)
            prior, stats = cand, cand_stats
            if self.keep(prior, stats):
                break
        return prior, stats

    def lbfgs(self, prior: GaussianPrior, stats: Stats):
        """L-BFGS-B on the objective with the exact one-pass gradient (``_lbfgs``), SQUAREM as
        the safeguard; sets ``reason``."""
        from metafast.learners.bayes._lbfgs import lbfgs

        prior, stats, self.reason = lbfgs(self, prior, stats)
        return prior, stats

    def squarem(self, prior: GaussianPrior, stats: Stats):
        """SQUAREM (module docstring): per cycle one EM step (kept), then the extrapolated point,
        kept if the objective did not decrease, else the second EM step."""
        floor = self.learner._noise_floor
        step_max = STEP_MAX_START
        while self.budget > 0:
            p1 = self.mstep(stats, prior)
            s1 = self.estep(p1)
            if self.keep(p1, s1):
                return p1, s1
            p2 = self.mstep(s1, p1)
            cand, a = squarem_step(prior, p1, p2, step_max, floor)
            accepted = False
            if cand is not p2:
                cand_stats = self.estep(cand)
                accepted = self.objective(cand_stats, cand) >= self.learner._objective[-1]
                step_max = next_step_max(step_max, a, accepted)
            elif a >= step_max:  # a plain pair at the current cap: let it grow
                step_max = next_step_max(step_max, a, True)
            if not accepted:
                cand, cand_stats = p2, self.estep(p2)
            prior, stats = cand, cand_stats
            if self.keep(prior, stats):
                break
        return prior, stats


def combined(a: Stats, b: Stats) -> Stats:
    """The sum of two sets of statistics (a new object)."""
    return a + b
