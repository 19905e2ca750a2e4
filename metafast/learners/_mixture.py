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
(Phi (N, m), y (N,), task row offsets (T+1,)) so it does not depend on any basis family.

Numerics: y is rescaled to unit root-mean-square and every design column to unit RMS before EM
(an exact reparametrisation, undone on the fitted attributes), EM runs in float64, and a Cholesky
that fails is retried with growing diagonal jitter (counted in ``n_jitter_``).
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import numpy as np
from scipy.linalg import solve_triangular
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.utils import check_random_state
from threadpoolctl import ThreadpoolController

from metafast._kernels import _mixture as _k
from metafast._pickle import VersionTagged
from metafast.learners._bayes_task import check_task_y, gaussian_condition
from metafast._validation import check_positive_float, check_positive_int, check_X, check_y
from metafast.parallel import effective_n_threads

__all__ = ["MixturePrior", "MixtureTaskRegressor"]

_COVARIANCES = ("full", "diag", "spherical")
_INIT_ITER = 10        # EM iterations of the single-Gaussian fit that seeds k-means
_SCREEN_ITER = 5       # EM iterations every restart gets before the best one is continued
_SCREEN_TASKS = 500    # restarts are screened on a random subset of this many tasks (if more)
_RESP_FLOOR = 1e-10    # a task's component with a smaller responsibility adds no M-step statistics
_MIN_WEIGHT = 0.5      # a component holding less than half a task's worth of responsibility collapsed
_COVAR_FLOOR = 1e-9    # relative diagonal floor added to every Sigma_c (in the rescaled space)
_NOISE_FLOOR = 1e-8    # smallest noise variance, as a fraction of the mean squared target (y has unit
                       # RMS in the rescaled space): predictive std >= 1e-4 x RMS(y), noise-free tasks allowed
_BLOCK_BYTES = 128 * 2**20   # memory budget of the per-block M-step statistics
_MAX_BLOCKS = 64
_CHUNK_ROWS = 512      # design rows per level-3 call in the EM kernel (at most)
_CHUNK_BYTES = 16 * 2**20  # per-thread scratch budget of those calls
_ROW_BLOCK = 256       # query rows per kernel step in predict


_CONTROLLER = None


def _single_threaded_blas(user_api="blas"):
    """Context limiting BLAS (or every native thread pool, user_api=None) to one thread.

    Around kernels that call BLAS inside prange; around a whole fit so that k-means and the numpy
    M-step give the same bits whatever the machine's thread settings (our kernels set their
    thread count explicitly).  The controller is built once: scanning the loaded libraries costs
    milliseconds."""
    global _CONTROLLER
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api=user_api)


# ---------------------------------------------------------------------------------------- input
def _check_packed(Phi: Any, y: Any, offsets: Any, name: str = "Phi", n_basis: int | None = None):
    """Validated float64 (Phi, y, offsets int64) of packed tasks."""
    Phi = check_X(Phi, name, n_features=n_basis, dtype=np.float64)
    y = check_y(y, "y" if name == "Phi" else "y_" + name.split("_")[-1], n_samples=Phi.shape[0])
    off = np.asarray(offsets)
    oname = "offsets" if name == "Phi" else name.split("_")[-1] + "_offsets"
    if off.ndim != 1 or off.shape[0] < 2 or off.dtype.kind not in "iu":
        raise ValueError(f"argument {oname!r} must be a 1-D integer array of n_tasks + 1 >= 2 entries; "
                         f"got shape {off.shape} and dtype {off.dtype}")
    off = np.ascontiguousarray(off, dtype=np.int64)
    if off[0] != 0 or off[-1] != Phi.shape[0] or np.any(np.diff(off) < 0):
        raise ValueError(f"argument {oname!r} must start at 0, never decrease and end at the number of "
                         f"rows ({Phi.shape[0]}); got first={off[0]}, last={off[-1]}")
    return Phi, y, off


def _check_query(Phi_q: Any, q_offsets: Any, n_basis: int, n_tasks: int):
    Phi_q = check_X(Phi_q, "Phi_q", n_features=n_basis, dtype=np.float64)
    off = np.ascontiguousarray(np.asarray(q_offsets), dtype=np.int64)
    if off.ndim != 1 or off.shape[0] != n_tasks + 1 or off[0] != 0 or off[-1] != Phi_q.shape[0] \
            or np.any(np.diff(off) < 0):
        raise ValueError(f"argument 'q_offsets' must be (n_tasks + 1 = {n_tasks + 1},) row offsets into "
                         f"Phi_q ({Phi_q.shape[0]} rows), starting at 0 and never decreasing")
    return Phi_q, off


