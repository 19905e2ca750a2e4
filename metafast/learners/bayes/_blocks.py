"""The E-step of one TaskSet chunk in blocks of tasks, so its memory is O(block), not O(chunk).

The design of a block of tasks (at most ``BLOCK_BYTES`` of design matrix, whole tasks only) is
computed, used and, while a cache's budget allows, kept for the next EM pass.  The E-step kernel
whitens 1/256 of a block at a time in per-thread scratch, and its other outputs are per task
(T_block x m), so one EM pass over an in-memory TaskSet peaks at the TaskSet + the cached designs
(at most ``DesignCache.budget``) + a little more than one ``BLOCK_BYTES``.  The in-process fit and the Dask workers run this same function, so
their statistics are summed in the same order.
"""

from __future__ import annotations

import pickle
import threading
import weakref

import numpy as np

from metafast.learners._base import check_regression
from metafast.learners.bayes._em import GaussianPrior, Stats, estep
from metafast.tasks._taskset import TaskSet

BLOCK_BYTES = 32 * 2**20  # design matrix bytes per block (32 MiB)
CACHE_BYTES = 1 * 2**30  # default budget of the designs kept between EM passes (1 GiB)


class DesignCache:
    """Designs of task blocks kept between EM passes, up to ``budget`` bytes (then recomputed)."""

    def __init__(self, budget: int = CACHE_BYTES):
        self.budget = int(budget)
        self.used = 0
        self._store: dict = {}

    def get(self, key):
        return self._store.get(key)

    def put(self, key, value: tuple) -> None:
        size = sum(a.nbytes for a in value if isinstance(a, np.ndarray))
        if self.used + size <= self.budget:
            self._store[key] = value
            self.used += size

    def clear(self) -> None:
        self._store.clear()
        self.used = 0


_WORKER_CACHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_WORKER_LOCK = threading.Lock()


def worker_design_cache(chunk: TaskSet, basis, y_scale: float, col_scale: np.ndarray | None = None) -> DesignCache:
    """The design cache of a chunk that stays in this process across EM passes (a Dask worker's
    persisted chunk): held as long as the chunk object lives, and emptied when the basis, the
    target scale or the design column scales (the mixture prior's, ``col_scale``) differ from
    those its designs were computed with.  Each cache has the default budget, so a worker
    holding k chunks caches at most k x ``CACHE_BYTES``; chunks sized to the worker's memory
    keep that in bounds."""
    token = (pickle.dumps(basis), float(y_scale), None if col_scale is None else np.asarray(col_scale).tobytes())
    with _WORKER_LOCK:
        held = _WORKER_CACHES.get(chunk)
        if held is None or held[0] != token:
            held = (token, DesignCache())
            _WORKER_CACHES[chunk] = held
        return held[1]


def block_bounds(offsets: np.ndarray, max_rows: int) -> list[tuple[int, int]]:
    """Task ranges [a, b) with at most ``max_rows`` rows each (a task larger than that is alone)."""
    T = offsets.shape[0] - 1
    bounds, a = [], 0
    while a < T:
        b = int(np.searchsorted(offsets, offsets[a] + max_rows, side="right")) - 1
        b = min(max(b, a + 1), T)
        bounds.append((a, b))
        a = b
    return bounds


def chunk_design(basis, chunk: TaskSet, y_scale: float, query: bool = False):
    """(Phi, y / y_scale, offsets) of a chunk's support (or query) rows, in the chunk's dtype."""
    X = chunk.X_query if query else chunk.X_support
    y = chunk.y_query if query else chunk.y_support
    off = chunk.query_offsets if query else chunk.support_offsets
    _check_features(basis, X)
    return _design(basis, X, y, off, y_scale)


def _check_features(basis, X) -> None:
    if X.shape[1] != basis.n_features_in_:
        raise ValueError(
            f"argument 'tasks' has {X.shape[1]} features, but the model was fitted on {basis.n_features_in_}"
        )


def _design(basis, X, y, off, y_scale):
    Phi = np.ascontiguousarray(basis.design(X))
    ys = np.ascontiguousarray(np.asarray(y, dtype=np.float64) / y_scale, dtype=Phi.dtype)
    return Phi, ys, off


def chunk_stats(
    basis,
    chunk: TaskSet,
    y_scale: float,
    prior: GaussianPrior,
    n_threads: int,
    cache: DesignCache | None = None,
    key=None,
    block_bytes: int = BLOCK_BYTES,
) -> Stats:
    """E-step statistics of one chunk, summed over its blocks of tasks in order."""
    _check_features(basis, chunk.X_support)
    itemsize = np.dtype(chunk.dtype).itemsize
    off = chunk.support_offsets
    total = Stats()
    for a, b in block_bounds(off, max(1, block_bytes // (basis.n_basis * itemsize))):
        entry = cache.get((key, a)) if cache is not None else None
        if entry is None:
            s0, s1 = int(off[a]), int(off[b])
            entry = _design(basis, chunk.X_support[s0:s1], chunk.y_support[s0:s1], off[a : b + 1] - s0, y_scale)
            if cache is not None:
                cache.put((key, a), entry)
        total += estep(*entry, prior, n_threads, with_means=False)[0]
    return total


def chunk_estep(chunk: TaskSet, basis, y_scale: float, prior: GaussianPrior, cache, n_threads: int) -> Stats:
    """One chunk's E-step statistics: the per-chunk function of both chunk sources.

    ``cache``: "worker" on a Dask worker (the chunk's designs kept with it between passes,
    ``worker_design_cache``); in process the fit's ``DesignCache`` when its chunks are held for
    the whole fit (blocks keyed by the chunk's identity), or None for a stream read again each
    pass."""
    if isinstance(cache, str):
        cache = worker_design_cache(chunk, basis, y_scale)
    return chunk_stats(basis, chunk, y_scale, prior, n_threads, cache, id(chunk))


def scale_sums(chunk: TaskSet, basis, n_threads: int = 1) -> np.ndarray:
    """[sum y^2, sum ||phi(x)||^2, rows, Gram sum phi phi^T (m*m, row-major)] of a chunk's
    training rows (the target-scale pass, which also gives the whitening map); class labels are
    refused here, in process and on the workers alike."""
    check_regression(chunk, "MetaBayes")
    y = np.asarray(chunk.y_support, dtype=np.float64)
    m = basis.n_basis
    gram = np.zeros((m, m))
    rows = max(8192, BLOCK_BYTES // (8 * m))  # few design calls: each one wakes the kernel's threads
    for start in range(0, chunk.X_support.shape[0], rows):
        Phi = np.asarray(basis.design(chunk.X_support[start : start + rows]), dtype=np.float64)
        gram += Phi.T @ Phi
    return np.concatenate(([float(np.dot(y, y)), float(np.trace(gram)), float(y.size)], gram.ravel()))
