"""The EM driver of MetaBayes: runs the chosen scheme (``_accel``, ``_lbfgs``), records the
objective trace, reports convergence honestly (``convergence_``) and alternates with basis
learning.  Mixed into ``MetaBayes`` (kept beside it so the estimator module stays small)."""

from __future__ import annotations

import sys
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from metafast.distributed import DaskChunks
from metafast.learners._base import iter_task_chunks
from metafast.learners._basis_opt import evidence_on_workers
from metafast.learners._chunks import LocalChunks
from metafast.learners.bayes._accel import EMRun
from metafast.learners.bayes._em import GaussianPrior, Stats, log_prior
from metafast.learners.bayes._lbfgs import gradient_norm
from metafast.learners.bayes._whiten import to_user, to_whitened


class _FromMixture:
    """A fitted attribute with one source of truth: read from ``mixture_`` when the model has a
    mixture prior, else held in the model's own ``__dict__`` (the single Gaussian sets it).

    Everything stays in ``__dict__`` (``mixture_`` or the value), so pickling, ``clone`` and the
    fit-aside-then-swap of ``MetaLearner._swap_in`` (one ``__dict__`` assignment) see one state.
    """

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        state = obj.__dict__
        if "mixture_" in state:
            return getattr(state["mixture_"], self.name)
        try:
            return state[self.name]
        except KeyError:
            raise AttributeError(f"{type(obj).__name__!r} object has no attribute {self.name!r}") from None

    def __set__(self, obj, value) -> None:
        if "mixture_" in obj.__dict__:
            raise AttributeError(f"{self.name} of a model with a mixture prior is mixture_.{self.name}")
        obj.__dict__[self.name] = value


