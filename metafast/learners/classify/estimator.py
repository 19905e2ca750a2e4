"""MetaClassifier: few-shot classification on a meta-learned basis, with three heads.

A task's class scores are linear in the basis, z_c(x) = phi(x)^T w_c + b_c (the design gets a
constant column, so b_c is part of w_c).  What is meta-learned depends on the head and on the label
setting of the tasks (``TaskSet.label_setting``; ``setting`` overrides it):

* ``"logistic"`` (default): multinomial logistic regression with a Gaussian prior per class weight
  vector, N(mu_c, Sigma), fitted by Laplace-EM; calibrated probabilities (``_logistic``).
* ``"ridge"``: one-hot least squares with a meta-learned Gaussian prior, closed form (R2-D2 style),
  with a leave-one-out temperature (``_ridge_head``).
* ``"prototype"``: class means under a meta-learned diagonal metric (``_prototype``): the cheapest.

Settings: in the *shared* setting class k is the same class in every task, so each class has its
own prior mean and ``classes_`` lists the classes seen in meta-training; a task may lack some of
them (predicted from the prior).  In the *episodic* setting labels are re-drawn per task, the
prior is exchangeable over classes, and a new task's classes are the labels of its support set.
"""

from __future__ import annotations

import numpy as np

from metafast._validation import check_positive_float, check_positive_int, check_X
from metafast.learners._base import MetaLearner, check_train_rows, iter_task_chunks
from metafast.learners.classify._chunks import (
    LocalChunks,
    Spec,
    chunk_labels,
    design_with_bias,
    encode,
    gather_checked,
    split_codes,
    summarise,
)
from metafast.learners.classify._labels import check_classification_tasks, check_labels, encode_shared
from metafast.learners.classify._logistic import LogisticHead, masked_log_softmax
from metafast.learners.classify._prototype import PrototypeHead
from metafast.learners.classify._representation import fit_representation
from metafast.learners.classify._ridge_head import RidgeHead
from metafast.learners.classify._scores import ECE_BINS, classification_metrics, expected_calibration_error
from metafast.learners.classify._task import BasisClassifier, softmax
from metafast.parallel import effective_n_threads, with_one_blas_thread
from metafast.tasks._taskset import TaskSet

HEADS = {"logistic": LogisticHead, "ridge": RidgeHead, "prototype": PrototypeHead}
SETTINGS = ("auto", "episodic", "shared")
METRICS = ("auto", "lda", "lda-refined", "none")
BACKENDS = ("threads", "dask")


