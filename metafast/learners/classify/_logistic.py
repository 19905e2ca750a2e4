"""The logistic head: hierarchical multinomial logistic regression fitted by Laplace-EM.

Model (per task t with C_t classes): w_tc ~ N(mu_c, Sigma) independently over classes, and
p(y = c | x) = softmax_c(phi(x)^T w_tc).  In the shared-label setting mu_c is learned per class;
in the episodic setting the prior must be exchangeable over classes, so mu_c is one shared mean
-- and since adding the same vector to every class's weights leaves the softmax unchanged, that
shared mean cancels and is fixed at 0: Sigma (and the basis) is what is meta-learned.

Per task, the MAP weights and a Laplace approximation N(w_hat, H^{-1}) of the posterior come from
the ``_classify.logistic_laplace`` kernel (all tasks in one call), by Newton in the dual (n x n per
class, O(C n^3) per step) or, for a task with many rows, in the primal whitened weights (mC x mC,
O(C^2 n m^2 + (Cm)^3)); ``solve_paths`` picks the cheaper per task.  EM then maximises the Laplace approximation of sum_t log p(y_t):

    E-step: per task, the Laplace posterior of every class's weights;
    M-step: mu_c = mean_t E[w_tc];  Sigma = (sum_{t,c} E[(w_tc - mu_c)(w_tc - mu_c)^T] + nu psi I)
            / (sum_t C_t + nu)

In whitened coordinates w = mu + U v (Sigma = U U^T) the second moment is
sum_{t,c} E[v v^T] = sum_t C_t I + Phi_w^T G with G_t = B_t Phi_w,t from the kernel, so the M-step
is one (N x m)^T (N x m) product.  Laplace-EM is not guaranteed monotone (the E-step is
approximate); ``log_evidence_`` records the Laplace evidence after each M-step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metafast._kernels import _classify
from metafast.learners._prior import GaussianPrior, whitening
from metafast.learners.classify._chunks import chunk_data


@dataclass
class ClassPrior:
    """w_c ~ N(means[c], cov); ``means`` is (K, m) in the shared setting and None in the episodic."""

    cov: np.ndarray
    means: np.ndarray | None = None

    def factor(self) -> np.ndarray:
        """U with cov = U U^T (jittered Cholesky), computed once per prior (priors are never modified
        in place: EM and the calibration make new ones)."""
        U = self.__dict__.get("_U")
        if U is None:
            m = self.cov.shape[0]
            U = self._U = whitening(GaussianPrior(np.zeros(m), self.cov, 1.0, "full"))
        return U


def prior_logits(Phi: np.ndarray, prior: ClassPrior, c_max: int) -> np.ndarray:
    """Phi mu_c for every row and class (N, K), or an empty (0, c_max) array when the mean is 0."""
    if prior.means is None:
        return np.zeros((0, c_max), dtype=Phi.dtype)
    return np.ascontiguousarray(Phi @ prior.means.T.astype(Phi.dtype, copy=False))


PRIMAL_FLOP_ADVANTAGE = 3.0


def solve_paths(sizes: np.ndarray, n_classes: np.ndarray, m: int, path: str = "auto") -> np.ndarray:
    """Per task: -1 (dual) or its slot among the primal tasks.  "auto" compares the flop counts per
    Newton step, primal C(C+1) n m^2 + (Cm)^3 / 3 (Hessian blocks, one Cholesky) and dual
    (C + 1/3) n^3 (one n x n factorisation and inverse per class, one for their sum), and takes the
    primal when its count is below ``PRIMAL_FLOP_ADVANTAGE`` times the dual's: the primal's few
    large BLAS-3 calls run 2-4x more flops per second than the dual's many n x n ones (measured
    with m = 65 and C = 2, 5, 10: the two paths break even at a dual/primal flop ratio of
    0.3-0.45).  n > m is necessary but not sufficient: 5-way tasks of 100 rows on 65 functions
    stay in the dual."""
    if path not in ("auto", "dual", "primal"):
        raise ValueError(f"parameter 'path' must be 'auto', 'dual' or 'primal'; got {path!r}")
    n = sizes.astype(np.float64, copy=False)
    C = n_classes.astype(np.float64, copy=False)
    if path == "auto":
        use = C * (C + 1) * n * m * m + (C * m) ** 3 / 3 < PRIMAL_FLOP_ADVANTAGE * (C + 1 / 3) * n**3
    else:
        use = np.full(sizes.shape, path == "primal")
    use &= (n_classes >= 2) & (sizes > 0)
    out = np.full(sizes.shape, -1, dtype=np.int64)
    out[use] = np.arange(int(use.sum()))
    return out


@dataclass
class LaplaceFit:
    """What the kernel returns for packed tasks (see ``_classify.logistic_laplace``)."""

    A: np.ndarray  # (N, Cmax) dual coefficients
    G: np.ndarray  # (N, m) EM statistic rows (empty unless requested)
    log_evidence: np.ndarray  # (T,)
    status: np.ndarray  # (T,) Newton steps, < 0 on failure
    Phi_w: np.ndarray  # (N, m) whitened design
    U: np.ndarray  # (m, m)
    Q_primal: np.ndarray | float = 0.0  # (m, m) sum of the primal tasks' second-moment statistics

    def second_moment(self) -> np.ndarray:
        """sum_t sum_c E[v_tc v_tc^T] - C_t I over all tasks (needs want_stats)."""
        return self.Phi_w.T.astype(np.float64, copy=False) @ self.G.astype(np.float64, copy=False) + self.Q_primal


def laplace(
    Phi: np.ndarray,
    codes: np.ndarray,
    offsets: np.ndarray,
    n_classes: np.ndarray,
    prior: ClassPrior,
    *,
    n_threads: int,
    want_stats: bool = False,
    warm: np.ndarray | None = None,
    max_iter: int = 100,
    tol: float = 1e-10,
    path: str = "auto",
) -> LaplaceFit:
    """MAP and Laplace evidence of every packed task under ``prior`` (``path``: see ``solve_paths``)."""
    dtype = Phi.dtype
    U = prior.factor()
    Phi_w = np.ascontiguousarray(Phi @ U.astype(dtype, copy=False))
    c_max = int(max(n_classes.max(initial=0), 1))
    B0 = prior_logits(Phi, prior, c_max)
    if warm is not None and warm.shape == (Phi.shape[0], c_max):
        A = np.ascontiguousarray(warm, dtype=dtype)
    else:
        A, warm = np.zeros((Phi.shape[0], c_max), dtype=dtype), None
    G = np.empty((Phi.shape[0] if want_stats else 0, Phi.shape[1]), dtype=dtype)
    T = offsets.shape[0] - 1
    n_classes = np.ascontiguousarray(n_classes, dtype=np.int64)
    primal = solve_paths(np.diff(offsets), n_classes, Phi.shape[1], path)
    n_primal = int((primal >= 0).sum())
    Qp = np.empty((n_primal if want_stats else 0, Phi.shape[1], Phi.shape[1]), dtype=dtype)
    logq = np.empty(T, dtype=np.float64)
    status = np.empty(T, dtype=np.intc)
    _classify.logistic_laplace(
        Phi_w,
        B0,
        np.ascontiguousarray(codes, dtype=np.int64),
        offsets,
        n_classes,
        primal,
        int(max_iter),
        float(tol),
        warm is not None,
        bool(want_stats),
        int(n_threads),
        A,
        G,
        Qp,
        logq,
        status,
    )
    if (status < 0).any():
        t = int(np.flatnonzero(status < 0)[0])
        raise FloatingPointError(
            f"the logistic MAP failed for {int((status < 0).sum())} task(s) (first: task {t}): non-finite "
            "design values (check the basis and the inputs for huge magnitudes)"
        )
    Q_primal = Qp.astype(np.float64, copy=False).sum(axis=0) if Qp.shape[0] else 0.0  # fixed order: thread-invariant
    return LaplaceFit(A, G, logq, status, Phi_w, U, Q_primal)


def weights(fit: LaplaceFit, prior: ClassPrior, n_classes: int) -> np.ndarray:
    """Primal MAP weights W (m, C) of a single-task fit: mu_c + U Phi_w^T a_c."""
    W = fit.U @ (fit.Phi_w.T.astype(np.float64, copy=False) @ fit.A[:, :n_classes].astype(np.float64, copy=False))
    if prior.means is not None:
        W += prior.means.T
    return W


def query_logits(
    Phi_s: np.ndarray,
    codes: np.ndarray,
    s_off: np.ndarray,
    n_classes: np.ndarray,
    Phi_q: np.ndarray,
    q_off: np.ndarray,
    prior: ClassPrior,
    n_threads: int,
) -> np.ndarray:
    """Class scores (Nq, Cmax) of every query row, each task fitted on its support rows."""
    fit = laplace(Phi_s, codes, s_off, n_classes, prior, n_threads=n_threads)
    Phi_wq = np.ascontiguousarray(Phi_q @ fit.U.astype(Phi_q.dtype, copy=False))
    out = np.empty((Phi_q.shape[0], fit.A.shape[1]), dtype=Phi_s.dtype)
    _classify.task_logits(
        fit.Phi_w, fit.A, s_off, np.ascontiguousarray(n_classes, dtype=np.int64), Phi_wq, q_off, int(n_threads), out
    )
    out = out.astype(np.float64, copy=False)
    if prior.means is not None:
        out += Phi_q.astype(np.float64, copy=False) @ prior.means.T
    return out


def estep_terms(chunk, spec, prior: ClassPrior, want_stats: bool, n_threads: int) -> np.ndarray:
    """[sum_t log evidence, sum_t,c E[v v^T] - C_t I (m*m), shared: Phi_w^T A (m*K)] of one chunk's
    training tasks (see ``_classify_chunks``); the MAP is warm-started from the chunk's last pass."""
    d = chunk_data(chunk, spec)
    fit = laplace(
        d.Phi,
        d.codes,
        d.offsets,
        d.n_classes,
        prior,
        n_threads=n_threads,
        want_stats=want_stats,
        warm=d.state.get("warm"),
    )
    d.state["warm"] = fit.A
    out = [[float(fit.log_evidence.sum())]]
    if want_stats:
        out.append(np.ravel(fit.second_moment()))
        if prior.means is not None:
            K = prior.means.shape[0]
            out.append(
                np.ravel(fit.Phi_w.T.astype(np.float64, copy=False) @ fit.A[:, :K].astype(np.float64, copy=False))
            )
    return np.concatenate(out)