class EMDriverMixin:
    """EM runs of a MetaBayes fit (the estimator supplies ``_estep_all`` and the settings)."""

    def _em(self, source, prior: GaussianPrior, cache, fixed: Stats | None = None, max_iter: int | None = None):
        """EM from ``prior`` until the objective per task changes by < tol; appends history.

        Each kept update is one iteration (one entry of the history); ``n_passes_`` counts the
        E-steps (passes over the data), which is what the acceleration saves.  ``max_iter``
        (default: the parameter) caps this run; a capped run that stops short is not warned
        about (its caller finishes the job).
        """
        capped = max_iter is not None
        max_iter = self.max_iter if max_iter is None else max_iter
        from tqdm.auto import tqdm

        stats = self._estep_all(source, prior, cache)
        self.n_passes_ += 1
        T = stats.n_tasks
        self._record(stats, prior)
        self._passes_at.append(self.n_passes_)
        show = bool(self.verbose) and sys.stderr.isatty()
        mode = self._acceleration if fixed is None else "none"
        run = EMRun(self, source, cache, fixed, T)
        run.budget = max_iter
        with tqdm(total=max_iter, desc="MetaBayes EM", disable=not show, leave=False) as bar:
            run.bar = bar
            if mode == "lbfgs":
                prior, stats = run.lbfgs(prior, stats)
            elif mode == "squarem":
                prior, stats = run.squarem(prior, stats)
            elif mode == "overrelax":
                prior, stats = run.overrelax(prior, stats)
            else:
                prior, stats = run.plain(prior, stats)
        self._report(run, prior, stats, mode, max_iter)
        if not run.converged and max_iter > 0 and not capped:
            rep = self.convergence_
            other = "acceleration='lbfgs'" if mode != "lbfgs" else "acceleration='squarem'"
            warnings.warn(
                f"MetaBayes EM did not converge in max_iter={self.max_iter} iterations (last change "
                f"{abs(self._objective[-1] - self._objective[-2]) / T:.3g} per task > tol={self.tol}, gradient "
                f"per task {rep['gradient_norm']:.3g}{'; ' + rep['boundary'] if rep['boundary'] else ''}); "
                f"increase max_iter or tol, or try {other}",
                ConvergenceWarning,
                stacklevel=4,
            )
        return prior, run.converged, stats

    def _report(self, run, prior: GaussianPrior, stats: Stats, mode: str, max_iter: int) -> None:
        """``convergence_``: why the run stopped, its objective trace, the final gradient."""
        if run.reason is not None and (run.converged or run.reason == "max_iter reached"):
            reason = run.reason
        elif run.converged:
            reason = f"objective change per task <= tol={self.tol}"
        else:
            reason = f"max_iter={max_iter} reached"
        cov = np.atleast_2d(prior.cov)
        eig = np.linalg.eigvalsh(0.5 * (cov + cov.T))
        small = int((eig <= 1e-8 * max(float(eig.max()), 1e-300)).sum())
        notes = []
        if prior.noise_var <= self._noise_floor * (1 + 1e-9):
            notes.append(f"noise variance at its floor ({self._noise_floor:g} of the target variance)")
        if small:
            notes.append(
                f"prior covariance near singular ({small} of {cov.shape[0]} eigenvalues < 1e-8 of the largest)"
            )
        self.convergence_ = {
            "converged": bool(run.converged),
            "reason": reason,
            "method": mode,
            "objective": np.asarray(self._objective),
            "n_passes": int(self.n_passes_),
            "gradient_norm": gradient_norm(stats, prior, self._nu, self._psi),
            "boundary": "; ".join(notes),
        }

    def _objective_of(self, stats: Stats, prior: GaussianPrior) -> float:
        ll = stats.log_evidence - stats.n_points * np.log(self._y_scale)
        return ll + log_prior(prior, self._nu, self._psi)

    def _record(self, stats: Stats, prior: GaussianPrior) -> None:
        ll = stats.log_evidence - stats.n_points * np.log(self._y_scale)  # in the units of y
        self._history.append(ll)
        self._objective.append(ll + log_prior(prior, self._nu, self._psi))

    def _learn_basis(self, source, prior: GaussianPrior, stats: Stats, cache) -> tuple[GaussianPrior, Stats]:
        from metafast.learners._basis_opt import optimise_basis

        def chunks():
            return iter_task_chunks(source)

        T = stats.n_tasks
        self.basis_log_evidence_ = [self._history[-1]]
        partial = self.basis_em_iter is not None
        settled = True  # is the prior converged for the current basis?
        for _ in range(self.basis_rounds):
            new_basis, before, after = optimise_basis(
                self.basis_,
                chunks,
                self._user(prior),
                self._y_scale,
                self._n_threads,
                self.basis_max_iter,
                evidence_on_workers(source if isinstance(source, DaskChunks) else LocalChunks(source, self._n_threads)),
            )
            if new_basis is self.basis_:
                break
            self.basis_ = new_basis
            if cache is not None:
                cache.clear()
            prior, settled, stats = self._em(source, prior, cache, max_iter=self.basis_em_iter if partial else None)
            self.basis_log_evidence_.append(self._history[-1])
            if self.basis_log_evidence_[-1] - self.basis_log_evidence_[-2] <= self.tol * T:
                break
        if not settled:  # the last partial EM run: finish it
            prior, settled, stats = self._em(source, prior, cache)
            self.basis_log_evidence_[-1] = self._history[-1]
        self.converged_ = settled
        return prior, stats

    def _whitened(self, prior: GaussianPrior) -> GaussianPrior:
        """A user-coordinate prior in the EM's whitened coordinates (the map of this fit)."""
        wmap = getattr(self, "_wmap", None)
        mean, cov = to_whitened(prior.mean, prior.cov, wmap)
        return GaussianPrior(mean, cov, prior.noise_var, prior.kind, None if wmap is None else wmap.A)

    def _user(self, prior: GaussianPrior) -> GaussianPrior:
        mean, cov = to_user(prior.mean, prior.cov, getattr(self, "_wmap", None))
        return GaussianPrior(mean, cov, prior.noise_var, prior.kind)
