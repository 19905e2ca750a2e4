"""How MetaRidge reads its tasks (a TaskSet or a stream of chunks, one pass at a time) and its held-out
passes, shared by the in-process source and the Dask one."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import numpy as np

from metafast._kernels import _ridge
from metafast.learners._arrays import as_f64
from metafast.learners._base import check_regression, check_train_rows, training_view
from metafast.learners._chunks import LocalChunks
from metafast.learners.ridge._math import gls_mean
from metafast.parallel import threads_for_work
from metafast.tasks._taskset import TaskSet

_ONE_SHOT = (
    "this fit needs several passes over the tasks (metric='diag', learn_basis=True or cv='query'), but "
    "'tasks' is a one-shot iterator: pass a TaskSet or a re-iterable sequence of TaskSet chunks (e.g. a list)"
)
_WORK_PER_ROW = 512  # multiply-adds per packed row of a ridge kernel (~m^2 / 3 at m = 40)


def _threads_for(n_threads: int, offsets: np.ndarray) -> int:
    """Threads worth starting for a ridge kernel call over the packed tasks of ``offsets``
    (``parallel.threads_for_work``: one thread below about 2,000 rows)."""
    return threads_for_work(n_threads, _WORK_PER_ROW * int(offsets[-1]))


# ---------------------------------------------------------------------------- MetaRidge, held out
class _RidgeSplitPasses:
    """The passes of MetaRidge that use each task's support/query split, through ``map_sum`` of
    the source they are mixed into: ``_TaskSource`` in process, ``RidgeChunks`` on Dask."""

    def split_means(self, model, alphas: np.ndarray, s: np.ndarray) -> np.ndarray:
        """``MetaRidge._split_means``: the transfer-risk closed form of h for each alpha."""

        m, k = model.basis_.n_basis, alphas.size
        out = self.map_sum(_split_chunk, model.basis_, alphas, s)
        A, b = out[: k * m * m].reshape(k, m, m), out[k * m * m : k * m * (m + 1)].reshape(k, m)
        model.n_jitter_ += int(out[-1])
        if out[-2] == 0:
            raise ValueError("mean='split' needs training tasks with query points; none has any (use mean='envelope')")
        return np.stack([gls_mean(A[i], b[i]) for i in range(k)])

    def query_scores(self, model, alphas: np.ndarray, hs: np.ndarray, s: np.ndarray) -> np.ndarray:
        """``MetaRidge._query_scores``: mean query MSE after adapting on the support, per alpha."""
        out = self.map_sum(_query_chunk, model.basis_, alphas, hs, s)
        model.n_jitter_ += int(out[-1])
        if out[-2] == 0:
            raise ValueError("cv='query' needs training tasks with query points; none has any (use cv='loo')")
        return out[: alphas.size] / out[-2]

    def all_have_queries(self) -> bool:
        return bool(self.map_sum(_missing_queries) == 0)

    def n_tasks(self) -> int:
        return int(self.map_sum(_count_tasks))

    def heldout(self, model, basis, hv, s, lam: float, use_query: bool, n_total: int):
        """(loss, gradient in the basis parameters (flat, sorted by parameter name), d loss /
        d lam, d loss / d h) of ``MetaRidge._basis_objective``, summed on the workers."""
        out = self.map_sum(_heldout_chunk, basis, hv, s, lam, use_query, n_total)
        m = hv.size
        model.n_jitter_ += int(out[-1])
        return float(out[0]), out[2 + m : -1], float(out[1]), out[2 : 2 + m]


def _split_chunk(chunk: TaskSet, basis, alphas, s, n_threads: int) -> np.ndarray:
    check_regression(chunk, "MetaRidge")
    Phi, Phiq = as_f64(basis.design(chunk.X_support)), as_f64(basis.design(chunk.X_query))
    m = Phi.shape[1]
    Ai, bi, ci = np.empty((m, m)), np.empty(m), np.empty(1)
    As, bs, jitter = [], [], 0
    for a in alphas:
        jitter += _ridge.split_stats(
            Phi,
            as_f64(chunk.y_support),
            chunk.support_offsets,
            Phiq,
            as_f64(chunk.y_query),
            chunk.query_offsets,
            s,
            float(a),
            Ai,
            bi,
            ci,
            _threads_for(n_threads, chunk.query_offsets),
        )
        As.append(Ai.ravel().copy()), bs.append(bi.copy())
    return np.concatenate(As + bs + [[np.count_nonzero(np.diff(chunk.query_offsets)), jitter]])


def _heldout_terms(chunk, basis, h, s, lam: float, scale: float, n_threads: int):
    """MetaRidge's held-out loss per task and its gradients (the ``heldout_grad`` kernel)."""

    Phi, Phiq = as_f64(basis.design(chunk.X_support)), as_f64(basis.design(chunk.X_query))
    off = chunk.support_offsets
    T = off.shape[0] - 1
    G, Gq = np.empty_like(Phi), np.empty_like(Phiq)
    loss, dlam, dh = np.empty(T), np.empty(T), np.empty((T, Phi.shape[1]))
    jitter = _ridge.heldout_grad(
        Phi,
        as_f64(chunk.y_support),
        off,
        Phiq,
        as_f64(chunk.y_query),
        chunk.query_offsets,
        h,
        s,
        lam,
        scale,
        G,
        Gq,
        loss,
        dlam,
        dh,
        _threads_for(n_threads, off),
    )
    return loss, G, Gq, dlam, dh, jitter


