"""The mixture-of-Gaussians prior (MetaBayes n_components != 1) fitted on Dask workers.

``MixturePrior``'s EM loop, k-means restarts, M-step and the ``n_components="auto"`` loop run
unchanged on the driver; what touches the tasks goes to the workers holding the chunks
(``metafast.distributed.DaskChunks``), through ``ChunkTasks`` (the Dask twin of
``_mixture.PackedTasks``):

- the rescaling pass (RMS of y and of every design column): one vector summed on the workers;
- each E-step: every chunk's responsibility-weighted statistics (C + C m + C m^2 + 3 numbers),
  summed pairwise on the workers; the chunk's rescaled design is cached on its worker between
  passes (``_bayes_blocks.worker_design_cache``, bounded in bytes);
- once per fit, for the k-means start: every task's posterior mean under the single Gaussian
  (T x m numbers, the one per-task transfer), and the rows of the <= 500 tasks the restarts are
  screened on;
- ``n_components="auto"``: the held-out split is a hash rule on (seed, global task index)
  (``_heldout``) evaluated on the workers from each chunk's first global index (one number per
  chunk); each candidate C is fitted on the training part and scored on the held-out part with
  the passes above, restricted to that part on the workers.

The per-task attributes of an in-process fit (``responsibilities_``, ``task_log_evidence_``)
are not brought back.
"""

from __future__ import annotations

import numpy as np

from metafast.distributed import DaskChunks
from metafast.learners._base import check_regression
from metafast.learners.bayes._blocks import worker_design_cache
from metafast.learners.bayes.mixture._em import _EM, _Params, _take_tasks
from metafast.learners.bayes.mixture._heldout import count_nominal, make_split, smallest_hashes
from metafast.learners.bayes.mixture.prior import MixturePrior, packed_scale_sums, scales
from metafast.parallel import effective_n_threads, one_blas_thread
from metafast.tasks._taskset import TaskSet


# ---------------------------------------------------------------------------- on the workers
def _part_tasks(chunk: TaskSet, start: int, part) -> np.ndarray | None:
    """Local indices of the chunk's tasks in ``part`` ((Split, held); None: all of them)."""
    if part is None:
        return None
    split, held = part
    return split.tasks(start, len(chunk), held)


def _raw(chunk: TaskSet, start: int, basis, part):
    """(design, y, offsets) of the chunk's tasks in ``part``, float64, not rescaled; None if none."""
    X, y, off = chunk.X_support, chunk.y_support, chunk.support_offsets
    idx = _part_tasks(chunk, start, part)
    if idx is not None:
        if idx.size == 0:
            return None
        X, y, off = _take_tasks(X, y, off, idx)
    return np.asarray(basis.design(X), dtype=np.float64), np.asarray(y, dtype=np.float64), off


def _scale_sums(chunk: TaskSet, start: int, basis, part, n_threads: int):
    raw = _raw(chunk, start, basis, part)
    return None if raw is None else packed_scale_sums(raw[0], raw[1], len(raw[2]) - 1)


def _packed(chunk: TaskSet, start: int, basis, y_scale: float, col_scale: np.ndarray, part):
    """The rescaled (Phi, y, offsets) of the chunk's tasks in ``part`` (None if none), kept in the
    chunk's worker design cache between passes."""
    cache = worker_design_cache(chunk, basis, y_scale, col_scale)
    entry = cache.get(("mixture", part))
    if entry is None:
        raw = _raw(chunk, start, basis, part)
        entry = (None,) if raw is None else (np.ascontiguousarray(raw[0] / col_scale), raw[1] / y_scale, raw[2])
        cache.put(("mixture", part), entry)
    return None if entry[0] is None else entry


