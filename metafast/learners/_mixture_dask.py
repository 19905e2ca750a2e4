"""The mixture-of-Gaussians prior (MetaBayes n_components > 1) fitted on Dask workers.

``MixturePrior``'s EM loop, k-means restarts and M-step run unchanged on the driver; what touches
the tasks goes to the workers holding the chunks (``metafast.distributed.DaskChunks``):

- the rescaling pass (RMS of y and of every design column): one vector summed on the workers;
- each E-step: every chunk's responsibility-weighted statistics (C + C m + C m^2 + 3 numbers),
  summed pairwise on the workers;
- once, for the k-means start: every task's posterior mean under the single Gaussian (T x m
  numbers, the one per-task transfer), and the rows of the <= 500 tasks the restarts are
  screened on.

The per-task attributes of an in-process fit (``responsibilities_``, ``task_log_evidence_``)
are not brought back.  ``n_components="auto"`` (which refits on a held-out split of the tasks)
raises NotImplementedError here.
"""

from __future__ import annotations

import numpy as np

from metafast.distributed import DaskChunks
from metafast.learners._base import check_regression
from metafast.learners._mixture import MixturePrior
from metafast.learners._mixture_em import _EM, _Params, _take_tasks
from metafast.parallel import effective_n_threads, one_blas_thread
from metafast.tasks._taskset import TaskSet


def _rescaled(chunk: TaskSet, basis, y_scale: float, col_scale: np.ndarray):
    Phi = np.ascontiguousarray(np.asarray(basis.design(chunk.X_support), dtype=np.float64) / col_scale)
    return Phi, np.asarray(chunk.y_support, dtype=np.float64) / y_scale, chunk.support_offsets


def _scale_sums(chunk: TaskSet, basis, n_threads: int) -> np.ndarray:
    """[tasks, rows, sum y^2, sum of each squared design column...] of one chunk."""
    Phi = np.asarray(basis.design(chunk.X_support), dtype=np.float64)
    y = np.asarray(chunk.y_support, dtype=np.float64)
    return np.concatenate(([len(chunk), y.size, y @ y], np.einsum("ij,ij->j", Phi, Phi)))


def _estep_chunk(chunk: TaskSet, basis, y_scale, col_scale, covariance, prior_weight, p: _Params,
                 n_threads: int) -> np.ndarray:
    """One chunk's E-step statistics, packed: [sum_r (C), sum_u (C m), sum_G (C m m), noise,
    log evidence, jitter rounds]."""
    em = _EM(*_rescaled(chunk, basis, y_scale, col_scale), covariance, n_threads, prior_weight)
    st = em.estep(p)
    return np.concatenate([st["sum_r"].sum(axis=0).ravel(), st["sum_u"].sum(axis=0).ravel(),
                           st["sum_G"].sum(axis=0).ravel(), [st["sum_noise"].sum(), st["total"], em.n_jitter]])


def _posterior_chunk(chunk, basis, y_scale, col_scale, p: _Params, n_threads: int):
    return _EM(*_rescaled(chunk, basis, y_scale, col_scale), "full", n_threads).posterior_means(p)


def _rows_chunk(chunk, basis, y_scale, col_scale, local: np.ndarray, n_threads: int):
    return _take_tasks(*_rescaled(chunk, basis, y_scale, col_scale), local)