def _query_chunk(chunk: TaskSet, basis, alphas, hs, s, n_threads: int) -> np.ndarray:
    totals, jitter = [], 0
    for i, a in enumerate(alphas):
        loss, *_, j = _heldout_terms(chunk, basis, hs[i], s, float(a), 1.0, n_threads)
        totals.append(loss.sum())
        jitter += j
    return np.concatenate((totals, [np.count_nonzero(np.diff(chunk.query_offsets)), jitter]))


def _missing_queries(chunk: TaskSet, n_threads: int) -> int:
    return int(np.count_nonzero(np.diff(chunk.query_offsets) == 0))


def _count_tasks(chunk: TaskSet, n_threads: int) -> int:
    return len(chunk)


def _heldout_chunk(
    chunk: TaskSet, basis, hv, s, lam: float, use_query: bool, n_total: int, n_threads: int
) -> np.ndarray:
    """[loss, d/d lam, d/d h (m), d/d basis params (flat)..., jitter] of one chunk."""

    m = hv.size
    if use_query:
        loss, G, Gq, dlam, dh, jitter = _heldout_terms(chunk, basis, hv, s, lam, 1.0 / n_total, n_threads)
    else:
        Phi, off = as_f64(basis.design(chunk.X_support)), chunk.support_offsets
        T = off.shape[0] - 1
        G, loss, dlam, dh = np.empty_like(Phi), np.empty(T), np.empty(T), np.empty((T, m))
        jitter = _ridge.loo_grad(
            Phi,
            as_f64(chunk.y_support),
            off,
            hv,
            s,
            lam,
            1.0 / n_total,
            G,
            loss,
            dlam,
            dh,
            _threads_for(n_threads, off),
        )
    g = {}
    if basis.learnable_params():
        g = basis.design_vjp(chunk.X_support, G)
        if use_query:
            g = {k: g[k] + v for k, v in basis.design_vjp(chunk.X_query, Gq).items()}
    flat = [np.ravel(g[k]) for k in sorted(basis.learnable_params())] if g else []
    return np.concatenate([[loss.sum(), dlam.sum()], dh.sum(axis=0)] + flat + [[jitter]])


class _TaskSource(_RidgeSplitPasses, LocalChunks):
    """MetaRidge's in-process source: ``LocalChunks`` (a TaskSet, a list of chunks, a
    re-iterable stream or a one-shot iterator, which is enough for the default closed-form fit
    and gives a clear error for the fits that need several passes), plus the training-row view
    and the progress bar of MetaRidge's own passes."""

    def __init__(self, tasks: Any, train_rows: str = "all", n_threads: int = 1, verbose: int = 0):
        super().__init__(tasks, n_threads, one_shot_error=_ONE_SHOT)
        self.train_rows = self.view = check_train_rows(train_rows)
        self._verbose = verbose
        self.first()

    def chunks(self, progress: int = 0, what: str = "", split: bool = False) -> Iterator[TaskSet]:
        """Each non-empty chunk once; as training rows (``train_rows``) unless ``split`` asks
        for the support/query split as given (the held-out objectives)."""
        bar = None if isinstance(self.tasks, TaskSet) else _progress(progress, None, what)
        for c in super().chunks():
            if len(c):
                yield c if split else training_view(c, self.train_rows)
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()

    def _pass_for(self, fn) -> Iterator[TaskSet]:
        """A pass of a per-chunk function of ``ridge._dask`` (the same code as on the Dask
        workers): the chunks as given, which the function turns into training rows with
        ``view``, with MetaRidge's progress bar."""
        return self.chunks(progress=self._verbose, what=fn.__name__.strip("_"), split=True)


def _progress(verbose: int, total, desc: str):
    if not verbose or not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"MetaRidge {desc}", leave=False)