def query_loss_terms(chunk, spec, prior: ClassPrior, n_threads: int) -> np.ndarray:
    """[summed query log loss, query rows counted] of one chunk's training tasks, each adapted on
    its support (the calibration of the prior's scale)."""
    calib = chunk_data(chunk, spec).calib
    if calib is None:
        return np.zeros(2)
    Phi_s, codes_s, s_off, ncls, Phi_q, codes_q, q_off = calib
    Z = query_logits(Phi_s, codes_s, s_off, ncls, Phi_q, q_off, prior, n_threads)
    return np.array(log_loss_sum(Z, codes_q, q_off, ncls))


class LogisticEM:
    """Empirical-Bayes fit of a ClassPrior on training tasks (see the module docstring), one pass
    over a chunk source (``_classify_chunks``) per iteration.

    ``n_shared`` is the number of shared classes K (shared setting) or None (episodic).
    ``prior_weight`` nu and the shrinkage target psi I (psi = the starting isotropic variance)
    keep Sigma positive definite when the tasks carry little information.
    """

    def __init__(
        self, n_shared: int | None, max_iter: int, tol: float, prior_weight: float, n_threads: int, verbose: int = 0
    ):
        self.n_shared = n_shared
        self.max_iter = max_iter
        self.tol = tol
        self.prior_weight = prior_weight
        self.n_threads = n_threads
        self.verbose = verbose

    def resolve_prior_weight(self, tc: float) -> float:
        """nu; "auto" is 9 x the number of (task, class) pairs in the episodic setting (Sigma is pulled
        90% of the way to isotropic: meta-test classes are usually new there, and a Sigma learned
        from a few meta-training classes spans little else) and 1 pseudo-task in the shared one."""
        if isinstance(self.prior_weight, str):
            return 9.0 * tc if self.n_shared is None else 1.0
        return float(self.prior_weight)

    def initial_prior(self, summary: dict) -> ClassPrior:
        """N(0, s0 I) with s0 = 1 / mean squared design-row norm (class scores of unit scale)."""
        m = summary["col_sum"].shape[0]
        row = summary["phi2"] / max(summary["n_rows"], 1.0)
        self.psi = 1.0 / row if np.isfinite(row) and row > 0 else 1.0
        means = np.zeros((self.n_shared, m)) if self.n_shared is not None else None
        return ClassPrior(self.psi * np.eye(m), means)

    def fit(self, source, spec, summary: dict) -> ClassPrior:
        from tqdm.auto import tqdm

        prior = self.initial_prior(summary)
        m = prior.cov.shape[0]
        n_active, tc = int(summary["n_active"]), summary["tc_active"]
        if n_active == 0:
            raise ValueError("argument 'tasks': no training task has two or more classes: nothing to learn from")
        self.log_evidence_, self.n_iter_, self.converged_ = [], 0, False
        nu = self.resolve_prior_weight(tc)
        with tqdm(total=self.max_iter, desc="MetaClassifier EM", disable=not self.verbose, leave=False) as bar:
            for it in range(self.max_iter + 1):
                U = prior.factor()  # computed here, so the workers use the same factor
                out = source.map_sum(estep_terms, spec, prior, it < self.max_iter)
                self.log_evidence_.append(float(out[0]))
                if it > 0 and abs(self.log_evidence_[-1] - self.log_evidence_[-2]) < self.tol * n_active:
                    self.converged_ = True
                    break
                if it == self.max_iter:
                    break
                Q = out[1 : 1 + m * m].reshape(m, m)
                S = np.eye(m) + (0.5 * (Q + Q.T)) / tc  # mean whitened second moment per class
                means = prior.means
                if prior.means is not None:
                    dv = out[1 + m * m :].reshape(m, self.n_shared) / n_active
                    means = prior.means + (U @ dv).T
                    S -= dv @ dv.T / self.n_shared
                cov = U @ S @ U.T
                cov = (tc * cov + nu * self.psi * np.eye(m)) / (tc + nu)
                prior = ClassPrior(0.5 * (cov + cov.T), means)
                self.n_iter_ += 1
                bar.update(1)
        return prior