class ChunkedEM(_EM):
    """``_EM`` whose tasks are chunks on Dask workers (same interface, no packed arrays here)."""

    def __init__(self, chunks, basis, sums: np.ndarray, covariance: str, n_threads: int, prior_weight: float):
        m = basis.n_basis
        self.chunks, self.basis = chunks, basis
        self.covariance, self.n_threads, self.prior_weight = covariance, n_threads, float(prior_weight)
        self.psi = 1.0 / max(m, 1)
        self.n_basis = m
        self.n_tasks, self.n_points = int(sums[0]), int(sums[1])
        self.n_jitter = 0
        self.y_scale, self.col_scale = scales(sums)

    def estep(self, p: _Params, accumulate: bool = True) -> dict:
        C, m = p.n_components, self.n_basis
        out = self.chunks.map_sum(_estep_chunk, self.basis, self.y_scale, self.col_scale, self.covariance,
                                  self.prior_weight, p)
        r, u, G, rest = np.split(out, np.cumsum([C, C * m, C * m * m]))
        self.n_jitter += int(rest[2])
        total = float(rest[1])
        return dict(sum_r=r[None], sum_u=u.reshape(1, C, m), sum_G=G.reshape(1, C, m, m),
                    sum_noise=rest[:1], total=total, objective=total + self.log_prior(p))

    def posterior_means(self, p: _Params) -> np.ndarray:
        parts = self.chunks.map_list(_posterior_chunk, self.basis, self.y_scale, self.col_scale, p)
        return np.concatenate([q for q in parts if q is not None])

    def take(self, idx: np.ndarray) -> _EM:
        """An in-process ``_EM`` on the tasks ``idx`` (sorted), gathered from their chunks."""
        sizes = np.array([n or 0 for n in self.chunks.map_list(_n_tasks)])
        starts = np.concatenate(([0], np.cumsum(sizes)))
        which = np.searchsorted(starts, idx, side="right") - 1
        Phis, ys, sizes_out = [], [], []
        for c in np.unique(which):
            fut = self.chunks.client.submit(_rows_chunk, self.chunks.futures[c], self.basis, self.y_scale,
                                            self.col_scale, idx[which == c] - starts[c], 1, pure=False)
            Phi, y, off = fut.result()
            Phis.append(Phi), ys.append(y), sizes_out.append(np.diff(off))
        off = np.concatenate(([0], np.cumsum(np.concatenate(sizes_out)))).astype(np.int64)
        return _EM(np.concatenate(Phis), np.concatenate(ys), off, self.covariance, self.n_threads, self.prior_weight)


def _n_tasks(chunk: TaskSet, n_threads: int) -> int:
    return len(chunk)


def scales(sums: np.ndarray) -> tuple[float, np.ndarray]:
    """(y scale, design column scales) from ``_scale_sums``: RMS values, 1 where not positive
    and finite (as ``MixturePrior._scales`` on the packed arrays)."""
    n = max(sums[1], 1.0)
    y_scale = float(np.sqrt(sums[2] / n)) if sums[1] else 1.0
    col = np.sqrt(sums[3:] / n) if sums[1] else np.ones(sums.size - 3)
    y_scale = y_scale if np.isfinite(y_scale) and y_scale > 0 else 1.0
    return y_scale, np.where(np.isfinite(col) & (col > 0), col, 1.0)


def fit_on_workers(prior: MixturePrior, chunks, basis) -> tuple[MixturePrior, int]:
    """Fit ``prior`` (a fixed number of components) to the chunks on the workers; returns it and
    the number of tasks."""
    n_comp = prior._check_params()
    if n_comp is None:
        raise NotImplementedError("n_components='auto' refits on a held-out split of the tasks and runs "
                                  "in process only: use backend='threads', or give the number of components")
    prior.n_threads_ = effective_n_threads(prior.n_threads)
    sums = chunks.map_sum(_scale_sums, basis)
    em = ChunkedEM(chunks, basis, sums, prior.covariance, prior.n_threads_, prior.prior_weight)
    if n_comp > em.n_tasks:
        raise ValueError(f"parameter 'n_components'={n_comp} exceeds the number of tasks ({em.n_tasks})")
    prior._y_scale, prior._col_scale = em.y_scale, em.col_scale
    with one_blas_thread(None):
        prior._fit_em(em, n_comp)
    return prior, em.n_tasks


def mixture_on_workers(model, tasks):
    """MetaBayes(n_components > 1, backend="dask"): (fitted MixturePrior, number of tasks), the
    basis fitted on the first chunk as for the single Gaussian (``model.basis_`` is set)."""
    chunks = DaskChunks(tasks, model.train_rows)
    try:
        first = chunks.first()
        check_regression(first, "MetaBayes")
        model.basis_ = model._init_basis(first, default="rbf", n_basis=40)
        return fit_on_workers(model._mixture_prior(), chunks, model.basis_)
    finally:
        chunks.release()
