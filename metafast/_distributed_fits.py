"""The learners' passes over the tasks that are sums over chunks, run where the chunks live
(``metafast.distributed.DaskChunks``): each worker computes its chunks' terms, the workers add
them pairwise, and the driver gets one small array back.

- MetaBayes ``learn_basis``: the summed log evidence and its gradient in the basis parameters;
- MetaRidge: the closed-form and leave-one-out statistics (M, b, Q, q, sq) per alpha, and the
  Moreau-envelope objective and its gradient in the metric (``metric="diag"``).

Each per-chunk function packs its terms into one float64 vector, so the sum on the workers is a
vector sum; the driver unpacks it.  The learners' fits that are not listed here raise
NotImplementedError with backend="dask" (``check_ridge_dask``).
"""

from __future__ import annotations

import numpy as np

from metafast.tasks._taskset import TaskSet


# ---------------------------------------------------------------------------- MetaBayes learn_basis
def _flat_grad(basis, grads: dict) -> np.ndarray:
    params = basis.learnable_params()
    return np.concatenate([np.ravel(np.asarray(grads[k], dtype=np.float64)) if k in grads
                           else np.zeros(np.size(v)) for k, v in params.items()]) if params else np.zeros(0)


def _evidence_chunk(chunk: TaskSet, basis, prior, y_scale: float, n_threads: int) -> np.ndarray:
    """[sum_t log p(y_t), n_tasks, gradient...] of one chunk (-inf if a posterior was singular)."""
    from metafast.learners._basis_opt import log_evidence_and_grad

    val, grads, n_tasks = log_evidence_and_grad(basis, [chunk], prior, y_scale, n_threads)
    g = _flat_grad(basis, grads) if grads else np.zeros(_flat_grad(basis, {}).size)
    return np.concatenate(([val, n_tasks], g))


def evidence_on_workers(chunks):
    """``evidence(basis, prior, y_scale, n_threads) -> (log evidence, gradient dict, n_tasks)``
    summed over the chunks on the workers (for ``_basis_opt.optimise_basis``)."""

    def evidence(basis, prior, y_scale, n_threads):
        out = chunks.map_sum(_evidence_chunk, basis, prior, y_scale)
        val, n_tasks, flat = float(out[0]), int(out[1]), out[2:]
        if not np.isfinite(val):
            return -np.inf, {}, n_tasks
        grads, pos = {}, 0
        for k, v in basis.learnable_params().items():
            grads[k] = flat[pos:pos + np.size(v)].reshape(np.shape(v))
            pos += np.size(v)
        return val, grads, n_tasks

    return evidence


# ---------------------------------------------------------------------------- MetaRidge
def check_ridge_dask(model) -> None:
    """What MetaRidge runs on the workers; anything else is an error, never a silent fallback."""
    if model.backend not in ("threads", "dask"):
        raise ValueError(f"parameter 'backend' must be 'threads' or 'dask'; got {model.backend!r}")
    unsupported = [("mean='split'", model.mean == "split"),
                   ("cv='query'", model.cv == "query" and np.size(model.alphas) > 1),
                   ("learn_basis=True", bool(model.learn_basis))]
    for what, used in unsupported:
        if used:
            raise NotImplementedError(
                f"MetaRidge with backend='dask' runs the envelope mean, the leave-one-out choice of "
                f"alpha and metric='diag' on the workers; {what} (held-out objectives on the "
                "support/query split) runs in process only: use backend='threads'")


class RidgeChunks:
    """MetaRidge's training chunks on the workers, with the two passes it needs there."""

    def __init__(self, model, tasks):
        from metafast.distributed import DaskChunks

        check_ridge_dask(model)
        self.chunks = DaskChunks(tasks, model.train_rows)
        self.first = self.chunks.first()
        if len(self.first) == 0:
            raise ValueError("argument 'tasks': the first chunk holds no tasks")

    def map_sum(self, fn, *args):
        return self.chunks.map_sum(fn, *args)

    def meta_stats(self, model, alphas: np.ndarray, s: np.ndarray, with_loo: bool):
        """(M, b, Q, q, sq, n_tasks) as ``MetaRidge._stats`` returns them, summed on the workers."""
        m, k = model.basis_.n_basis, alphas.size
        out = self.map_sum(_ridge_stats_chunk, model.basis_, alphas, s, with_loo)
        sizes = [k * m * m, k * m, k * m * m, k * m, k]
        parts = np.split(out[:-2], np.cumsum(sizes)[:-1])
        M, b, Q, q, sq = (p.reshape(shape) for p, shape in
                          zip(parts, [(k, m, m), (k, m), (k, m, m), (k, m), (k,)]))
        n_tasks, jitter = int(out[-2]), int(out[-1])
        model.n_jitter_ += jitter
        if n_tasks == 0:
            raise ValueError("argument 'tasks': every task has an empty support set; nothing to learn from")
        return M, b, Q, q, sq, n_tasks

    def envelope(self, model, h: np.ndarray, s: np.ndarray, alpha: float):
        """(mean envelope objective, its gradient in the metric) as ``MetaRidge._envelope``."""
        out = self.map_sum(_envelope_chunk, model.basis_, h, s, float(alpha))
        m = s.size
        total, grad, n_tasks, jitter = out[0], out[1:1 + m], out[1 + m], out[2 + m]
        model.n_jitter_ += int(jitter)
        return float(total) / n_tasks, grad / n_tasks


def _ridge_stats_chunk(chunk: TaskSet, basis, alphas, s, with_loo: bool, n_threads: int) -> np.ndarray:
    from metafast._kernels import _ridge
    from metafast.learners._base import check_regression
    from metafast.learners.ridge import _as_f64, _threads_for

    check_regression(chunk, "MetaRidge")
    Phi, y, off = _as_f64(basis.design(chunk.X_support)), _as_f64(chunk.y_support), chunk.support_offsets
    m = Phi.shape[1]
    Mi, bi, Qi, qi, sqi = np.empty((m, m)), np.empty(m), np.empty((m, m)), np.empty(m), np.empty(1)
    per_alpha, jitter = [], 0
    for a in alphas:
        jitter += _ridge.meta_stats(Phi, y, off, s, float(a), Mi, bi, Qi, qi, sqi,
                                    _threads_for(n_threads, off), with_loo)
        per_alpha.append((Mi.copy(), bi.copy(), Qi.copy(), qi.copy(), sqi.copy()))
    cols = [np.concatenate([np.ravel(p[j]) for p in per_alpha]) for j in range(5)]
    return np.concatenate(cols + [[np.count_nonzero(np.diff(off)), jitter]])


def _envelope_chunk(chunk: TaskSet, basis, h, s, alpha: float, n_threads: int) -> np.ndarray:
    from metafast._kernels import _ridge
    from metafast.learners.ridge import _as_f64, _threads_for

    Phi, off = _as_f64(basis.design(chunk.X_support)), chunk.support_offsets
    T, m = off.shape[0] - 1, s.size
    val, dd = np.empty(T), np.empty((T, m))
    jitter = _ridge.envelope_grad(Phi, _as_f64(chunk.y_support), off, h, s, alpha, val, dd,
                                  _threads_for(n_threads, off))
    return np.concatenate(([val.sum()], dd.sum(axis=0), [np.count_nonzero(np.diff(off)), jitter]))