class LogisticHead:
    """The logistic head of MetaClassifier: Laplace-EM prior, then a scale calibration.

    Laplace-EM, like penalised quasi-likelihood for generalised linear mixed models, shrinks
    Sigma when tasks are small (measured: about 0.3-0.5 x the true variance at 20 points per task,
    0.9 x at 200).  So after EM the scale gamma of Sigma is chosen by maximising the query log
    likelihood of the training tasks adapted on their support sets (the split used on purpose,
    ``_calibrate``); without query rows gamma stays 1.
    """

    def __init__(self, n_shared, max_iter, tol, prior_weight, n_threads, verbose=0):
        self.em = LogisticEM(n_shared, max_iter, tol, prior_weight, n_threads, verbose)
        self.n_threads = n_threads

    def fit(self, source, spec, summary: dict) -> LogisticHead:
        self.prior_ = self.em.fit(source, spec, summary)
        self.log_evidence_ = np.asarray(self.em.log_evidence_)
        self.n_iter_, self.converged_ = self.em.n_iter_, self.em.converged_
        self.scale_ = 1.0
        if summary["n_query"] > 0:
            self.prior_ = self._calibrate(source, spec)
        return self

    def _calibrate(self, source, spec) -> ClassPrior:
        """gamma Sigma with gamma minimising the query log loss of the training tasks adapted on
        their support sets (undoes Laplace-EM's shrinkage of Sigma); one pass per trial gamma."""
        from scipy.optimize import minimize_scalar

        def loss(log_gamma):
            prior = ClassPrior(self.prior_.cov * np.exp(log_gamma), self.prior_.means)
            prior.factor()
            total, count = source.map_sum(query_loss_terms, spec, prior)
            return total / count if count else None

        start = loss(0.0)
        if start is None:  # no query row of a task with two classes: nothing to calibrate on
            return self.prior_
        res = minimize_scalar(loss, bounds=(np.log(1e-2), np.log(1e4)), method="bounded", options={"xatol": 0.05})
        gamma = float(np.exp(res.x)) if res.fun <= start else 1.0
        self.scale_ = gamma
        return ClassPrior(self.prior_.cov * gamma, self.prior_.means)

    def logits(self, Phi_s, codes, s_off, n_classes, Phi_q, q_off):
        return query_logits(Phi_s, codes, s_off, n_classes, Phi_q, q_off, self.prior_, self.n_threads)

    def task_weights(self, Phi, codes, n_classes: int):
        off = np.array([0, Phi.shape[0]], dtype=np.int64)
        fit = laplace(Phi, codes, off, np.array([n_classes]), self.prior_, n_threads=1)
        return weights(fit, self.prior_, n_classes), np.zeros(n_classes)