def _take_tasks(Phi: np.ndarray, y: np.ndarray, offsets: np.ndarray, idx: np.ndarray):
    """The packed (Phi, y, offsets) of the tasks ``idx``, in that order (vectorised gather)."""
    sizes = np.diff(offsets)[idx]
    new_off = np.zeros(len(idx) + 1, dtype=np.int64)
    np.cumsum(sizes, out=new_off[1:])
    rows = np.repeat(offsets[idx] - new_off[:-1], sizes) + np.arange(new_off[-1])
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
                    raise FloatingPointError("a component covariance is not positive definite "
                                             "even with jitter") from None
        covs[c] += jitter * eye
    return covs, np.ascontiguousarray(chol), n_jitter


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
        self.psi = 1.0 / max(Phi.shape[1], 1)   # shrinkage target psi I: the isotropic start
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
            log_lik=np.empty((T, C)), resp=np.empty((T, C)), log_ev=np.empty(T),
            n_jitter=np.zeros(T, dtype=np.int32),
            sum_r=np.zeros((B, C)), sum_u=np.zeros((B, C, m) if accumulate else (1, 1, 1)),
            sum_G=np.zeros((B, C, m, m) if accumulate else (1, 1, 1, 1)), sum_noise=np.zeros(B),
        )
        with _single_threaded_blas():
            _k.em_step(self.Phi, self.y, self.offsets, p.chol, p.means, p.log_weights, p.noise_var,
                       blocks, out["log_lik"], out["resp"], out["log_ev"], out["n_jitter"],
                       out["sum_r"], out["sum_u"], out["sum_G"], out["sum_noise"],
                       _RESP_FLOOR, accumulate, self._chunk_rows(C), self.n_threads)
        if np.any(out["n_jitter"] < 0):
            bad = int(np.flatnonzero(out["n_jitter"] < 0)[0])
            raise FloatingPointError(f"the marginal covariance of task {bad} could not be factored even "
                                     "with jitter: check the basis design for inf/huge values")
        self.n_jitter += int(out["n_jitter"].sum())
        out["total"] = float(out["log_ev"].sum())
        out["objective"] = out["total"] + self.log_prior(p)
        return out

    def posterior_means(self, prior: "MixturePrior", p: _Params) -> np.ndarray:
        """(T, m) posterior means of every task under the one-component prior ``p``."""
        post = np.empty((self.n_tasks, 1, self.n_basis))
        prior._posterior(self.Phi, self.y, self.offsets, p, post, None)
        return post[:, 0, :]

    def take(self, idx: np.ndarray) -> "_EM":
        """The same EM on the tasks ``idx`` only."""
        return _EM(*_take_tasks(self.Phi, self.y, self.offsets, idx), self.covariance, self.n_threads,
                   self.prior_weight)

    def log_prior(self, p: _Params) -> float:
        """sum_c log p(Sigma_c) = -nu/2 sum_c [log|Sigma_c| + psi tr(Sigma_c^{-1})] (0 when nu = 0)."""
        if self.prior_weight == 0.0:
            return 0.0
        L = p.chol
        logdet = 2.0 * np.log(np.einsum("cii->ci", L)).sum(axis=1)
        m = L.shape[-1]
        Linv = np.linalg.solve(L, np.broadcast_to(np.eye(m), L.shape))   # tr(S^-1) = ||L^-1||_F^2
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
        if nu > 0.0:   # MAP: r_c tasks' scatter plus nu pseudo-tasks of covariance psi I
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