def _estep_chunk(
    chunk: TaskSet, start: int, basis, y_scale, col_scale, covariance, prior_weight, p: _Params, part, n_threads: int
):
    """One chunk's E-step statistics, packed: [sum_r (C), sum_u (C m), sum_G (C m m), noise,
    log evidence, jitter rounds]."""
    packed = _packed(chunk, start, basis, y_scale, col_scale, part)
    if packed is None:
        return None
    em = _EM(*packed, covariance, n_threads, prior_weight)
    st = em.estep(p)
    return np.concatenate(
        [
            st["sum_r"].sum(axis=0).ravel(),
            st["sum_u"].sum(axis=0).ravel(),
            st["sum_G"].sum(axis=0).ravel(),
            [st["sum_noise"].sum(), st["total"], em.n_jitter],
        ]
    )


def _log_evidence_chunk(chunk: TaskSet, start: int, basis, y_scale, col_scale, p: _Params, part, n_threads: int):
    """Summed log evidence (in the units of y) of the chunk's tasks in ``part``."""
    packed = _packed(chunk, start, basis, y_scale, col_scale, part)
    if packed is None:
        return None
    stats = _EM(*packed, "full", n_threads).estep(p, accumulate=False)
    return stats["total"] - packed[2][-1] * np.log(y_scale)


def _posterior_chunk(chunk, start, basis, y_scale, col_scale, p: _Params, part, n_threads: int):
    packed = _packed(chunk, start, basis, y_scale, col_scale, part)
    return None if packed is None else _EM(*packed, "full", n_threads).posterior_means(p)


def _rows_chunk(chunk, start, basis, y_scale, col_scale, part, local: np.ndarray, n_threads: int):
    return _take_tasks(*_packed(chunk, start, basis, y_scale, col_scale, part), local)


def _n_tasks(chunk: TaskSet, start: int, part, n_threads: int) -> int:
    idx = _part_tasks(chunk, start, part)
    return len(chunk) if idx is None else idx.size


def _chunk_size(chunk: TaskSet, n_threads: int) -> int:
    return len(chunk)


def _count_nominal(chunk: TaskSet, start: int, seed: int, n_threads: int) -> int:
    return count_nominal(seed, start, len(chunk))


def _smallest(chunk: TaskSet, start: int, seed: int, k: int, n_threads: int) -> np.ndarray:
    return smallest_hashes(seed, start, len(chunk), k)


# ---------------------------------------------------------------------------- on the driver
class ChunkTasks:
    """The tasks of a Dask fit: chunks on the workers and each chunk's first global task index
    (the only per-chunk numbers the driver holds); same interface as ``_mixture.PackedTasks``."""

    def __init__(self, chunks: DaskChunks, basis):
        self.chunks, self.basis = chunks, basis
        sizes = [n or 0 for n in chunks.map_list(_chunk_size)]
        self.starts = [int(s) for s in np.concatenate(([0], np.cumsum(sizes)))[:-1]]
        self.n_tasks = int(sum(sizes))

    def split(self, seed: int, min_train: int, what: str):
        n_nominal = sum(n or 0 for n in self.chunks.map_list(_count_nominal, seed, each=self.starts))

        def smallest(k):
            parts = [h for h in self.chunks.map_list(_smallest, seed, k, each=self.starts) if h is not None]
            return np.sort(np.concatenate(parts))[:k]

        return make_split(seed, self.n_tasks, n_nominal, min_train, what, smallest)

    def em(self, prior: MixturePrior, part) -> ChunkedEM:
        """The EM engine on ``part`` of the tasks (the scales are set on ``prior``)."""
        sums = self.chunks.map_sum(_scale_sums, self.basis, part, each=self.starts)
        prior._y_scale, prior._col_scale = scales(sums)
        return ChunkedEM(self, part, sums, prior)

    def log_evidence(self, prior: MixturePrior, part) -> float:
        return float(
            self.chunks.map_sum(
                _log_evidence_chunk, self.basis, prior._y_scale, prior._col_scale, prior._params, part, each=self.starts
            )
        )