def masked_log_softmax(Z: np.ndarray, n_classes_per_row: np.ndarray) -> np.ndarray:
    """log softmax over the first n_classes of each row (other columns -inf), max-shifted."""
    cols = np.arange(Z.shape[1])
    Z = np.where(cols[None, :] < n_classes_per_row[:, None], Z, -np.inf)
    mx = Z.max(axis=1, keepdims=True)
    mx = np.where(np.isfinite(mx), mx, 0.0)
    with np.errstate(divide="ignore"):
        return Z - mx - np.log(np.exp(Z - mx).sum(axis=1, keepdims=True))


def log_loss_sum(Z: np.ndarray, codes: np.ndarray, offsets: np.ndarray, n_classes: np.ndarray) -> tuple[float, int]:
    """(sum over rows of -log softmax(Z)[code], rows counted): rows of tasks with fewer than 2
    classes are skipped."""
    per_row = np.repeat(n_classes, np.diff(offsets))
    keep = per_row >= 2
    if not keep.any():
        return 0.0, 0
    lp = masked_log_softmax(Z[keep], per_row[keep])
    return float(-lp[np.arange(lp.shape[0]), codes[keep]].sum()), int(lp.shape[0])


def mean_log_loss(Z: np.ndarray, codes: np.ndarray, offsets: np.ndarray, n_classes: np.ndarray) -> float:
    """Mean over rows of -log softmax(Z)[code] (rows of tasks with fewer than 2 classes skipped)."""
    total, count = log_loss_sum(Z, codes, offsets, n_classes)
    return total / count if count else 0.0