class MetaClassifier(MetaLearner):
    """Few-shot classifier meta-learned across tasks (see the module docstring).

    Parameters
    ----------
    basis : "auto", BasisFamily, family name or None
        The basis (fitted on the training tasks unless already fitted; the copy used is
        ``basis_``).  "auto" (default; None is the same) picks among linear, rff at three length
        scales and linear + rff by the held-out query log loss of a third of the training tasks
        (``_auto_basis``; ``basis_choice_``, ``cv_results_``).  An explicit basis is never changed.
    standardize : bool
        Evaluate the basis on inputs standardised by the training rows' mean and standard
        deviation (``basis.Standardized``; the same scaling at adapt/predict).  Default True; a
        basis given already fitted is used as it is.
    metric : {"auto", "lda", "lda-refined", "none"}
        "lda": map the basis to r discriminant axes learned from every labelled row of the training
        episodes (``_metric``: between/within-class scatter, closed form), in front of the head;
        "lda-refined": then L-BFGS on the leave-one-out log loss (``_metric_refine``).  "auto": the
        option a class-disjoint held-out split of the meta-train classes prefers (episodes in
        process), "none" otherwise.  ``metric_rank``: r (None: 95% of the
        discriminant eigenvalue mass).
    normalize : {"auto", "none", "l2", "center-l2"}
        After the basis (and metric): scale each basis vector to unit length ("l2"), after
        centring it by the meta-train mean ("center-l2", SimpleShot); ``_normalize``.  "auto"
        (default): "l2" in the episodic setting, "none" with shared labels (``normalize_``).
    auto_budget : float
        basis="auto": seconds after which no further candidate is tried (the first always is).
    head : {"logistic", "ridge", "prototype"}
    setting : {"auto", "episodic", "shared"}
        "auto" takes the training TaskSet's ``label_setting``.
    train_rows : {"all", "support"}
        Rows the prior is learned from: every labelled row of a training task (default) or its
        support only.  The logistic head also uses the support/query split of the training tasks
        on purpose, to calibrate the scale of its prior (see ``_logistic.LogisticHead``).
    max_iter, tol : EM iterations (L-BFGS iterations for the prototype head) and the stopping
        tolerance (change of the log evidence per task).
    prior_weight : "auto" or float >= 0
        Inverse-Wishart pseudo-count nu pulling Sigma toward its isotropic start (logistic, ridge):
        Sigma = (sum_{t,c} E[...] + nu psi I) / (sum_t C_t + nu).  "auto": 9 x sum_t C_t in the
        episodic setting (90% isotropic: meta-test classes are usually new, and a Sigma learned from
        a few meta-training classes spans little else; measured on digits 0-4 -> 5-9) and 1 in the
        shared setting (the same classes at meta-test time: trust the learned prior).
    max_classes : int
        The most classes a task may have (default 50).
    learn_basis : bool
        Also tune the basis's ``learnable_params`` on the head's meta-training objective, by
        L-BFGS through ``design_vjp``, alternating with refits of the head (as MetaBayes does):
        logistic: the query log loss of the training tasks adapted on their support sets (the
        split used on purpose, as for the prior's scale; the tasks need query rows); ridge: the
        summed log evidence of the one-hot targets (every training row); prototype: the
        leave-one-out log loss of every training row.  See ``_classify_basis``.
    basis_rounds, basis_max_iter : int
        learn_basis: at most this many (basis, head) rounds, L-BFGS iterations per round.
    backend : {"threads", "dask"}
        "threads" (default) fits in this process.  "dask" builds the training chunks on the workers
        of the active dask.distributed Client and keeps them there (``metafast.distributed``: a
        TaskSet, a list of TaskSets, a stream, a FileSource or a DataFrameSource): every pass of
        the head (EM, the logistic head's scale, the ridge head's temperature, the prototype
        head's L-BFGS) sends the prior or metric to the workers and gets summed statistics back;
        the fit equals the in-process one up to round-off.  An unfitted basis is fitted on the
        first chunk, shared classes are the union over all chunks.  learn_basis=True also runs
        there (each objective evaluation a sum over chunks, ``design_vjp`` on the workers).
    n_jobs : int or None
        Kernel threads (None: all cores); results do not depend on it.  On Dask each worker's
        kernels use that worker's threads.
    random_state : accepted for a uniform interface; the fit is deterministic.
    verbose : int
        > 0 shows an EM progress bar.

    Attributes
    ----------
    basis_, head_ (the fitted head object), setting_, classes_ (shared setting: the meta-training
    labels), n_tasks_seen_, log_evidence_ (logistic, ridge), n_iter_, basis_objective_ (learn_basis:
    the head's objective before the first basis round and after each; the basis and head kept are
    those of the lowest).
    """

    def __init__(
        self,
        basis="auto",
        head: str = "logistic",
        setting: str = "auto",
        train_rows: str = "all",
        max_iter: int = 100,
        tol: float = 1e-4,
        prior_weight="auto",
        max_classes: int = 50,
        learn_basis: bool = False,
        basis_rounds: int = 3,
        basis_max_iter: int = 20,
        backend: str = "threads",
        n_jobs=None,
        random_state=None,
        verbose: int = 0,
        standardize: bool = True,
        metric: str = "auto",
        metric_rank=None,
        normalize: str = "auto",
        auto_budget: float = 30.0,
    ):
        self.basis = basis
        self.normalize = normalize
        self.metric = metric
        self.metric_rank = metric_rank
        self.standardize = standardize
        self.auto_budget = auto_budget
        self.head = head
        self.setting = setting
        self.train_rows = train_rows
        self.max_iter = max_iter
        self.tol = tol
        self.prior_weight = prior_weight
        self.max_classes = max_classes
        self.learn_basis = learn_basis
        self.basis_rounds = basis_rounds
        self.basis_max_iter = basis_max_iter
        self.backend = backend
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    # ================================================================== checks
    def _check_params(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"parameter 'head' must be one of {tuple(HEADS)}; got {self.head!r}")
        if self.setting not in SETTINGS:
            raise ValueError(f"parameter 'setting' must be one of {SETTINGS}; got {self.setting!r}")
        check_train_rows(self.train_rows)
        check_positive_int(self.max_iter, "max_iter", minimum=0)
        check_positive_float(self.tol, "tol", allow_zero=True)
        if not (isinstance(self.prior_weight, str) and self.prior_weight == "auto"):
            check_positive_float(self.prior_weight, "prior_weight", allow_zero=True)
        check_positive_int(self.max_classes, "max_classes", minimum=2)
        if not isinstance(self.learn_basis, (bool, np.bool_)):
            raise TypeError(f"parameter 'learn_basis' must be True or False; got {self.learn_basis!r}")
        check_positive_int(self.basis_rounds, "basis_rounds", minimum=0)
        check_positive_int(self.basis_max_iter, "basis_max_iter")
        if not isinstance(self.standardize, (bool, np.bool_)):
            raise TypeError(f"parameter 'standardize' must be True or False; got {self.standardize!r}")
        check_positive_float(self.auto_budget, "auto_budget", allow_zero=True)
        if self.metric not in METRICS:
            raise ValueError(f"parameter 'metric' must be one of {METRICS}; got {self.metric!r}")
        if self.normalize not in ("auto", "none", "l2", "center-l2"):
            raise ValueError(
                f"parameter 'normalize' must be one of ('auto', 'none', 'l2', 'center-l2'); got {self.normalize!r}"
            )
        if self.metric_rank is not None:
            check_positive_int(self.metric_rank, "metric_rank")
        if self.backend not in BACKENDS:
            raise ValueError(f"parameter 'backend' must be one of {BACKENDS}; got {self.backend!r}")
        self._n_threads = effective_n_threads(self.n_jobs)

    def _design(self, X: np.ndarray) -> np.ndarray:
        """The basis design with a constant column appended (the class biases)."""
        return design_with_bias(self.basis_, X)

    def _check_features(self, ts: TaskSet) -> None:
        if ts.n_features != self.basis_.n_features_in_:
            raise ValueError(
                f"argument 'tasks' has {ts.n_features} features, but the model was fitted on "
                f"{self.basis_.n_features_in_}"
            )

    def _encode(self, y: np.ndarray, offsets: np.ndarray):
        """(codes, n_classes per task) of packed labels in the model's setting."""
        return encode(self.setting_, getattr(self, "classes_", None), y, offsets)

    # ================================================================== fit
    def fit(self, tasks, y=None) -> MetaClassifier:
        """Learn the head's prior or metric (and fit the basis) from training tasks.

        ``tasks`` is a TaskSet or an iterable of TaskSet chunks (packed together once: the heads
        pass over the tasks many times); with backend="dask" any source of ``DaskChunks``.  The new
        model is built aside and swapped in at the end (as MetaBayes and MetaRidge do): concurrent
        ``adapt``/``evaluate`` calls see the old model or the new one, and a fit that raises
        leaves the old one in place."""
        work = self._work_copy(keep_fitted=False)
        work._fit_aside(tasks)
        self._swap_in(work)
        return self

    @with_one_blas_thread
    def _fit_aside(self, tasks) -> MetaClassifier:
        self._check_params()
        source = self._chunk_source(tasks)
        try:
            first = source.first()
            check_classification_tasks(first)
            self.setting_ = first.label_setting if self.setting == "auto" else self.setting
            self.basis_ = fit_representation(self, first)
            self._check_features(first)
            labels = gather_checked(source, chunk_labels, self.train_rows, self.basis_.n_features_in_)
            self.__dict__.pop("classes_", None)
            if self.setting_ == "shared":
                self.classes_ = np.unique(np.concatenate(labels))
                if self.classes_.shape[0] < 2:
                    raise ValueError(
                        f"argument 'tasks' holds a single class ({self.classes_.tolist()}) over all tasks: "
                        "nothing to classify"
                    )
            if self.learn_basis:
                from metafast.learners._basis_opt import check_learnable

                check_learnable(self.basis_)
            spec, self.n_tasks_seen_ = self._fit_head(source)
            if self.learn_basis:
                self._learn_basis(source, spec)
        finally:
            source.release()
        self._mf_fitted = True
        return self

    def _chunk_source(self, tasks):
        """The training chunks, kept with their support/query split: in process one TaskSet
        (``LocalChunks``), with backend="dask" chunks built and kept on the workers."""
        if self.backend == "dask":
            from metafast.distributed import DaskChunks

            return DaskChunks(tasks, "support")
        chunks = list(iter_task_chunks(tasks))
        if not chunks:
            raise ValueError("argument 'tasks' holds no TaskSet chunks")
        return LocalChunks(chunks[0] if len(chunks) == 1 else TaskSet.concatenate(chunks), self._n_threads)

    def _fit_head(self, source):
        """Fit a new head by passes over ``source``; returns (its Spec, the number of training tasks)."""
        spec = Spec(
            self.basis_, self.setting_, getattr(self, "classes_", None), self.train_rows, self.max_classes, self.head
        )
        summary = summarise(source, spec)
        n_shared = self.classes_.shape[0] if self.setting_ == "shared" else None
        self.head_ = HEADS[self.head](
            n_shared, self.max_iter, self.tol, self.prior_weight, self._n_threads, self.verbose
        )
        self.head_.fit(source, spec, summary)
        for attr in ("log_evidence_", "n_iter_", "converged_"):
            if hasattr(self.head_, attr):
                setattr(self, attr, getattr(self.head_, attr))
        return spec, int(summary["n_tasks"])

    def basis_objective(self, source, spec):
        """The fitted head's meta-training objective as a function of the basis, summed over the
        chunks of ``source`` (``_classify_basis.ChunkedObjective``: ``evaluate(basis) -> (value,
        gradient dict)``)."""
        from metafast.learners.classify._basis import ChunkedObjective

        head = self.head_
        state = {
            "logistic": lambda: head.prior_,
            "ridge": lambda: (head.prior_, head.noise_var_),
            "prototype": lambda: head.metric_,
        }[self.head]()
        return ChunkedObjective(source, spec, state)

    def _learn_basis(self, source, spec) -> None:
        """Alternate L-BFGS on the basis (head fixed) with refits of the head (basis fixed), and keep
        the (basis, head) pair with the lowest objective: a refit head (EM, then the scale) does not
        minimise the basis's objective, so a round can end worse than it started."""
        from metafast.learners.classify._basis import optimise_basis

        self.basis_objective_ = []
        best = None
        for _ in range(self.basis_rounds):
            new_basis, before, after = optimise_basis(
                self.basis_, self.basis_objective(source, spec), self.basis_max_iter
            )
            if not self.basis_objective_:
                self.basis_objective_.append(before)
                best = (before, self._head_state())
            if new_basis is self.basis_:
                break
            self.basis_ = new_basis
            spec, _ = self._fit_head(source)
            self.basis_objective_.append(self.basis_objective(source, spec).value(self.basis_))
            if self.basis_objective_[-1] < best[0]:
                best = (self.basis_objective_[-1], self._head_state())
            if self.basis_objective_[-2] - self.basis_objective_[-1] <= self.tol * abs(self.basis_objective_[-2]):
                break
        if best is not None:
            for key, value in best[1].items():
                setattr(self, key, value)

    def _head_state(self) -> dict:
        return {
            k: getattr(self, k)
            for k in ("basis_", "head_", "log_evidence_", "n_iter_", "converged_")
            if hasattr(self, k)
        }

    def _split_codes(self, ts: TaskSet):
        """(support codes, classes per task, query codes) of a TaskSet's support/query split."""
        return split_codes(self.setting_, getattr(self, "classes_", None), ts, self.max_classes)

    def _split_arrays(self, ts: TaskSet):
        codes_s, ncls, codes_q = self._split_codes(ts)
        return (
            self._design(ts.X_support),
            codes_s,
            ts.support_offsets,
            ncls,
            self._design(ts.X_query),
            codes_q,
            ts.query_offsets,
        )

    # ================================================================== evaluate
    @MetaLearner._reads_fitted_view
    @with_one_blas_thread
    def predict_tasks_proba(self, tasks: TaskSet) -> np.ndarray:
        """Class probabilities (N_query, C_max) of every packed query row, each task adapted on its
        support; columns beyond a task's classes are 0.  Columns follow each task's sorted support
        labels (episodic) or ``classes_`` (shared)."""
        self._check_fitted()
        ts = self._check_eval_tasks(tasks)
        Z, _, ncls = self._query_scores(ts)
        return np.exp(masked_log_softmax(Z, np.repeat(ncls, ts.query_sizes)))

    def _check_eval_tasks(self, tasks) -> TaskSet:
        from metafast.learners._base import check_tasks

        ts = check_tasks(tasks)
        check_classification_tasks(ts)
        self._check_features(ts)
        return ts

    def _query_scores(self, ts: TaskSet):
        Phi_s, codes_s, s_off, ncls, Phi_q, codes_q, q_off = self._split_arrays(ts)
        Z = self.head_.logits(Phi_s, codes_s, s_off, ncls, Phi_q, q_off)
        return Z, codes_q, ncls

    @MetaLearner._reads_fitted_view
    @with_one_blas_thread
    def evaluate(self, tasks: TaskSet) -> dict:
        """Adapt to every task's support set and score its query set.

        Returns "accuracy" and "nll" (mean query log loss), each averaged over tasks with a 95% CI
        (1.96 x the standard error over tasks), "ece" (expected calibration error of the top-class
        probability over all query points, 15 equal-width bins) and "n_tasks".
        """
        self._check_fitted()
        ts = self._check_eval_tasks(tasks)
        Z, codes_q, ncls = self._query_scores(ts)
        return classification_metrics(Z, codes_q, ts.query_offsets, ncls)

    @MetaLearner._reads_fitted_view
    @with_one_blas_thread
    def reliability(self, tasks: TaskSet, n_bins: int = ECE_BINS) -> dict:
        """Reliability diagram data of the query predictions (top-class probability in ``n_bins``
        equal-width bins): per bin "confidence" (mean), "accuracy" and "count" (lists)."""
        self._check_fitted()
        ts = self._check_eval_tasks(tasks)
        Z, codes_q, ncls = self._query_scores(ts)
        lp = masked_log_softmax(Z, np.repeat(ncls, ts.query_sizes))
        pred = np.argmax(lp, axis=1)
        conf = np.exp(lp[np.arange(lp.shape[0]), pred])
        bins = np.minimum((conf * n_bins).astype(np.int64), n_bins - 1)
        count = np.bincount(bins, minlength=n_bins)
        with np.errstate(invalid="ignore"):
            mean_conf = np.bincount(bins, weights=conf, minlength=n_bins) / count
            acc = np.bincount(bins, weights=(pred == codes_q).astype(np.float64, copy=False), minlength=n_bins) / count
        keep = count > 0
        return {"confidence": mean_conf[keep].tolist(), "accuracy": acc[keep].tolist(), "count": count[keep].tolist()}

    # ================================================================== adapt
    def _task_codes(self, y, n: int):
        labels = check_labels(y, "y", n_samples=n)
        if self.setting_ == "shared":
            return self.classes_, encode_shared(labels, self.classes_, name="y")
        classes, codes = np.unique(labels, return_inverse=True)
        if classes.shape[0] > self.max_classes:
            raise ValueError(f"argument 'y' has {classes.shape[0]} classes, more than max_classes={self.max_classes}")
        if classes.shape[0] == 0:
            raise ValueError("argument 'y' is empty: the episodic setting needs support examples to know the classes")
        return classes, codes.reshape(-1).astype(np.int64)

    @MetaLearner._reads_fitted_view
    @with_one_blas_thread
    def adapt(self, X, y) -> BasisClassifier:
        """A fitted scikit-learn classifier for a new task from its support points (X, y).

        ``classes_`` of the result are the task's labels (episodic: the sorted labels of y, of any
        type) or the meta-training classes (shared: a class missing from y is predicted from the
        prior).  A single-class support is allowed: in the episodic setting it predicts that class.
        BLAS is limited to one thread meanwhile, through a cached threadpoolctl controller (a
        fresh ``threadpool_limits`` rediscovers the libraries: milliseconds, more than the adaptation).
        """
        self._check_fitted()
        X = check_X(X, "X", n_features=self.basis_.n_features_in_, estimator=type(self).__name__)
        classes, codes = self._task_codes(y, X.shape[0])
        W, b = self.head_.task_weights(self._design(X), codes, int(classes.shape[0]))
        return BasisClassifier(self.basis_, W[:-1], W[-1] + b, classes).fit()

    @MetaLearner._reads_fitted_view
    @with_one_blas_thread
    def _adapt_scores(self, X, y, X_query):
        """(classes, class scores of X_query) after adapting to (X, y), with one design call for
        both point sets."""
        self._check_fitted()
        d = self.basis_.n_features_in_
        X = check_X(X, "X", n_features=d, estimator=type(self).__name__)
        Xq = check_X(X_query, "X_query", n_features=d, estimator=type(self).__name__, dtype=X.dtype)
        classes, codes = self._task_codes(y, X.shape[0])
        Phi = self._design(np.concatenate([X, Xq]))
        W, b = self.head_.task_weights(Phi[: X.shape[0]], codes, int(classes.shape[0]))
        return classes, Phi[X.shape[0] :].astype(np.float64, copy=False) @ W + b

    def adapt_predict(self, X, y, X_query) -> np.ndarray:
        """Labels of X_query after adapting to (X, y) (same as adapt(X, y).predict(X_query))."""
        classes, Z = self._adapt_scores(X, y, X_query)
        return classes[np.argmax(Z, axis=1)]

    def adapt_predict_proba(self, X, y, X_query) -> np.ndarray:
        """Class probabilities of X_query (columns: the adapted classes_) after adapting to (X, y)."""
        return softmax(self._adapt_scores(X, y, X_query)[1])


__all__ = ["MetaClassifier", "BasisClassifier", "classification_metrics", "expected_calibration_error", "softmax"]