# ---------------------------------------------------------------------------------------- public
class MixturePrior(VersionTagged):
    """EM fit of a mixture-of-Gaussians prior over basis weights from packed tasks.

    Parameters
    ----------
    n_components : int or "auto"
        Number of components C (1 = one Gaussian prior).  "auto" fits every C in
        ``component_range`` on 80% of the tasks, scores the summed log evidence of the other 20%
        and keeps the best C (refit on all tasks); the scores are in ``component_scores_``.
    covariance : {"full", "diag", "spherical"}
        Form of every Sigma_c.
    max_iter, tol : EM stops after max_iter iterations or when one iteration changes the summed
        log evidence by less than tol times its magnitude.
    n_init : restarts of k-means (on the per-task posterior means under a single Gaussian fitted
        first); each restart gets a short EM run (on a random subset of 500 tasks when there are
        more) and the one with the highest evidence is continued on all tasks.
    random_state : seed of the k-means restarts and of the "auto" split.
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

    def __init__(self, n_components=2, covariance="full", max_iter=100, tol=1e-6, n_init=3,
                 random_state=None, n_threads=1, verbose=0, component_range=(1, 8), prior_weight=1.0):
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
                raise ValueError(f"parameter 'n_components' must be a positive int or 'auto'; "
                                 f"got {self.n_components!r}")
            self._component_range()
            return None
        return check_positive_int(self.n_components, "n_components")

    def _component_range(self):
        try:
            lo, hi = self.component_range
            lo, hi = check_positive_int(lo, "component_range[0]"), check_positive_int(hi, "component_range[1]")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"parameter 'component_range' must be (low, high) positive ints with "
                             f"low <= high; got {self.component_range!r} ({exc})") from None
        if lo > hi:
            raise ValueError(f"parameter 'component_range' must have low <= high; got {self.component_range!r}")
        return lo, hi

    def fit(self, Phi, y, offsets) -> "MixturePrior":
        """Fit the mixture prior to the packed support design of all tasks.

        Phi (N, m): design rows of every task, one task after another; y (N,); offsets (T+1,)
        row ranges of the tasks.
        """
        n_comp = self._check_params()
        Phi, y, offsets = _check_packed(Phi, y, offsets)
        n_tasks = len(offsets) - 1
        self.n_threads_ = effective_n_threads(self.n_threads)
        if n_comp is None:
            with _single_threaded_blas(None):
                return self._fit_auto(Phi, y, offsets)
        if n_comp > n_tasks:
            raise ValueError(f"parameter 'n_components'={n_comp} exceeds the number of tasks ({n_tasks})")
        with _single_threaded_blas(None):
            self._fit_fixed(Phi, y, offsets, n_comp)
        return self

    def _scales(self, Phi, y):
        y_scale = float(np.sqrt(np.mean(y**2))) if y.size else 1.0
        col_scale = np.sqrt(np.mean(Phi**2, axis=0)) if Phi.shape[0] else np.ones(Phi.shape[1])
        y_scale = y_scale if np.isfinite(y_scale) and y_scale > 0 else 1.0
        col_scale = np.where(np.isfinite(col_scale) & (col_scale > 0), col_scale, 1.0)
        return y_scale, col_scale

    def _fit_fixed(self, Phi, y, offsets, n_comp):
        self._y_scale, self._col_scale = self._scales(Phi, y)
        Phi_s = np.ascontiguousarray(Phi / self._col_scale)
        y_s = y / self._y_scale
        self._fit_em(_EM(Phi_s, y_s, offsets, self.covariance, self.n_threads_, float(self.prior_weight)), n_comp)

    def _fit_em(self, em: _EM, n_comp: int) -> None:
        """EM on ``em``'s tasks (packed arrays, or chunks on Dask workers: metafast._distributed_mixture)."""
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
                    p, stats, more, dropped, converged = em.run(p1, self.max_iter - len(hist1), self.tol,
                                                                stats1, bar)
                    history = hist1 + more
            else:
                p, stats, history, dropped, converged = self._restarts(em, p1, n_comp, bar)
        if not converged:
            warnings.warn(f"MixturePrior: EM did not converge in max_iter={self.max_iter} iterations "
                          f"(last gain {history[-1][1] - history[-2][1] if len(history) > 1 else float('nan'):.3g});"
                          " increase max_iter or tol", ConvergenceWarning, stacklevel=3)
        if dropped:
            warnings.warn(f"MixturePrior: {len(dropped)} component(s) collapsed (responsibility below "
                          f"{_MIN_WEIGHT} tasks) and were dropped; {p.n_components} remain. See "
                          "dropped_components_.", UserWarning, stacklevel=3)
        self._set_fitted(p, stats, history, dropped, em)

    def _restarts(self, em: _EM, p1: _Params, n_comp: int, bar):
        """k-means restarts on the single-Gaussian posterior means; best short run is continued."""
        T = em.n_tasks
        W = em.posterior_means(self, p1)
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
            p, stats, history, more_dropped, converged = em.run(p, max(1, self.max_iter - len(history)),
                                                                self.tol, None, bar)
            return p, stats, history, dropped + more_dropped, converged
        bar.update(len(history))
        if not converged and len(history) < self.max_iter:
            p, stats, more, dropped2, converged = em.run(p, self.max_iter - len(history), self.tol, stats, bar)
            history = history + more
            dropped = dropped + [(it + len(best[2]), c, w) for it, c, w in dropped2]
        return p, stats, history, dropped, converged

    def _posterior(self, Phi, y, offsets, p: _Params, post_means, post_covs):
        T = len(offsets) - 1
        resp, log_ev = np.empty((T, p.n_components)), np.empty(T)
        n_jitter = np.zeros(T, dtype=np.int32)
        covs = post_covs if post_covs is not None else np.empty((1, 1, 1, 1))
        with _single_threaded_blas():
            _k.posterior(Phi, y, offsets, p.chol, p.means, p.log_weights, p.noise_var, resp, log_ev,
                         post_means, covs, n_jitter, post_covs is not None, self.n_threads_)
        if np.any(n_jitter < 0):
            raise FloatingPointError("a task's marginal covariance could not be factored even with jitter")
        return resp, log_ev

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
        if "resp" in stats:      # per-task values: not brought back from Dask workers
            self.responsibilities_ = stats["resp"].copy()
            self.task_log_evidence_ = stats["log_ev"] - np.diff(em.offsets) * np.log(ys)
        self.dropped_components_ = dropped
        self.n_jitter_ = em.n_jitter + p.n_jitter
        self.n_features_in_ = em.n_basis

    def _fit_auto(self, Phi, y, offsets):
        lo, hi = self._component_range()
        n_tasks = len(offsets) - 1
        n_held = max(1, int(round(0.2 * n_tasks)))
        if n_tasks - n_held < hi:
            raise ValueError(f"n_components='auto' needs more training tasks ({n_tasks - n_held} after "
                             f"holding out {n_held}) than the largest candidate C={hi}")
        rng = check_random_state(self.random_state)
        perm = rng.permutation(n_tasks)
        held, train = np.sort(perm[:n_held]), np.sort(perm[n_held:])
        tr = _take_tasks(Phi, y, offsets, train)
        ho = _take_tasks(Phi, y, offsets, held)
        rows = []
        for C in range(lo, hi + 1):
            sub = self._clone(n_components=C)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                sub.fit(*tr)
            ho_ev = sub.score_tasks(*ho)
            k = sub._n_free_params()
            rows.append((C, sub.n_components_, float(ho_ev.mean()), float(sub.log_evidence_[-1]),
                         -2.0 * sub.log_evidence_[-1] + k * np.log(len(train)), k))
        table = {key: np.array([r[i] for r in rows]) for i, key in enumerate(
            ["n_components", "n_components_fitted", "heldout_log_evidence", "train_log_evidence", "bic",
             "n_params"])}
        best_C = int(table["n_components"][np.argmax(table["heldout_log_evidence"])])
        self._fit_fixed(Phi, y, offsets, best_C)
        self.component_scores_ = table
        return self

    def _clone(self, **changes) -> "MixturePrior":
        params = {k: getattr(self, k) for k in ("n_components", "covariance", "max_iter", "tol", "n_init",
                                                 "random_state", "n_threads", "verbose", "component_range",
                                                 "prior_weight")}
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
        with _single_threaded_blas():
            _k.predict(Ps, ys, s_off, self._rescaled(Phi_q), q_off, p.chol, p.means, p.log_weights,
                       p.noise_var, resp, cmean, cvar, n_jitter, _ROW_BLOCK, self.n_threads_)
        if np.any(n_jitter < 0):
            raise FloatingPointError("a task's marginal covariance could not be factored even with jitter")
        row_resp = np.repeat(resp, np.diff(q_off), axis=0)
        mean, var = _mixture_moments(row_resp, cmean, cvar)
        ysc = self._y_scale
        return mean * ysc, np.sqrt(var) * ysc, resp, cmean * ysc, np.sqrt(cvar) * ysc

    def task_regressor(self, basis, X_s, y_s) -> "MixtureTaskRegressor":
        """A fitted scikit-learn regressor for one new task with support (X_s, y_s)."""
        self._check_fitted()
        return MixtureTaskRegressor(prior=self, basis=basis).fit(X_s, y_s)


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


