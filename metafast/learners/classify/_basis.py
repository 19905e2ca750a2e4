"""``learn_basis=True`` for MetaClassifier: the basis hyperparameters on each head's meta-training
objective, for a fixed head (prior, metric), by L-BFGS through ``BasisFamily.design_vjp``.

Each objective is a loss of the packed designs with its exact gradient with respect to them
(``dPhi``); the basis contracts dPhi with dPhi/dtheta.  The column of ones that carries the class
biases does not depend on theta, so its gradient column is dropped.

* logistic: the mean query log loss of the training tasks, each adapted (MAP) on its support set
  under the fixed prior -- the objective that already sets the prior's scale, so the split is used
  on purpose (the Laplace evidence would need third derivatives of the softmax).  The MAP depends
  on the support design implicitly: with H the Hessian of the negative log posterior in the
  whitened weights V (m x C), g = dL/dV and u = H^{-1} g, the support rows get
  dL/dphi_i = -[U u (p_i - y_i) + W J_i (u^T U^T phi_i)], J_i = diag(p_i) - p_i p_i^T, W = U V + M^T
  the adapted weights.  H^{-1} g is solved in the primal (mC x mC) when a task has more support
  rows than basis functions and in the dual (nC x nC, push-through identity) otherwise.
* ridge: minus the summed log evidence of the one-hot targets (the EM objective, every training
  row): dJ/dPhi = (A A^T - C K_s^{-1}) Phi Sigma + A M = G U^T + A M from the ridge E-step kernel.
* prototype: the leave-one-out log loss of every training row (the loss that sets the metric),
  through the prototypes (class means) and, in the shared setting, the global class means.

Each objective is a mean over rows or tasks, so it is a sum over chunks of the chunk's terms
divided by the total count: ``objective_terms`` computes a chunk's share and its gradient in the
basis parameters (``design_vjp`` where the chunk lives), and ``ChunkedObjective`` sums them over
a chunk source, the single in-process chunk or the Dask workers'.  The shared prototype
objective's global class means couple the chunks: its gradient takes a second pass through them.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from metafast.learners._basis_opt import check_learnable, minimise_over_basis
from metafast.learners.classify._chunks import chunk_data, design_with_bias


# ---------------------------------------------------------------------------- logistic head
def _grouped_tasks(s_off: np.ndarray, n_classes: np.ndarray):
    """Indices of tasks (with >= 2 classes and support rows) grouped by (n_support, C)."""
    sizes = np.diff(s_off)
    groups: dict = {}
    for t in np.flatnonzero((n_classes >= 2) & (sizes > 0)):
        groups.setdefault((int(sizes[t]), int(n_classes[t])), []).append(t)
    return groups


def _softmax(Z: np.ndarray) -> np.ndarray:
    P = np.exp(Z - Z.max(axis=-1, keepdims=True))
    return P / P.sum(axis=-1, keepdims=True)


def _hessian_solve(Psw: np.ndarray, P: np.ndarray, g: np.ndarray) -> np.ndarray:
    """u = H^{-1} g for a group of tasks, H = I + sum_i J_i (x) psw_i psw_i^T (whitened weights).

    Psw (k, n, m), P (k, n, C) support probabilities at the MAP, g (k, m, C); returns (k, m, C).
    """
    k, n, m = Psw.shape
    C = P.shape[2]
    J = np.einsum("kic,cd->kicd", P, np.eye(C)) - P[:, :, :, None] * P[:, :, None, :]
    if m < n:  # primal: (mC x mC), class-major blocks
        H = np.einsum("kicd,kia,kib->kcadb", J, Psw, Psw).reshape(k, C * m, C * m)
        H += np.eye(C * m)
        rhs = np.swapaxes(g, 1, 2).reshape(k, C * m, 1)
        return np.swapaxes(np.linalg.solve(H, rhs).reshape(k, C, m), 1, 2)
    # dual: H^{-1} = I - A^T (I + W K)^{-1} W A, A = I_C (x) Psw, (W X)_i = J_i x_i
    K = Psw @ np.swapaxes(Psw, 1, 2)
    S = np.einsum("kicd,kij->kicjd", J, K).reshape(k, n * C, n * C) + np.eye(n * C)
    WAg = np.einsum("kicd,kid->kic", J, Psw @ g).reshape(k, n * C, 1)
    x = np.linalg.solve(S, WAg).reshape(k, n, C)
    return g - np.swapaxes(Psw, 1, 2) @ x


def _query_part(Pq, cq, Wf, U, n_rows: int, dQ, rows_q, g) -> float:
    """Summed query log loss of k tasks with equal query sizes, Pq (k, nq, m), cq (k, nq), adapted
    weights Wf (k, m, C); writes dL/dPhi_q into dQ[rows_q] and dL/dV into g (k, m, C)."""
    Z = Pq @ Wf
    Z -= Z.max(axis=2, keepdims=True)
    lse = np.log(np.exp(Z).sum(axis=2))
    own = np.take_along_axis(Z, cq[:, :, None], axis=2)[:, :, 0]
    gZ = np.exp(Z - lse[:, :, None])
    np.put_along_axis(gZ, cq[:, :, None], np.take_along_axis(gZ, cq[:, :, None], axis=2) - 1.0, axis=2)
    gZ /= n_rows
    dQ[rows_q] = gZ @ np.swapaxes(Wf, 1, 2)
    g[:] = U.T @ (np.swapaxes(Pq, 1, 2) @ gZ)
    return float((lse - own).sum())


def logistic_query_loss(
    prior, Phi_s, codes_s, s_off, n_classes, Phi_q, codes_q, q_off, n_threads: int, total: float | None = None
):
    """(mean query log loss, dL/dPhi_s, dL/dPhi_q) of every training task adapted on its support
    under ``prior`` (a ``_logistic.ClassPrior``); see the module docstring.  ``total``: divide by
    this many rows instead (a chunk's share of the mean over all chunks)."""
    from metafast.learners.classify._logistic import laplace

    Phi_s64 = np.asarray(Phi_s, dtype=np.float64)
    Phi_q64 = np.asarray(Phi_q, dtype=np.float64)
    fit = laplace(np.ascontiguousarray(Phi_s64), codes_s, s_off, n_classes, prior, n_threads=n_threads)
    U = fit.U
    Psw = fit.Phi_w
    M = prior.means
    dS = np.zeros_like(Phi_s64)
    dQ = np.zeros_like(Phi_q64)
    q_sizes = np.diff(q_off)
    use = (n_classes >= 2) & (q_sizes > 0)
    n_rows = int(q_sizes[use].sum())
    if n_rows == 0 and total is not None:
        return 0.0, dS, dQ
    n_rows = n_rows if total is None else total
    if n_rows == 0:
        raise ValueError(
            "learn_basis=True with the logistic head needs training tasks with query rows and "
            "two or more classes: its objective is the query log loss after adapting on the support"
        )
    loss = 0.0
    for (_n, C), members in _grouped_tasks(s_off, n_classes).items():
        members = [t for t in members if use[t]]
        if not members:
            continue
        rows_s = np.stack([np.arange(s_off[t], s_off[t + 1]) for t in members])  # (k, n)
        Pw = Psw[rows_s]  # (k, n, m)
        V = np.swapaxes(Pw, 1, 2) @ fit.A[rows_s][:, :, :C].astype(np.float64)  # (k, m, C)
        Ys = np.eye(C)[codes_s[rows_s]]
        B0 = 0.0 if M is None else Phi_s64[rows_s] @ M.T[:, :C]
        Ps = _softmax(Pw @ V + B0)
        # one Newton step polishes the kernel's MAP (it stops on the objective: |grad| ~ 1e-9)
        V = V - _hessian_solve(Pw, Ps, V + np.swapaxes(Pw, 1, 2) @ (Ps - Ys))
        Ps = _softmax(Pw @ V + B0)
        Wf = U @ V  # (k, m, C)
        if M is not None:
            Wf = Wf + M.T[None, :, :C]
        g = np.zeros_like(V)
        nq = q_sizes[members]
        if np.all(nq == nq[0]):  # the usual case (episodes): one batched product
            rows_q = q_off[members][:, None] + np.arange(nq[0])[None, :]  # (k, nq)
            loss += _query_part(Phi_q64[rows_q], codes_q[rows_q], Wf, U, n_rows, dQ, rows_q, g)
        else:
            for j, t in enumerate(members):
                rows_q = np.arange(q_off[t], q_off[t + 1])[None, :]
                loss += _query_part(
                    Phi_q64[rows_q], codes_q[rows_q], Wf[j : j + 1], U, n_rows, dQ, rows_q, g[j : j + 1]
                )
        u = _hessian_solve(Pw, Ps, g)  # (k, m, C)
        R = Pw @ u  # (k, n, C)
        JR = Ps * R - Ps * (Ps * R).sum(axis=2, keepdims=True)
        dS[rows_s] = -((Ps - Ys) @ np.swapaxes(U @ u, 1, 2) + JR @ np.swapaxes(Wf, 1, 2))
    return loss / n_rows, dS, dQ


# ---------------------------------------------------------------------------- ridge head
def ridge_neg_evidence(
    prior, noise_var: float, Phi, codes, offsets, n_classes, n_threads: int, total: float | None = None
):
    """(-sum_t log p(Y_t) / T, its gradient with respect to Phi) of the one-hot targets (T: the
    tasks, or ``total``)."""
    from metafast.learners.classify._ridge_head import ridge_estep

    A, G, _, logp, _, _, _, U = ridge_estep(Phi, codes, offsets, n_classes, prior, noise_var, n_threads)
    dPhi = G.astype(np.float64) @ U.T
    if prior.means is not None:
        dPhi += A[:, : prior.means.shape[0]].astype(np.float64) @ prior.means
    T = max(offsets.shape[0] - 1, 1) if total is None else total
    return -float(logp.sum()) / T, -dPhi / T


# ---------------------------------------------------------------------------- prototype head
def prototype_loo_loss(
    metric: np.ndarray, shared: bool, Phi, codes, offsets, n_classes, n_threads: int, total: float | None = None
):
    """(mean leave-one-out log loss, its gradient with respect to Phi) under a fixed metric; the
    prototypes (and shared-setting global means, from these rows) are recomputed from Phi (see
    ``_prototype``).  ``total``: divide by this many rows instead."""
    from metafast.learners.classify._prototype import shared_class_sums

    Phi = np.asarray(Phi, dtype=np.float64)
    if not shared:
        return prototype_loo_terms(metric, Phi, codes, offsets, n_classes, n_threads, total)[:2]
    g, n_cls = shared_class_sums(Phi, codes, offsets, n_classes, int(n_classes.max(initial=0)))
    n_cls = np.maximum(n_cls, 1)
    val, d_phi, d_g = prototype_loo_terms(metric, Phi, codes, offsets, n_classes, n_threads, total, g / n_cls[:, None])
    return val, d_phi + (d_g / n_cls[:, None])[codes]


def prototype_loo_terms(
    metric: np.ndarray,
    Phi,
    codes,
    offsets,
    n_classes,
    n_threads: int,
    total: float | None = None,
    global_means: np.ndarray | None = None,
):
    """(LOO loss, its gradient in Phi for fixed ``global_means``, its gradient in the global means
    (shared setting; else None)): the global means' own dependence on Phi is the caller's (a sum
    over every chunk's rows)."""
    from metafast.learners.classify._prototype import KAPPA, LooLoss

    Phi = np.asarray(Phi, dtype=np.float64)
    shared = global_means is not None
    L = LooLoss(Phi, codes, offsets, n_classes, global_means, n_threads)
    if total is not None:
        L.n_used = total
    val, h = L.value_and_dscores(np.log(metric))
    cand, rows = L.cand, L.rows
    Hm = sparse.csr_matrix(
        (h[cand], (L.key_of[cand], np.broadcast_to(rows[:, None], cand.shape)[cand])),
        shape=(L.P.shape[0], Phi.shape[0]),
    )
    # D_ic = sum_j d_j (phi_ij - p_kj)^2 with dL/dD = h / n_used
    scale = 2.0 * metric / L.n_used
    d_phi = scale * (Phi * h.sum(axis=1)[:, None] - Hm.T @ L.P)
    d_p = -scale * (Hm @ Phi - L.P * np.asarray(Hm.sum(axis=1)))
    kappa = KAPPA if shared else 0.0
    denom = (L.counts + kappa) if shared else np.maximum(L.counts, 1.0)
    d_phi += (d_p / denom[:, None])[L.keys]
    d_g = None
    if shared:
        K = global_means.shape[0]
        d_g = np.zeros_like(global_means)
        np.add.at(d_g, np.tile(np.arange(K), offsets.shape[0] - 1), d_p * (kappa / denom)[:, None])
    return val, d_phi, d_g


# ---------------------------------------------------------------------------- over chunks
def objective_rows(chunk, spec, n_threads: int) -> float:
    """How many rows (logistic: query rows of tasks with >= 2 classes; prototype: rows the LOO
    loss uses) or tasks (ridge) of the chunk the objective is a mean over."""
    from metafast.learners.classify._prototype import loo_rows

    d = chunk_data(chunk, spec)
    if spec.head == "logistic":
        if d.calib is None:
            return 0.0
        q_sizes, n_classes = np.diff(d.calib[6]), d.calib[3]
        return float(q_sizes[(n_classes >= 2) & (q_sizes > 0)].sum())
    if spec.head == "ridge":
        return float(d.n_classes.shape[0])
    return float(loo_rows(d.codes, d.offsets, d.n_classes, spec.setting == "shared").sum())


def _flat(basis, grads: dict) -> list:
    return [np.ravel(np.asarray(grads[k], dtype=np.float64)) for k in sorted(basis.learnable_params())]


def _pull_back(basis, X, G) -> list:
    """The flat gradient in the basis parameters of a gradient G in the design (bias column dropped)."""
    return _flat(basis, basis.design_vjp(X, np.ascontiguousarray(G[:, :-1], dtype=np.asarray(X).dtype)))


def objective_terms(chunk, spec, head_state, basis, total: float, global_means, n_threads: int) -> np.ndarray:
    """[the chunk's share of the head's objective at ``basis``, its gradient in the basis's
    learnable parameters (flat, sorted by name), shared prototype: its gradient in the global
    class means (K*m)]: the objectives above on the chunk's designs, divided by the ``total`` over
    all chunks, and pulled back by ``design_vjp`` where the chunk lives."""
    from metafast.learners._base import training_view

    d = chunk_data(chunk, spec)
    extra = []
    if spec.head == "logistic":
        if d.calib is None:
            val, X, G = 0.0, chunk.X_support[:0], np.zeros((0, basis.n_basis + 1))
        else:
            _, codes_s, s_off, ncls, _, codes_q, q_off = d.calib
            val, dS, dQ = logistic_query_loss(
                head_state,
                design_with_bias(basis, chunk.X_support),
                codes_s,
                s_off,
                ncls,
                design_with_bias(basis, chunk.X_query),
                codes_q,
                q_off,
                n_threads,
                total,
            )
            X, G = np.concatenate([chunk.X_support, chunk.X_query]), np.concatenate([dS, dQ])
    else:
        X = training_view(chunk, spec.train_rows).X_support
        Phi = design_with_bias(basis, X)
        if spec.head == "ridge":
            val, G = ridge_neg_evidence(*head_state, Phi, d.codes, d.offsets, d.n_classes, n_threads, total)
        else:
            val, G, d_g = prototype_loo_terms(
                head_state, Phi, d.codes, d.offsets, d.n_classes, n_threads, total, global_means
            )
            extra = [] if d_g is None else [np.ravel(d_g)]
    return np.concatenate([[val]] + _pull_back(basis, X, G) + extra)


def class_sum_terms(chunk, spec, basis, n_shared: int, n_threads: int) -> np.ndarray:
    """[per shared class: the sum of its training rows' designs at ``basis`` (K*m), rows (K)]."""
    from metafast.learners._base import training_view
    from metafast.learners.classify._prototype import shared_class_sums

    d = chunk_data(chunk, spec)
    Phi = design_with_bias(basis, training_view(chunk, spec.train_rows).X_support).astype(np.float64, copy=False)
    g, n = shared_class_sums(Phi, d.codes, d.offsets, d.n_classes, n_shared)
    return np.concatenate([g.ravel(), n])


def class_mean_path_terms(chunk, spec, basis, dmeans: np.ndarray, n_threads: int) -> np.ndarray:
    """The gradient in the basis parameters through the global class means: each training row
    of class k gets dL/dg_k / n_k (``dmeans``, K x m) as its design gradient."""
    from metafast.learners._base import training_view

    d = chunk_data(chunk, spec)
    return np.concatenate(_pull_back(basis, training_view(chunk, spec.train_rows).X_support, dmeans[d.codes]))


class ChunkedObjective:
    """The fitted head's basis objective summed over a chunk source (in process or on the Dask
    workers): ``value(basis)`` and ``evaluate(basis) -> (value, gradient dict)``.  The shared
    prototype objective takes three passes per evaluation: the global class means, the chunks'
    terms at those means, and the gradient through the means."""

    def __init__(self, source, spec, head_state):
        self.source, self.spec, self.head_state = source, spec, head_state
        self.n_shared = spec.classes.shape[0] if spec.head == "prototype" and spec.setting == "shared" else None
        self.total = source.map_sum(objective_rows, spec)
        if self.total == 0:
            if spec.head == "logistic":
                raise ValueError(
                    "learn_basis=True with head='logistic' needs training tasks with query rows: "
                    "its objective is the query log loss after adapting on the support"
                )
            raise ValueError("learn_basis=True: no training row enters the head's objective")

    def evaluate(self, basis):
        params = basis.learnable_params()
        n_params = sum(np.size(v) for v in params.values())
        means = None
        if self.n_shared is not None:
            K = self.n_shared
            sums = self.source.map_sum(class_sum_terms, self.spec, basis, K)
            counts = np.maximum(sums[-K:], 1)
            means = sums[:-K].reshape(K, -1) / counts[:, None]
        out = self.source.map_sum(objective_terms, self.spec, self.head_state, basis, self.total, means)
        flat = out[1 : 1 + n_params]
        if means is not None:
            dmeans = out[1 + n_params :].reshape(means.shape) / counts[:, None]
            flat = flat + self.source.map_sum(class_mean_path_terms, self.spec, basis, dmeans)
        grads, pos = {}, 0
        for k in sorted(params):
            grads[k] = flat[pos : pos + np.size(params[k])].reshape(np.shape(params[k]))
            pos += np.size(params[k])
        return float(out[0]), grads

    def value(self, basis) -> float:
        return self.evaluate(basis)[0]


def optimise_basis(basis, objective: ChunkedObjective, max_iter: int):
    """L-BFGS on ``basis.learnable_params()`` of ``objective`` (a ``ChunkedObjective``).  Returns
    (basis, loss before, after); the old basis is kept when L-BFGS does not improve on it."""
    check_learnable(basis)
    new, f0, f1 = minimise_over_basis(basis, objective.evaluate, max_iter)
    if not np.isfinite(f0):
        raise FloatingPointError("learn_basis=True: the head's objective is not finite at the starting basis")
    return new, f0, f1


__all__ = [
    "logistic_query_loss",
    "ridge_neg_evidence",
    "prototype_loo_loss",
    "check_learnable",
    "optimise_basis",
    "ChunkedObjective",
]
