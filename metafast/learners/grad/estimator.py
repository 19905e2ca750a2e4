"""MetaGrad: gradient-based meta-learning (MAML, first-order MAML, Meta-SGD, Reptile, iMAML) with
exact meta-gradients on a basis model f(x) = Phi(x) w.

With squared loss the inner loop is linear in w, so k gradient steps have the closed form
w_k = (I - aA)^k w_0 + sum_{j<k} (I - aA)^j a b  (A = Phi^T Phi / n, b = Phi^T y / n) and the MAML
meta-gradient (I - aA)^k grad L_out(w_k) is exact, second order included, at the cost of 2k
matrix-vector products per task.  The kernels are in metafast._kernels._metagrad; meta-batches
and Adam in ``_engine``, the outer loop (schedule, validation, early stopping) in ``_training``,
the scales set before training in ``_scales``.  See docs/metagrad.md.
"""

from __future__ import annotations

import copy
import time

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import NotFittedError

from metafast._validation import check_positive_float, check_positive_int, check_y
from metafast.basis._base import BasisFamily
from metafast.learners._arrays import as_f64
from metafast.learners._base import MetaLearner, check_tasks, check_train_rows, iter_task_chunks
from metafast.learners._basis_opt import _flatten
from metafast.learners.grad import _training
from metafast.learners.grad._engine import METHODS, Adam, adapt_weights
from metafast.learners.grad._scales import row_scale, stable_inner_lr, target_scale
from metafast.parallel import effective_n_threads, threads_for_work, with_one_blas_thread
from metafast.tasks._taskset import TaskSet

DEFAULT_NETWORK = {"n_basis": 40, "hidden_layers": 2, "width": 40, "activation": "tanh"}
MAX_INNER_STEPS = 1000  # each step costs two matrix-vector products per task and row block


def check_inner_steps(value, minimum: int) -> None:
    """``inner_steps`` is an int in [minimum, MAX_INNER_STEPS] (issue 23, D17: 1e7 steps ran for
    minutes and took gigabytes before anything was reported)."""
    check_positive_int(value, "inner_steps", minimum=minimum)
    if int(value) > MAX_INNER_STEPS:
        raise ValueError(
            f"parameter 'inner_steps' must be at most {MAX_INNER_STEPS}; got {value}: the inner loop "
            "costs time (and for meta-training memory) in proportion to it, and a few to a few "
            "dozen steps is the useful range; for a converged inner problem use method='imaml'"
        )


# ---------------------------------------------------------------------------- per-task regressor
class GradTaskRegressor(RegressorMixin, BaseEstimator):
    """One task's model after MetaGrad's inner loop: a scikit-learn regressor.

    ``fit(X, y)`` runs the inner loop from ``init_coef`` on Phi = basis.design(X): ``inner_steps``
    gradient steps on ||Phi w - y||^2 / (2 n) with per-coordinate rates ``inner_lr`` (a float or an
    (m,) array), or for ``method="imaml"`` the proximal problem with strength ``inner_reg``.
    ``MetaGrad.adapt`` returns one already fitted; ``clone`` keeps the (fitted) basis.
    """

    def __init__(
        self,
        basis=None,
        init_coef=None,
        inner_lr=0.1,
        inner_steps: int = 5,
        method: str = "maml",
        inner_reg: float = 1.0,
    ):
        self.basis = basis
        self.init_coef = init_coef
        self.inner_lr = inner_lr
        self.inner_steps = inner_steps
        self.method = method
        self.inner_reg = inner_reg

    def __sklearn_clone__(self):
        params = self.get_params(deep=False)
        params["basis"] = copy.deepcopy(self.basis)
        return type(self)(**params)

    def _settings(self) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(self.basis, BasisFamily) or not self.basis.__sklearn_is_fitted__():
            raise ValueError("parameter 'basis' must be a fitted BasisFamily (as MetaGrad.adapt passes it)")
        if self.method not in METHODS:
            raise ValueError(f"parameter 'method' must be one of {METHODS}; got {self.method!r}")
        m = self.basis.n_basis
        w0 = np.zeros(m) if self.init_coef is None else np.asarray(self.init_coef, dtype=np.float64)
        rates = (
            np.broadcast_to(np.asarray(self.inner_lr, dtype=np.float64), (m,))
            if np.ndim(self.inner_lr) == 0
            else np.asarray(self.inner_lr, dtype=np.float64)
        )
        if w0.shape != (m,) or rates.shape != (m,):
            raise ValueError(
                f"parameters 'init_coef' and 'inner_lr' must have shape ({m},) for a basis of {m} "
                f"functions (inner_lr may be a float); got {w0.shape} and {rates.shape}"
            )
        if not (np.isfinite(w0).all() and np.isfinite(rates).all()):
            raise ValueError("parameters 'init_coef' and 'inner_lr' must be finite")
        check_inner_steps(self.inner_steps, minimum=0)
        check_positive_float(self.inner_reg, "inner_reg")
        return w0, np.ascontiguousarray(rates)

    def fit(self, X, y) -> GradTaskRegressor:
        """Adapt to (X, y); X may have zero rows (the model is then ``init_coef``)."""
        w0, rates = self._settings()
        Phi = as_f64(self.basis.design(X))
        yc = check_y(y, "y", n_samples=Phi.shape[0])
        self.coef_ = adapt_weights(
            self.method,
            int(self.inner_steps),
            float(self.inner_reg),
            Phi,
            yc,
            np.array([0, Phi.shape[0]]),
            w0,
            rates,
            1,
        )[0]
        self.n_features_in_ = self.basis.n_features_in_
        return self

    def predict(self, X) -> np.ndarray:
        """Phi(X) @ coef_ (float64)."""
        if not hasattr(self, "coef_"):
            raise NotFittedError("This GradTaskRegressor is not fitted yet: call fit(X, y)")
        return np.asarray(self.basis.weighted_sum(X, self.coef_), dtype=np.float64)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "coef_")