class MixtureTaskRegressor(VersionTagged, RegressorMixin, BaseEstimator):
    """One task's posterior under a fitted mixture prior: a scikit-learn regressor.

    ``fit(X, y)`` conditions every component on the task's points: the posterior over which kind of
    task it is (``responsibilities_``) and each component's weight posterior N(m_c, S_c).
    ``predict(X, return_std=True)`` gives the mixture's mean and standard deviation;
    ``predict_components(X)`` shows the per-component picture.

    prior : a fitted MixturePrior; basis : the fitted basis family that made its design.
    """

    def __init__(self, prior=None, basis=None):
        self.prior = prior
        self.basis = basis

    def _design(self, X) -> np.ndarray:
        Phi = np.asarray(self.basis.design(X), dtype=np.float64)
        if Phi.shape[1] != self.prior.n_features_in_:
            raise ValueError(f"the basis makes {Phi.shape[1]} columns but the prior was fitted on "
                             f"{self.prior.n_features_in_}")
        return Phi

    def fit(self, X, y) -> "MixtureTaskRegressor":
        if not isinstance(self.prior, MixturePrior):
            raise TypeError(f"parameter 'prior' must be a fitted MixturePrior; got {type(self.prior).__name__}")
        self.prior._check_fitted()
        if self.basis is None or not getattr(self.basis, "__sklearn_is_fitted__", lambda: False)():
            raise NotFittedError("parameter 'basis' must be the fitted basis family the prior was fitted with")
        X = check_X(X, "X")
        y = check_task_y(y, X.shape[0], type(self).__name__)
        Phi = self._design(X) if X.shape[0] else np.empty((0, self.prior.n_features_in_))
        pr = self.prior
        p = pr._params
        C, m = p.n_components, Phi.shape[1]
        post_means, post_covs = np.empty((1, C, m)), np.empty((1, C, m, m))
        Ps, ys = pr._rescaled(Phi, y)
        resp, log_ev = pr._posterior(Ps, ys, np.array([0, len(y)], dtype=np.int64), p, post_means, post_covs)
        d, ysc = pr._col_scale, pr._y_scale
        self.responsibilities_ = resp[0]
        self.log_evidence_ = float(log_ev[0] - len(y) * np.log(ysc))
        self.component_means_ = post_means[0] * ysc / d
        self.component_covariances_ = post_covs[0] * ysc**2 / (d[:, None] * d[None, :])
        self.noise_var_ = pr.noise_var_
        self.n_features_in_ = X.shape[1]
        self.n_samples_seen_ = int(X.shape[0])
        return self

    def update(self, X, y) -> "MixtureTaskRegressor":
        """Condition on more points of the same task: sequential Bayes, equal (to round-off) to
        refitting on all points seen so far.

        Each component's weight posterior gets the Kalman (Woodbury) update, and the
        responsibilities are reweighted by each component's predictive likelihood of the new
        points: p(c | all) is proportional to p(c | old) p(y_new | old, c).
        """
        if not hasattr(self, "responsibilities_"):
            raise NotFittedError("This MixtureTaskRegressor is not fitted yet: call fit(X, y) first")
        X = check_X(X, "X", n_features=self.n_features_in_)
        y = check_y(y, "y", n_samples=X.shape[0])
        if X.shape[0] == 0:
            return self
        Phi = self._design(X)
        C = self.responsibilities_.shape[0]
        means, covs = np.empty_like(self.component_means_), np.empty_like(self.component_covariances_)
        log_lik = np.empty(C)
        for c in range(C):
            log_lik[c] = _gaussian_log_lik(Phi, y, self.component_means_[c], self.component_covariances_[c],
                                           self.noise_var_)
            means[c], covs[c] = gaussian_condition(Phi, y, self.component_means_[c],
                                                   self.component_covariances_[c], self.noise_var_)
        with np.errstate(divide="ignore"):
            joint = np.log(self.responsibilities_) + log_lik
        total = float(logsumexp(joint))
        self.responsibilities_ = np.exp(joint - total)
        self.log_evidence_ += total
        self.component_means_, self.component_covariances_ = means, covs
        self.n_samples_seen_ += int(X.shape[0])
        return self

    def _components(self, X):
        if not hasattr(self, "responsibilities_"):
            raise NotFittedError("This MixtureTaskRegressor is not fitted yet: call fit(X, y) first")
        X = check_X(X, "X", n_features=self.n_features_in_)
        Phi = self._design(X)
        cmean = Phi @ self.component_means_.T
        quad = np.einsum("nj,cjk,nk->nc", Phi, self.component_covariances_, Phi, optimize=True)
        cvar = self.noise_var_ + np.maximum(quad, 0.0)
        return cmean, cvar

    def predict(self, X, return_std: bool = False):
        """Mixture predictive mean (and std with return_std=True) at X."""
        cmean, cvar = self._components(X)
        mean, var = _mixture_moments(np.broadcast_to(self.responsibilities_, cmean.shape), cmean, cvar)
        return (mean, np.sqrt(var)) if return_std else mean

    def predict_components(self, X) -> dict:
        """Which kind of task is it: {"responsibilities": (C,), "means": (n, C), "stds": (n, C)}."""
        cmean, cvar = self._components(X)
        return {"responsibilities": self.responsibilities_.copy(), "means": cmean, "stds": np.sqrt(cvar)}
