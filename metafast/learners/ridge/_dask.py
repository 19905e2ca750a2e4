"""The learners' passes over the tasks that are sums over chunks, run where the chunks live
(``metafast.distributed.DaskChunks``): each worker computes its chunks' terms, the workers add
them pairwise, and the driver gets one small array back.

MetaRidge's passes: the closed-form and leave-one-out statistics (M, b, Q, q, sq) per alpha, the
  Moreau-envelope objective and its gradient in the metric (``metric="diag"``), the transfer-risk
  statistics (``mean="split"``), the query scores of each alpha (``cv="query"``) and the held-out
  loss with its gradient in (basis, log alpha, h) (``learn_basis=True``).

Each per-chunk function packs its terms into one float64 vector, so the sum on the workers is a
vector sum; the driver unpacks it.  In process, ``_source._TaskSource`` runs every one of these
passes through the same per-chunk functions (its ``map_sum``; the held-out passes are the
``_RidgeSplitPasses`` mixin both sources share), so the two routes share one code path.
MetaRidge's held-out objectives need each task's support/query split, so when one of them is used
the chunks are kept on the workers as given and turned into training rows (``train_rows``) on the
worker for the other passes.
"""

from __future__ import annotations

import numpy as np

from metafast._kernels import _ridge
from metafast.distributed import DaskChunks
from metafast.learners._arrays import as_f64
from metafast.learners._base import check_regression, training_view
from metafast.learners.ridge._source import _RidgeSplitPasses, _threads_for
from metafast.tasks._taskset import TaskSet


# ---------------------------------------------------------------------------- MetaRidge
def _uses_split(model) -> bool:
    return model.mean == "split" or (model.cv == "query" and np.size(model.alphas) > 1) or bool(model.learn_basis)


def _ridge_stats_chunk(chunk: TaskSet, view: str, basis, alphas, s, with_loo: bool, n_threads: int) -> np.ndarray:
    check_regression(chunk, "MetaRidge")
    chunk = training_view(chunk, view)
    Phi, y, off = as_f64(basis.design(chunk.X_support)), as_f64(chunk.y_support), chunk.support_offsets
    m = Phi.shape[1]
    Mi, bi, Qi, qi, sqi = np.empty((m, m)), np.empty(m), np.empty((m, m)), np.empty(m), np.empty(1)
    per_alpha, jitter = [], 0
    for a in alphas:
        jitter += _ridge.meta_stats(
            Phi, y, off, s, float(a), Mi, bi, Qi, qi, sqi, _threads_for(n_threads, off), with_loo
        )
        per_alpha.append((Mi.copy(), bi.copy(), Qi.copy(), qi.copy(), sqi.copy()))
    cols = [np.concatenate([np.ravel(p[j]) for p in per_alpha]) for j in range(5)]
    return np.concatenate(cols + [[np.count_nonzero(np.diff(off)), jitter]])


def _envelope_chunk(chunk: TaskSet, view: str, basis, h, s, alpha: float, n_threads: int) -> np.ndarray:
    chunk = training_view(chunk, view)
    Phi, off = as_f64(basis.design(chunk.X_support)), chunk.support_offsets
    T, m = off.shape[0] - 1, s.size
    val, dd = np.empty(T), np.empty((T, m))
    jitter = _ridge.envelope_grad(Phi, as_f64(chunk.y_support), off, h, s, alpha, val, dd, _threads_for(n_threads, off))
    return np.concatenate(([val.sum()], dd.sum(axis=0), [np.count_nonzero(np.diff(off)), jitter]))


class RidgeChunks(_RidgeSplitPasses):
    """MetaRidge's chunks on the workers, with the passes it makes over them."""

    def __init__(self, model, tasks):
        if model.backend != "dask":
            raise ValueError(f"parameter 'backend' must be 'threads' or 'dask'; got {model.backend!r}")
        # kept as given when a held-out objective needs the split; else as training rows
        self.view = model.train_rows if _uses_split(model) else "support"
        self.chunks = DaskChunks(tasks, "support" if _uses_split(model) else model.train_rows)
        self._first = self.chunks.first()
        if len(self._first) == 0:
            raise ValueError("argument 'tasks': the first chunk holds no tasks")

    def first(self):
        return self._first

    def map_sum(self, fn, *args):
        return self.chunks.map_sum(fn, *args)


def ridge_meta_stats(source, model, alphas: np.ndarray, s: np.ndarray, with_loo: bool):
    """(M, b, Q, q, sq, n_tasks) of ``MetaRidge._stats``: one pass of ``_ridge_stats_chunk`` over
    ``source`` (in process or on the Dask workers)."""
    m, k = model.basis_.n_basis, alphas.size
    out = source.map_sum(_ridge_stats_chunk, source.view, model.basis_, alphas, s, with_loo)
    sizes = [k * m * m, k * m, k * m * m, k * m, k]
    parts = np.split(out[:-2], np.cumsum(sizes)[:-1])
    M, b, Q, q, sq = (p.reshape(shape) for p, shape in zip(parts, [(k, m, m), (k, m), (k, m, m), (k, m), (k,)]))
    n_tasks, jitter = int(out[-2]), int(out[-1])
    model.n_jitter_ += jitter
    if n_tasks == 0:
        raise ValueError("argument 'tasks': every task has an empty support set; nothing to learn from")
    return M, b, Q, q, sq, n_tasks


def ridge_envelope(source, model, h: np.ndarray, s: np.ndarray, alpha: float):
    """(mean envelope objective, its gradient in the metric) of ``MetaRidge._envelope``: one pass
    of ``_envelope_chunk`` over ``source`` (in process or on the Dask workers)."""
    out = source.map_sum(_envelope_chunk, source.view, model.basis_, h, s, float(alpha))
    m = s.size
    total, grad, n_tasks, jitter = out[0], out[1 : 1 + m], out[1 + m], out[2 + m]
    model.n_jitter_ += int(jitter)
    return float(total) / n_tasks, grad / n_tasks
