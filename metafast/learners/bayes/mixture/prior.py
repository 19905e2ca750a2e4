"""Mixture-of-Gaussians prior over basis weights, fitted by EM across tasks.

One Gaussian prior over w cannot describe a family whose tasks come in several kinds (lines and
sines, two frequency bands).  The prior here is sum_c pi_c N(mu_c, Sigma_c) with one noise
variance s2 shared by every task; it stays closed-form:

- E-step: each task's responsibility for component c is proportional to pi_c times its marginal
  likelihood N(y_t; Phi_t mu_c, Phi_t Sigma_c Phi_t^T + s2 I) (one n x n Cholesky per task and
  component, in the Cython kernel ``metafast._kernels._mixture``, parallel over tasks);
- M-step: closed-form pi, mu_c, Sigma_c (full, diagonal or spherical) and s2 from the
  responsibility-weighted posterior moments.  Sigma_c is the MAP update under an
  inverse-Wishart-style prior log p(Sigma_c) = -nu/2 [log|Sigma_c| + psi tr(Sigma_c^{-1})] with
  the weight of nu = ``prior_weight`` pseudo-tasks per component, pulling it toward psi I
  (psi = 1/m in the rescaled space below: the isotropic prior EM starts from):

      Sigma_c = (r_c Sigma_c^ML + nu psi I) / (r_c + nu),     r_c = sum_t r_tc.

  EM then never decreases log evidence + sum_c log p(Sigma_c) (``objective_``).

``MetaBayes(n_components=C)`` delegates here; this class works on packed design matrices
(Phi (N, m), y (N,), task row offsets (T+1,)) so it does not depend on any basis family.  The
EM engine is ``_mixture_em``; one task's posterior is ``_mixture_task.MixtureTaskRegressor``.

Numerics: y is rescaled to unit root-mean-square and every design column to unit RMS before EM
(an exact reparametrisation, undone on the fitted attributes), EM runs in float64, and a Cholesky
that fails is retried with growing diagonal jitter (counted in ``n_jitter_``).
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.utils import check_random_state

from metafast._kernels import _mixture as _k
from metafast._pickle import VersionTagged
from metafast._validation import check_positive_float, check_positive_int
from metafast.learners.bayes.mixture._em import (
    _EM,
    _MIN_WEIGHT,
    _check_packed,
    _check_query,
    _mixture_moments,
    _Params,
    _take_tasks,
    posterior,
)
from metafast.learners.bayes.mixture._heldout import count_nominal, make_split, smallest_hashes, split_seed
from metafast.learners.bayes.mixture._task import MixtureTaskRegressor
from metafast.parallel import effective_n_threads, one_blas_thread

__all__ = ["MixturePrior", "MixtureTaskRegressor"]

_COVARIANCES = ("full", "diag", "spherical")
_INIT_ITER = 10  # EM iterations of the single-Gaussian fit that seeds k-means
_SCREEN_ITER = 5  # EM iterations every restart gets before the best one is continued
_SCREEN_TASKS = 500  # restarts are screened on a random subset of this many tasks (if more)
_ROW_BLOCK = 256  # query rows per kernel step in predict


# ---------------------------------------------------------------------------------------- data
def packed_scale_sums(Phi: np.ndarray, y: np.ndarray, n_tasks: int) -> np.ndarray:
    """[tasks, rows, sum y^2, sum of each squared design column...] (summed over chunks on Dask)."""
    return np.concatenate(([n_tasks, y.size, y @ y], np.einsum("ij,ij->j", Phi, Phi)))


def scales(sums: np.ndarray) -> tuple[float, np.ndarray]:
    """(y scale, design column scales) from ``packed_scale_sums``: RMS values, 1 where not
    positive and finite."""
    n = max(sums[1], 1.0)
    y_scale = float(np.sqrt(sums[2] / n)) if sums[1] else 1.0
    col = np.sqrt(sums[3:] / n) if sums[1] else np.ones(sums.size - 3)
    y_scale = y_scale if np.isfinite(y_scale) and y_scale > 0 else 1.0
    return y_scale, np.where(np.isfinite(col) & (col > 0), col, 1.0)


class PackedTasks:
    """The tasks of an in-process fit as packed arrays; a ``part`` of them is (Split, held) or
    None (all), its arrays gathered once."""

    def __init__(self, Phi: np.ndarray, y: np.ndarray, offsets: np.ndarray):
        self.Phi, self.y, self.offsets = Phi, y, offsets
        self.n_tasks = len(offsets) - 1
        self._parts: dict = {}

    def split(self, seed: int, min_train: int, what: str):
        """(Split, number held out) of these tasks (``_heldout.make_split``)."""
        T = self.n_tasks
        return make_split(seed, T, count_nominal(seed, 0, T), min_train, what, lambda k: smallest_hashes(seed, 0, T, k))

    def arrays(self, part):
        if part is None:
            return self.Phi, self.y, self.offsets
        if part not in self._parts:
            split, held = part
            self._parts[part] = _take_tasks(self.Phi, self.y, self.offsets, split.tasks(0, self.n_tasks, held))
        return self._parts[part]

    def em(self, prior: MixturePrior, part) -> _EM:
        """The EM engine on ``part`` of the tasks, rescaled (the scales are set on ``prior``)."""
        Phi, y, offsets = self.arrays(part)
        prior._y_scale, prior._col_scale = scales(packed_scale_sums(Phi, y, len(offsets) - 1))
        Phi_s, y_s = prior._rescaled(Phi, y)
        return _EM(Phi_s, y_s, offsets, prior.covariance, prior.n_threads_, float(prior.prior_weight))

    def log_evidence(self, prior: MixturePrior, part) -> float:
        """Summed log evidence of ``part`` of the tasks under the fitted ``prior``."""
        return float(prior.score_tasks(*self.arrays(part)).sum())


def _on_grid(W: np.ndarray, bits: int = 30) -> np.ndarray:
    """W rounded to a grid 2^-bits of its largest power of two (exact arithmetic).

    k-means is discontinuous in its input: Lloyd's iterations pass near-ties, and round-off of
    1e-16 (statistics summed over chunks in another order, as on Dask) can change the clusters it
    finds.  On the grid, inputs that differ only by round-off are bitwise equal (unless one lies
    within ~1e-6 grid steps of a rounding boundary), so the in-process and Dask fits start alike.
    """
    top = float(np.max(np.abs(W))) if W.size else 0.0
    if not np.isfinite(top) or top == 0.0:
        return W
    step = 2.0 ** (np.floor(np.log2(top)) - bits)
    return np.round(W / step) * step


# ---------------------------------------------------------------------------------------- public
class MixturePrior(VersionTagged):
    """EM fit of a mixture-of-Gaussians prior over basis weights from packed tasks.

    Parameters
    ----------
    n_components : int or "auto"
        Number of components C (1 = one Gaussian prior).  "auto" fits every C in
        ``component_range`` on the training part of the tasks, scores the mean log evidence of
        the held-out part and keeps the best C (refit on all tasks); the scores are in
        ``component_scores_``, the held-out count in ``n_heldout_``.  A task is held out when
        a hash of (seed, its index) falls below a fifth of the hash range (``_heldout``), about
        20% of the tasks, at least one and never so many that fewer than the largest C are left
        to train on.  The rule depends on nothing but the seed and the task's index, so the
        split is the same however the tasks are chunked, in process or on Dask workers
        (metafast <= 0.3 held out exactly 20% by a random permutation instead).
    covariance : {"full", "diag", "spherical"}
        Form of every Sigma_c.
    max_iter, tol : EM stops after max_iter iterations or when one iteration changes the summed
        log evidence by less than tol times its magnitude.
    n_init : restarts of k-means (on the per-task posterior means under a single Gaussian fitted
        first); each restart gets a short EM run (on a random subset of 500 tasks when there are
        more) and the one with the highest evidence is continued on all tasks.
    random_state : seed of the k-means restarts and of the "auto" split (an int seeds the split's
        hash directly; a RandomState or None gives one draw).
    n_threads : threads of the kernels (None = all cores; results do not depend on it).
    verbose : > 0 shows a progress bar on a terminal.
    component_range : (low, high) inclusive range of C tried by n_components="auto".
    prior_weight : float >= 0
        nu, the weight in pseudo-tasks (per component) of the inverse-Wishart-style shrinkage of
        every Sigma_c toward psi I, psi = 1/m in the rescaled space (unit-RMS y and design
        columns; the isotropic prior EM starts from).  Keeps components that hold few tasks
        relative to the basis size from becoming over-confident.  0 is plain maximum likelihood.

    Attributes (besides the fitted parameters): ``log_evidence_`` (summed log evidence after each
    iteration), ``objective_`` (log evidence + sum_c log p(Sigma_c), up to a constant: what EM
    never decreases; equal to ``log_evidence_`` when prior_weight = 0).
    """

    is_mixture_prior = True  # what MixtureTaskRegressor checks its ``prior`` for

    def __init__(
        self,
        n_components=2,
        covariance="full",
        max_iter=100,
        tol=1e-6,
        n_init=3,
        random_state=None,
        n_threads=1,
        verbose=0,
        component_range=(1, 8),
        prior_weight=1.0,
    ):
        self.n_components = n_components
        self.covariance = covariance
        self.max_iter = max_iter
        self.tol = tol
        self.n_init = n_init
        self.random_state = random_state
        self.n_threads = n_threads
        self.verbose = verbose
        self.component_range = component_range
        self.prior_weight = prior_weight

    # ------------------------------------------------------------------ fitting
    def _check_params(self):
        if self.covariance not in _COVARIANCES:
            raise ValueError(f"parameter 'covariance' must be one of {_COVARIANCES}; got {self.covariance!r}")
        check_positive_int(self.max_iter, "max_iter")
        check_positive_int(self.n_init, "n_init")
        check_positive_float(self.tol, "tol", allow_zero=True)
        check_positive_float(self.prior_weight, "prior_weight", allow_zero=True)
        if isinstance(self.n_components, str):
            if self.n_components != "auto":
                raise ValueError(
                    f"parameter 'n_components' must be a positive int or 'auto'; got {self.n_components!r}"
                )
            self._component_range()
            return None
        return check_positive_int(self.n_components, "n_components")

    def _component_range(self):
        try:
            lo, hi = self.component_range
            lo, hi = check_positive_int(lo, "component_range[0]"), check_positive_int(hi, "component_range[1]")
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"parameter 'component_range' must be (low, high) positive ints with "
                f"low <= high; got {self.component_range!r} ({exc})"
            ) from None
        if lo > hi:
            raise ValueError(f"parameter 'component_range' must have low <= high; got {self.component_range!r}")
        return lo, hi

    def fit(self, Phi, y, offsets) -> MixturePrior:
        """Fit the mixture prior to the packed support design of all tasks.

        Phi (N, m): design rows of every task, one task after another; y (N,); offsets (T+1,)
        row ranges of the tasks.
        """
        n_comp = self._check_params()
        Phi, y, offsets = _check_packed(Phi, y, offsets)
        self.n_threads_ = effective_n_threads(self.n_threads)
        return self._fit_tasks(PackedTasks(Phi, y, offsets), n_comp)

    def _fit_tasks(self, tasks, n_comp: int | None) -> MixturePrior:
        """Fit on ``tasks``: ``PackedTasks`` in process, ``_mixture_dask.ChunkTasks`` on Dask
        workers (the same interface: split, em, log_evidence)."""
        if n_comp is not None and n_comp > tasks.n_tasks:
            raise ValueError(f"parameter 'n_components'={n_comp} exceeds the number of tasks ({tasks.n_tasks})")
        with one_blas_thread(None):
            if n_comp is None:
                self._fit_auto(tasks)
            else:
                self._fit_fixed(tasks, n_comp)
        return self

    def _fit_fixed(self, tasks, n_comp: int, part=None) -> None:
        """EM with ``n_comp`` components on ``part`` of the tasks ((Split, held) or None: all)."""
        self._fit_em(tasks.em(self, part), n_comp)

    def _fit_em(self, em: _EM, n_comp: int) -> None:
        """EM on ``em``'s tasks (packed arrays, or chunks on Dask workers: metafast.learners.bayes.mixture._dask)."""
        m = em.n_basis
        show = bool(self.verbose) and sys.stderr.isatty()
        from tqdm.auto import tqdm

        with tqdm(total=self.max_iter, desc=f"MixturePrior C={n_comp}", disable=not show) as bar:
            # 1. one Gaussian, from an isotropic prior matched to the data scale
            p1 = _Params([1.0], np.zeros((1, m)), np.eye(m)[None] / m, 0.5)
            p1, stats1, hist1, _, conv1 = em.run(p1, min(_INIT_ITER, self.max_iter), self.tol)
            if n_comp == 1:
                bar.update(len(hist1))
                p, stats, history, dropped, converged = p1, stats1, hist1, [], conv1
                if not conv1 and len(hist1) < self.max_iter:
                    p, stats, more, dropped, converged = em.run(p1, self.max_iter - len(hist1), self.tol, stats1, bar)
                    history = hist1 + more
            else:
                p, stats, history, dropped, converged = self._restarts(em, p1, n_comp, bar)
        if not converged:
            warnings.warn(
                f"MixturePrior: EM did not converge in max_iter={self.max_iter} iterations "
                f"(last gain {history[-1][1] - history[-2][1] if len(history) > 1 else float('nan'):.3g});"
                " increase max_iter or tol",
                ConvergenceWarning,
                stacklevel=3,
            )
        if dropped:
            warnings.warn(
                f"MixturePrior: {len(dropped)} component(s) collapsed (responsibility below "
                f"{_MIN_WEIGHT} tasks) and were dropped; {p.n_components} remain. See "
                "dropped_components_.",
                UserWarning,
                stacklevel=3,
            )
        self._set_fitted(p, stats, history, dropped, em)

    def _restarts(self, em: _EM, p1: _Params, n_comp: int, bar):
        """k-means restarts on the single-Gaussian posterior means; best short run is continued."""
        T = em.n_tasks
        W = _on_grid(em.posterior_means(p1))
        rng = check_random_state(self.random_state)
        seeds = rng.randint(0, 2**31 - 1, size=self.n_init)
        screen = min(_SCREEN_ITER, self.max_iter) if self.n_init > 1 else self.max_iter
        # restarts are screened on a random subset of tasks when there are many (cheaper; the
        # evidence of runs on the same subset is still comparable)
        sub = em
        if self.n_init > 1 and T > _SCREEN_TASKS:
            idx = np.sort(rng.choice(T, _SCREEN_TASKS, replace=False))
            sub = em.take(idx)
        best = None
        for seed in seeds:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # k-means warns when fewer distinct tasks than clusters
                km = KMeans(n_clusters=n_comp, n_init=1, random_state=int(seed)).fit(W)
            counts = np.bincount(km.labels_, minlength=n_comp).astype(np.float64)
            weights = np.maximum(counts, 1.0) / np.maximum(counts, 1.0).sum()
            p0 = _Params(weights, km.cluster_centers_, np.repeat(p1.covs, n_comp, axis=0), p1.noise_var)
            run = sub.run(p0, screen, self.tol)
            if best is None or run[1]["objective"] > best[1]["objective"]:
                best = run
        p, stats, history, dropped, converged = best
        if sub is not em:
            # continue on every task; the history is that of the full data only, and drops
            # during screening get negative iteration numbers
            em.n_jitter += sub.n_jitter
            bar.update(len(history))
            dropped = [(it - len(history), c, w) for it, c, w in dropped]
            p, stats, history, more_dropped, converged = em.run(
                p, max(1, self.max_iter - len(history)), self.tol, None, bar
            )
            return p, stats, history, dropped + more_dropped, converged
        bar.update(len(history))
        if not converged and len(history) < self.max_iter:
            p, stats, more, dropped2, converged = em.run(p, self.max_iter - len(history), self.tol, stats, bar)
            history = history + more
            dropped = dropped + [(it + len(best[2]), c, w) for it, c, w in dropped2]
        return p, stats, history, dropped, converged

    def _posterior(self, Phi, y, offsets, p: _Params, post_means, post_covs):
        return posterior(Phi, y, offsets, p, post_means, post_covs, self.n_threads_)

    def _set_fitted(self, p: _Params, stats: dict, history: list, dropped: list, em: _EM):
        ys, d = self._y_scale, self._col_scale
        self._params = p
        self.n_components_ = p.n_components
        self.weights_ = p.weights.copy()
        self.means_ = p.means * ys / d
        self.covariances_ = p.covs * ys**2 / (d[:, None] * d[None, :])
        self.noise_var_ = p.noise_var * ys**2
        shift = em.n_points * np.log(ys)
        hist = np.asarray(history, dtype=np.float64).reshape(-1, 2)
        self.log_evidence_ = hist[:, 0] - shift
        self.objective_ = hist[:, 1] - shift
        self.n_iter_ = len(history)
        if "resp" in stats:  # per-task values: not brought back from Dask workers
            self.responsibilities_ = stats["resp"].copy()
            self.task_log_evidence_ = stats["log_ev"] - np.diff(em.offsets) * np.log(ys)
        self.dropped_components_ = dropped
        self.n_jitter_ = em.n_jitter + p.n_jitter
        self.n_features_in_ = em.n_basis

    def _fit_auto(self, tasks) -> None:
        """Every C of ``component_range`` fitted on the training part of a hashed split and scored
        by the mean log evidence of the held-out part (``metafast.learners.bayes.mixture._heldout``: the same
        split in process and on Dask); the best C is refitted on every task."""
        lo, hi = self._component_range()
        split, n_held = tasks.split(
            split_seed(self.random_state), hi, f"n_components='auto' (candidates C = {lo}..{hi})"
        )
        n_train = tasks.n_tasks - n_held
        rows = []
        for C in range(lo, hi + 1):
            sub = self._clone(n_components=C)
            sub.n_threads_ = self.n_threads_
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                sub._fit_fixed(tasks, C, (split, False))
            ho_ev = tasks.log_evidence(sub, (split, True)) / n_held
            k = sub._n_free_params()
            rows.append(
                (
                    C,
                    sub.n_components_,
                    ho_ev,
                    float(sub.log_evidence_[-1]),
                    -2.0 * sub.log_evidence_[-1] + k * np.log(n_train),
                    k,
                )
            )
        table = {
            key: np.array([r[i] for r in rows])
            for i, key in enumerate(
                ["n_components", "n_components_fitted", "heldout_log_evidence", "train_log_evidence", "bic", "n_params"]
            )
        }
        best_C = int(table["n_components"][np.argmax(table["heldout_log_evidence"])])
        self._fit_fixed(tasks, best_C)
        self.component_scores_ = table
        self.n_heldout_ = n_held

    def _clone(self, **changes) -> MixturePrior:
        params = {
            k: getattr(self, k)
            for k in (
                "n_components",
                "covariance",
                "max_iter",
                "tol",
                "n_init",
                "random_state",
                "n_threads",
                "verbose",
                "component_range",
                "prior_weight",
            )
        }
        params.update(changes)
        return MixturePrior(**params)

    def _n_free_params(self) -> int:
        C, m = self.n_components_, self.n_features_in_
        per_cov = {"full": m * (m + 1) // 2, "diag": m, "spherical": 1}[self.covariance]
        return (C - 1) + C * m + C * per_cov + 1

    # ------------------------------------------------------------------ prediction
    def _check_fitted(self):
        if not hasattr(self, "_params"):
            raise NotFittedError("This MixturePrior is not fitted yet: call fit(Phi, y, offsets) first")

    def _rescaled(self, Phi, y=None):
        Phi = np.ascontiguousarray(Phi / self._col_scale)
        return Phi if y is None else (Phi, y / self._y_scale)

    def score_tasks(self, Phi, y, offsets) -> np.ndarray:
        """Log marginal likelihood log p(y_t) of every task under the fitted mixture (T,)."""
        self._check_fitted()
        Phi, y, offsets = _check_packed(Phi, y, offsets, n_basis=self.n_features_in_)
        Phi_s, y_s = self._rescaled(Phi, y)
        em = _EM(Phi_s, y_s, offsets, self.covariance, self.n_threads_)
        stats = em.estep(self._params, accumulate=False)
        return stats["log_ev"] - np.diff(offsets) * np.log(self._y_scale)

    def predict_tasks(self, Phi_s, y_s, s_offsets, Phi_q, q_offsets) -> tuple[np.ndarray, np.ndarray]:
        """Mixture predictive mean and std of every packed query row, each task conditioned on its
        own support rows."""
        mean, std, _, _, _ = self.predict_tasks_components(Phi_s, y_s, s_offsets, Phi_q, q_offsets)
        return mean, std

    def predict_tasks_components(self, Phi_s, y_s, s_offsets, Phi_q, q_offsets):
        """(mean (N_q,), std (N_q,), responsibilities (T, C), component means (N_q, C),
        component stds (N_q, C)) for packed support and query designs."""
        self._check_fitted()
        m = self.n_features_in_
        Phi_s, y_s, s_off = _check_packed(Phi_s, y_s, s_offsets, name="Phi_s", n_basis=m)
        Phi_q, q_off = _check_query(Phi_q, q_offsets, m, len(s_off) - 1)
        p = self._params
        T, C, Nq = len(s_off) - 1, p.n_components, Phi_q.shape[0]
        resp, cmean, cvar = np.empty((T, C)), np.empty((Nq, C)), np.empty((Nq, C))
        n_jitter = np.zeros(T, dtype=np.int32)
        Ps, ys = self._rescaled(Phi_s, y_s)
        with one_blas_thread():
            _k.predict(
                Ps,
                ys,
                s_off,
                self._rescaled(Phi_q),
                q_off,
                p.chol,
                p.means,
                p.log_weights,
                p.noise_var,
                resp,
                cmean,
                cvar,
                n_jitter,
                _ROW_BLOCK,
                self.n_threads_,
            )
        if np.any(n_jitter < 0):
            raise FloatingPointError("a task's marginal covariance could not be factored even with jitter")
        row_resp = np.repeat(resp, np.diff(q_off), axis=0)
        mean, var = _mixture_moments(row_resp, cmean, cvar)
        ysc = self._y_scale
        return mean * ysc, np.sqrt(var) * ysc, resp, cmean * ysc, np.sqrt(cvar) * ysc

    def task_regressor(self, basis, X_s, y_s) -> MixtureTaskRegressor:
        """A fitted scikit-learn regressor for one new task with support (X_s, y_s)."""
        self._check_fitted()
        return MixtureTaskRegressor(prior=self, basis=basis).fit(X_s, y_s)
