"""Basis hyperparameters by maximising the summed log marginal likelihood (docs/derivations.md 6.2).

For a fixed prior (mu, Sigma, sigma^2) the summed log evidence J(theta) = sum_t log p(y_t | theta)
has dJ/dPhi_t = a_t m_t^T - C_t^{-1} Phi_t Sigma (= Q Phi Sigma + a mu^T), which the ``_bayes``
kernel computes for every packed row at once; the basis contracts it with dPhi/dtheta through
``design_vjp``.  scipy's L-BFGS-B then moves theta.  MetaBayes alternates this with EM (see
``MetaBayes`` for why).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from scipy.optimize import minimize

from metafast._kernels import _bayes
from metafast.learners._prior import GaussianPrior
from metafast.tasks._taskset import TaskSet


def _flatten(params: dict) -> tuple[np.ndarray, list]:
    layout = [(k, np.shape(v)) for k, v in params.items()]
    flat = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in params.values()]) if params else np.zeros(0)
    return flat, layout


def _unflatten(x: np.ndarray, layout: list) -> dict:
    out, i = {}, 0
    for key, shape in layout:
        size = int(np.prod(shape, dtype=np.int64))
        out[key] = x[i : i + size].reshape(shape).copy()
        i += size
    return out


def log_evidence_and_grad(
    basis, chunks: Iterable, prior: GaussianPrior, y_scale: float, n_threads: int
) -> tuple[float, dict, int]:
    """(sum_t log p(y_t), its gradient per learnable parameter, number of tasks), standardised y."""
    total, grads, n_tasks = 0.0, None, 0
    for chunk in chunks:
        Xs = chunk.X_support
        Phi = np.ascontiguousarray(basis.design(Xs))
        dtype = Phi.dtype
        mu, Sigma, Sinv, h, logdet, s2, sigma_diag = prior.kernel_args(dtype)
        y = np.ascontiguousarray(np.asarray(chunk.y_support, dtype=np.float64) / y_scale, dtype=dtype)
        T = len(chunk)
        G = np.zeros_like(Phi)
        logp = np.empty(T, dtype=np.float64)
        status = np.empty(T, dtype=np.intc)
        _bayes.grad_design(
            Phi, y, chunk.support_offsets, mu, Sigma, Sinv, h, logdet, s2, sigma_diag, n_threads, G, logp, status
        )
        if (status < 0).any():
            return -np.inf, {}, T
        total += float(logp.sum())
        g = basis.design_vjp(Xs, G)
        grads = g if grads is None else {k: grads[k] + g[k] for k in grads}
        n_tasks += T
    return total, grads or {}, n_tasks


def check_learnable(basis) -> dict:
    """The basis's learnable parameters, or a clear error when it has none."""
    params = basis.learnable_params()
    if not params:
        why = getattr(basis, "not_learnable_reason", None)
        raise ValueError(
            f"learn_basis=True, but the basis {type(basis).__name__} has no learnable parameters: "
            f"{why() if callable(why) else 'its learnable_params() is empty'}"
        )
    return params


def minimise_over_basis(basis, evaluate: Callable, max_iter: int) -> tuple[object, float, float]:
    """L-BFGS-B on the basis's learnable parameters of ``evaluate(basis) -> (value, grads)`` (grads
    keyed like ``learnable_params()``); a failed or non-finite evaluation counts as +inf.

    Returns (new basis, value before, after); the old basis is kept when L-BFGS does not improve.
    """
    x0, layout = _flatten(check_learnable(basis))
    last: dict = {}  # L-BFGS evaluates x0 again first: one evaluation serves both

    def objective(x):
        key = x.tobytes()
        if key not in last:
            last.clear()
            last[key] = _evaluate(x)
        val, g = last[key]
        return val, g.copy()

    def _evaluate(x):
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                val, grad = evaluate(basis.with_params(**_unflatten(x, layout)))
        except (ValueError, FloatingPointError, np.linalg.LinAlgError):
            return np.inf, np.zeros_like(x)
        g, _ = _flatten({k: grad[k] for k, _ in layout}) if grad else (np.zeros_like(x), None)
        if not (np.isfinite(val) and np.isfinite(g).all()):
            return np.inf, np.zeros_like(x)
        return float(val), g

    f0, _ = objective(x0)
    res = minimize(objective, x0, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    if np.isfinite(res.fun) and res.fun < f0:
        return basis.with_params(**_unflatten(res.x, layout)), f0, float(res.fun)
    return basis, f0, f0


def optimise_basis(
    basis,
    chunks_factory: Callable[[], Iterable],
    prior: GaussianPrior,
    y_scale: float,
    n_threads: int,
    max_iter: int,
    evidence: Callable | None = None,
) -> tuple[object, float, float]:
    """L-BFGS on the basis's learnable parameters for a fixed prior.

    Returns (new basis, summed log evidence before, after); the old basis is kept when L-BFGS
    does not improve on it.  ``evidence(basis, prior, y_scale, n_threads)`` replaces
    ``log_evidence_and_grad`` over ``chunks_factory()`` (the Dask workers' sum over their chunks).
    """
    n_tasks = [1]

    def evaluate(b):
        val, grad, n_tasks[0] = (
            evidence(b, prior, y_scale, n_threads)
            if evidence is not None
            else log_evidence_and_grad(b, chunks_factory(), prior, y_scale, n_threads)
        )
        return -val / n_tasks[0], {k: -g / n_tasks[0] for k, g in grad.items()}

    new, f0, f1 = minimise_over_basis(basis, evaluate, max_iter)
    return new, -f0 * n_tasks[0], -f1 * n_tasks[0]


# ------------------------------------------------- the same evidence summed over Dask chunks
def _flat_grad(basis, grads: dict) -> np.ndarray:
    params = basis.learnable_params()
    return (
        np.concatenate(
            [
                np.ravel(np.asarray(grads[k], dtype=np.float64)) if k in grads else np.zeros(np.size(v))
                for k, v in params.items()
            ]
        )
        if params
        else np.zeros(0)
    )


def _evidence_chunk(chunk: TaskSet, basis, prior, y_scale: float, n_threads: int) -> np.ndarray:
    """[sum_t log p(y_t), n_tasks, gradient...] of one chunk (-inf if a posterior was singular)."""

    val, grads, n_tasks = log_evidence_and_grad(basis, [chunk], prior, y_scale, n_threads)
    g = _flat_grad(basis, grads) if grads else np.zeros(_flat_grad(basis, {}).size)
    return np.concatenate(([val, n_tasks], g))


def evidence_on_workers(chunks):
    """``evidence(basis, prior, y_scale, n_threads) -> (log evidence, gradient dict, n_tasks)``
    summed over the chunks on the workers (for ``optimise_basis``)."""

    def evidence(basis, prior, y_scale, n_threads):
        out = chunks.map_sum(_evidence_chunk, basis, prior, y_scale)
        val, n_tasks, flat = float(out[0]), int(out[1]), out[2:]
        if not np.isfinite(val):
            return -np.inf, {}, n_tasks
        grads, pos = {}, 0
        for k, v in basis.learnable_params().items():
            grads[k] = flat[pos : pos + np.size(v)].reshape(np.shape(v))
            pos += np.size(v)
        return val, grads, n_tasks

    return evidence