# ---------------------------------------------------------------------------- the meta-learner
class MetaGrad(MetaLearner):
    """Gradient-based meta-learning of an initialisation (and inner rates, and the basis).

    MAML-family learners use a split on purpose: the inner loop adapts on one part of a task's
    rows and the meta-loss is measured on the other, which is what makes the learned
    initialisation good *after adaptation*.  With ``train_rows="all"`` (default) the split is
    redrawn for every task at every meta-iteration from all its labelled rows (support and query):
    the inner part has the size of the task's support set (the shot count the model will see at
    test time) and every labelled row serves in both roles over training.  ``"support"`` keeps
    the given split (inner = support, outer = query).  Reptile has no outer loss: its inner loop
    runs on all labelled rows (only the support rows with ``train_rows="support"``).

    Parameters
    ----------
    basis : BasisFamily, family name or None
        Fitted on the training tasks unless already fitted.  None: a two-layer tanh network
        (``mlp``, 40 units per layer, seeded by ``random_state``), learned by default.
    method : {"maml", "fomaml", "metasgd", "reptile", "imaml"}
        "maml": exact second-order MAML (Finn et al. 2017).  "fomaml": first-order MAML (the
        Jacobian of the inner loop dropped).  "metasgd": MAML with learned per-coordinate inner
        rates (Li et al. 2017).  "reptile": w0 moves toward the adapted weights (Nichol et al.
        2018).  "imaml": the inner problem is biased ridge, argmin L_in(w) + lam/2 ||w - w0||^2,
        solved exactly; the implicit meta-gradient is one more solve (Rajeswaran et al. 2019).
    inner_steps : int
        Gradient steps of the inner loop (not used by iMAML), at most 1000.
    inner_lr : "auto" or float > 0
        Inner learning rate a.  "auto": 1 / the largest lambda_max(Phi^T Phi / n) over a seeded
        sample of 512 training tasks' support rows (at the initial basis): every sampled task's
        step contracts.
    inner_reg : "auto" or float > 0
        iMAML's proximal strength lam; "auto" starts at 1 / (inner_steps * a) (k steps of rate a
        fit about as much as ridge of that strength) and is meta-learned (exact d/dlog lam).
    meta_lr : float > 0
        Adam's peak step size: warmed up linearly over the first 100 meta-iterations, then halved
        after every ``patience // 4`` validation measurements without improvement.  Adam works on scale-free parameters: w0 * sqrt(s) and the rates divided
        by inner_lr, so one value suits every basis scale.  The basis parameters use ``basis_lr``.
    basis_lr : float > 0 or None
        Adam step size of the basis parameters (None: ``meta_lr``).
    meta_batch : int
        Tasks per meta-gradient.
    n_iter : int
        At most this many meta-iterations of ``fit`` on a TaskSet (a stream: one pass,
        ``partial_fit`` per chunk).
    max_time : float or None
        Stop meta-training once this many seconds have passed since fit (or partial_fit) started,
        set-up included (checked after every meta-iteration).  Default 50.
    validation_fraction : float in [0, 1) or None
        Share of the training tasks held out (fixed split each) to measure the query MSE after
        adaptation every 50 meta-iterations; the best parameters are kept.  None or 0: no
        validation (train until ``n_iter`` or ``max_time``).
    patience : int
        Stop after this many validation measurements without a relative improvement of 1e-4.
    learn_basis : bool or "auto"
        Also move the basis's ``learnable_params`` by Adam, through ``design_vjp`` of the exact
        dL/dPhi (for MAML and iMAML; first order, w_k held fixed, for fomaml; not for reptile).
        "auto": learn the default network basis (basis=None, not reptile), keep a given basis.
    train_rows : {"all", "support"}
        See above.
    n_jobs : int or None
        Kernel threads (None: all cores).  Results do not depend on it.
    random_state : int, Generator or None
        Seeds the meta-batches and the splits.
    verbose : int
        > 0: a tqdm progress bar on a terminal.

    Attributes
    ----------
    basis_, init_coef_ (m,) meta-learned initial weights (units of y), inner_lr_ (m,) inner
    rates (learned with metasgd), inner_reg_ (iMAML, learned when inner_reg="auto"), loss_curve_
    (meta-loss, the mean outer MSE in units of y^2, per iteration), history_ (per validation:
    iteration, train_loss, val_loss, meta_lr, seconds), best_val_loss_, stop_reason_ ("converged",
    "max_time", "n_iter" or "epochs"), learn_basis_, n_iter_, n_tasks_seen_.
    """

    def __init__(
        self,
        basis=None,
        method: str = "maml",
        inner_steps: int = 5,
        inner_lr="auto",
        inner_reg="auto",
        meta_lr: float = 0.003,
        basis_lr=None,
        meta_batch: int = 32,
        n_iter: int = 100_000,
        max_time=50.0,
        validation_fraction=0.1,
        patience: int = 20,
        learn_basis="auto",
        train_rows: str = "all",
        n_jobs=None,
        random_state=None,
        verbose: int = 0,
    ):
        self.basis = basis
        self.method = method
        self.inner_steps = inner_steps
        self.inner_lr = inner_lr
        self.inner_reg = inner_reg
        self.meta_lr = meta_lr
        self.basis_lr = basis_lr
        self.meta_batch = meta_batch
        self.n_iter = n_iter
        self.max_time = max_time
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.learn_basis = learn_basis
        self.train_rows = train_rows
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    # ================================================================== parameters
    def _check_params(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"parameter 'method' must be one of {METHODS}; got {self.method!r}")
        check_inner_steps(self.inner_steps, minimum=1)
        for name in ("inner_lr", "inner_reg"):
            value = getattr(self, name)
            if not (isinstance(value, str) and value == "auto"):
                check_positive_float(value, name)
        check_positive_float(self.meta_lr, "meta_lr")
        if self.basis_lr is not None:
            check_positive_float(self.basis_lr, "basis_lr")
        check_positive_int(self.meta_batch, "meta_batch")
        check_positive_int(self.n_iter, "n_iter", minimum=0)
        if self.max_time is not None:
            check_positive_float(self.max_time, "max_time")
        if not (isinstance(self.learn_basis, (bool, np.bool_)) or self.learn_basis == "auto"):
            raise ValueError(f"parameter 'learn_basis' must be True, False or 'auto'; got {self.learn_basis!r}")
        frac = self.validation_fraction
        if frac is not None and not (
            isinstance(frac, (int, float)) and not isinstance(frac, bool) and 0.0 <= frac < 1.0
        ):
            raise ValueError(f"parameter 'validation_fraction' must be None or a number in [0, 1); got {frac!r}")
        check_positive_int(self.patience, "patience")
        check_train_rows(self.train_rows)
        self._n_threads = effective_n_threads(self.n_jobs)

    def _mode(self) -> str:
        if self.method == "reptile":
            return "inner-only"
        return "resplit" if self.train_rows == "all" else "given"

    @staticmethod
    def _check_regression(ts: TaskSet) -> TaskSet:
        if ts.is_classification:
            raise TypeError(
                "argument 'tasks' holds integer class labels: MetaGrad does regression "
                "(squared loss); use mf.MetaClassifier for classification"
            )
        return ts

    # ================================================================== fit
    @with_one_blas_thread
    def fit(self, tasks, y=None) -> MetaGrad:
        """Meta-train from scratch on a TaskSet (meta-batches until the validation loss stops
        improving, ``n_iter`` or ``max_time``), or one pass of ``partial_fit`` over each chunk of a
        stream (an iterable of TaskSets).

        The new model is built aside and swapped in at the end: concurrent ``adapt`` / ``evaluate``
        calls see the old model or the new one, and an interrupted or failed fit keeps the old one.
        """
        work = self._work_copy(keep_fitted=False)
        work._check_params()
        work._t_start = time.perf_counter()
        if isinstance(tasks, TaskSet):
            ts = work._check_regression(check_tasks(tasks))
            train, valid = work._setup(ts, hold_out=True)
            _training.train(work, train, epochs=None, valid=valid)
        else:
            for chunk in iter_task_chunks(tasks):
                work._partial_fit(chunk)
            if not getattr(work, "_mf_fitted", False):
                raise ValueError("argument 'tasks' holds no TaskSet chunks")
        self._swap_in(work)
        return self

    @with_one_blas_thread
    def partial_fit(self, tasks) -> MetaGrad:
        """One more pass (each task once, in meta-batches, freshly split) over new tasks, continuing
        the same Adam state; the first call sets up the basis and scales from these tasks.  Built
        aside and swapped in at the end, like ``fit``."""
        work = self._work_copy(keep_fitted=True)
        for name in ("_adam", "_rng", "loss_curve_", "history_"):  # the fit mutates these
            if name in work.__dict__:
                work.__dict__[name] = copy.deepcopy(work.__dict__[name])
        work._check_params()
        work._t_start = time.perf_counter()
        work._partial_fit(tasks)
        self._swap_in(work)
        return self

    def _partial_fit(self, tasks) -> MetaGrad:
        ts = self._check_regression(check_tasks(tasks))
        if not getattr(self, "_mf_fitted", False):
            self._setup(ts, hold_out=False)
        elif ts.n_features != self.basis_.n_features_in_:
            raise ValueError(
                f"argument 'tasks' has {ts.n_features} features, but the model was fitted on "
                f"{self.basis_.n_features_in_}"
            )
        _training.train(self, ts, epochs=1, valid=None)
        return self

    def _setup(self, ts: TaskSet, hold_out: bool):
        """Basis, scales, initial parameters and optimiser state from the first training tasks;
        with ``hold_out``, also the validation tasks: returns (training tasks, ValidationSet or None)."""
        if self.basis is None:
            self.basis_ = self._init_basis(ts, default="mlp", random_state=self.random_state, **DEFAULT_NETWORK)
        else:
            self.basis_ = self._init_basis(ts)
        learn = self.learn_basis
        self.learn_basis_ = (self.basis is None and self.method != "reptile") if learn == "auto" else bool(learn)
        if self.learn_basis_ and self.method == "reptile":
            raise ValueError(
                "learn_basis=True is not available with method='reptile': Reptile's update is not "
                "the gradient of a meta-loss, so there is nothing to carry through the basis; "
                "use 'fomaml' or 'maml'"
            )
        if self.learn_basis_ and not self.basis_.learnable_params():
            raise ValueError(
                f"learn_basis=True, but the basis {type(self.basis_).__name__} has no learnable "
                "parameters (its learnable_params() is empty)"
            )
        merged = ts.all_rows()
        rng = self._rng = np.random.default_rng(self.random_state)
        self._y_scale = target_scale(merged.y_support)
        self._row_scale = row_scale(self.basis_, merged.X_support, rng)
        a = (
            stable_inner_lr(self.basis_, ts, rng, 1.0 / self._row_scale**2)
            if self.inner_lr == "auto"
            else float(self.inner_lr)
        )
        self._lr0 = a
        self._reg0 = 1.0 / (self.inner_steps * a) if self.inner_reg == "auto" else float(self.inner_reg)
        m = self.basis_.n_basis
        self._params = {"w0": np.zeros(m), "rates": np.ones(m)}  # scale-free (see meta_lr)
        if self.method == "imaml" and self.inner_reg == "auto":
            self._params["log_reg"] = np.zeros(1)  # log(lam / its starting value)
        if self.learn_basis_:
            flat, self._basis_layout = _flatten(self.basis_.learnable_params())
            self._params["basis"] = flat
        self._adam = Adam(float(self.meta_lr))
        self.loss_curve_ = []
        self.history_ = _training.new_history()
        self.n_iter_ = 0
        self.n_tasks_seen_ = 0
        self.stop_reason_ = None
        self._publish()
        self._mf_fitted = True
        valid = None
        n_val = int(round(float(self.validation_fraction or 0.0) * len(ts))) if hold_out else 0
        if n_val >= 2 and len(ts) - n_val >= 2:
            order = rng.permutation(len(ts))
            held, ts = ts.subset(np.sort(order[:n_val])), ts.subset(np.sort(order[n_val:]))
            valid = _training.ValidationSet(
                held, self.basis_, self._y_scale, self._mode(), rng, cache_design=not self.learn_basis_
            )
        return ts, valid

    def _weights(self) -> tuple[np.ndarray, np.ndarray]:
        """(w0, inner rates) in the units of the scaled targets, for the kernels."""
        return self._params["w0"] / self._row_scale, self._params["rates"] * self._lr0

    def _publish(self) -> None:
        """Public attributes (units of y) from the scale-free parameters."""
        self.init_coef_ = self._params["w0"] / self._row_scale * self._y_scale
        self.inner_lr_ = self._params["rates"] * self._lr0
        self.inner_reg_ = self._reg0 * float(np.exp(self._params.get("log_reg", np.zeros(1))[0]))

    def _batch_threads(self, batch) -> int:
        """Threads for one meta-batch: one below ~1e6 flops (waking a thread then costs more than
        it saves, and a scheduler time slice on a busy machine: measured 40x slower)."""
        work = (batch.inner.shape[0] * (2 * int(self.inner_steps) + 1) + batch.outer.shape[0]) * self.basis_.n_basis
        return threads_for_work(self._n_threads, work)

    # ================================================================== new tasks
    def adapt(self, X, y) -> GradTaskRegressor:
        """The new task's model after the inner loop on its points (X, y), fitted."""
        model = self._fitted_view()
        reg = GradTaskRegressor(
            basis=model.basis_,
            init_coef=model.init_coef_,
            inner_lr=model.inner_lr_,
            inner_steps=int(model.inner_steps),
            method=model.method,
            inner_reg=model.inner_reg_,
        )
        return reg.fit(X, y)

    def adapt_predict(self, X, y, X_query) -> np.ndarray:
        """``adapt(X, y).predict(X_query)`` without building the per-task estimator."""
        model = self._fitted_view()
        Phi = as_f64(model.basis_.design(X))
        yc = check_y(y, "y", n_samples=Phi.shape[0])
        w = adapt_weights(
            model.method,
            int(model.inner_steps),
            model.inner_reg_,
            Phi,
            yc,
            np.array([0, Phi.shape[0]]),
            model.init_coef_,
            model.inner_lr_,
            1,
        )[0]
        return np.asarray(model.basis_.weighted_sum(X_query, w), dtype=np.float64)

    def adapt_tasks(self, tasks: TaskSet) -> np.ndarray:
        """(T, m) adapted weights of every task (inner loop on its support set), float64."""
        model = self._fitted_view()
        ts = check_tasks(tasks)
        return model._adapt_tasks(ts).astype(np.float64)

    def _adapt_tasks(self, ts: TaskSet) -> np.ndarray:
        if ts.n_features != self.basis_.n_features_in_:
            raise ValueError(
                f"argument 'tasks' has {ts.n_features} features, but the model was fitted on "
                f"{self.basis_.n_features_in_}"
            )
        Phi = np.ascontiguousarray(self.basis_.design(ts.X_support))
        return adapt_weights(
            self.method,
            int(self.inner_steps),
            self.inner_reg_,
            Phi,
            np.asarray(ts.y_support, dtype=np.float64),
            ts.support_offsets,
            self.init_coef_,
            self.inner_lr_,
            effective_n_threads(self.n_jobs),
        )

    @with_one_blas_thread
    def _predict_tasks(self, tasks: TaskSet):
        W = self._adapt_tasks(tasks)
        mean = self.basis_.weighted_sum_tasks(tasks.X_query, tasks.query_offsets, W)
        return np.asarray(mean, dtype=np.float64), None