class ChunkedEM(_EM):
    """``_EM`` whose tasks are a part of the chunks on Dask workers (same interface, no packed
    arrays here)."""

    def __init__(self, tasks: ChunkTasks, part, sums: np.ndarray, prior: MixturePrior):
        m = tasks.basis.n_basis
        self.tasks, self.part = tasks, part
        self.covariance, self.n_threads = prior.covariance, prior.n_threads_
        self.prior_weight = float(prior.prior_weight)
        self.psi = 1.0 / max(m, 1)
        self.n_basis = m
        self.n_tasks, self.n_points = int(sums[0]), int(sums[1])
        self.n_jitter = 0
        self.y_scale, self.col_scale = prior._y_scale, prior._col_scale

    def _map(self, how: str, fn, *args):
        t = self.tasks
        return getattr(t.chunks, how)(fn, t.basis, self.y_scale, self.col_scale, *args, each=t.starts)

    def estep(self, p: _Params, accumulate: bool = True) -> dict:
        C, m = p.n_components, self.n_basis
        out = self._map("map_sum", _estep_chunk, self.covariance, self.prior_weight, p, self.part)
        r, u, G, rest = np.split(out, np.cumsum([C, C * m, C * m * m]))
        self.n_jitter += int(rest[2])
        total = float(rest[1])
        return dict(
            sum_r=r[None],
            sum_u=u.reshape(1, C, m),
            sum_G=G.reshape(1, C, m, m),
            sum_noise=rest[:1],
            total=total,
            objective=total + self.log_prior(p),
        )

    def posterior_means(self, p: _Params) -> np.ndarray:
        parts = self._map("map_list", _posterior_chunk, p, self.part)
        return np.concatenate([q for q in parts if q is not None])

    def take(self, idx: np.ndarray) -> _EM:
        """An in-process ``_EM`` on the tasks ``idx`` (sorted, numbered within the part), gathered
        from their chunks."""
        t = self.tasks
        sizes = np.array([n or 0 for n in t.chunks.map_list(_n_tasks, self.part, each=t.starts)])
        starts = np.concatenate(([0], np.cumsum(sizes)))
        which = np.searchsorted(starts, idx, side="right") - 1
        Phis, ys, sizes_out = [], [], []
        for c in np.unique(which):
            fut = t.chunks.client.submit(
                _rows_chunk,
                t.chunks.futures[c],
                t.starts[c],
                t.basis,
                self.y_scale,
                self.col_scale,
                self.part,
                idx[which == c] - starts[c],
                1,
                pure=False,
            )
            Phi, y, off = fut.result()
            Phis.append(Phi), ys.append(y), sizes_out.append(np.diff(off))
        off = np.concatenate(([0], np.cumsum(np.concatenate(sizes_out)))).astype(np.int64)
        return _EM(np.concatenate(Phis), np.concatenate(ys), off, self.covariance, self.n_threads, self.prior_weight)


def fit_on_workers(prior: MixturePrior, chunks: DaskChunks, basis) -> tuple[MixturePrior, int]:
    """Fit ``prior`` (a number of components or "auto") to the chunks on the workers; returns it
    and the number of tasks."""
    n_comp = prior._check_params()
    prior.n_threads_ = effective_n_threads(prior.n_threads)
    tasks = ChunkTasks(chunks, basis)
    with one_blas_thread(None):
        prior._fit_tasks(tasks, n_comp)
    return prior, tasks.n_tasks


def mixture_on_workers(model, tasks):
    """MetaBayes(n_components != 1, backend="dask"): (fitted MixturePrior, number of tasks), the
    basis fitted on the first chunk as for the single Gaussian (``model.basis_`` is set)."""
    chunks = DaskChunks(tasks, model.train_rows)
    try:
        first = chunks.first()
        check_regression(first, "MetaBayes")
        model.basis_ = model._init_basis(first, default="rbf", n_basis=40)
        return fit_on_workers(model._mixture_prior(), chunks, model.basis_)
    finally:
        chunks.release()
