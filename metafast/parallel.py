"""Thread counts for the kernels (``n_jobs``) and the Dask client (see ``metafast.distributed``)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

from metafast._kernels import _info

# At most this many threads per available core, whatever n_jobs or OMP_NUM_THREADS say: the
# kernels gain nothing from more threads than cores, and asking the OpenMP runtime for tens of
# thousands of threads crashes it (thread creation fails, or the process runs out of stacks).
OVERSUBSCRIBE_LIMIT = 4


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def effective_n_threads(n_jobs: int | None) -> int:
    """Number of threads a kernel should use for ``n_jobs`` (the one thread policy of metafast).

    None means every core OpenMP offers (respecting OMP_NUM_THREADS); a negative value counts
    back from that (-1 = all, -2 = all but one); 0 is an error.  A count above what OpenMP
    offers is clamped to it, and nothing ever exceeds ``OVERSUBSCRIBE_LIMIT`` threads per
    available core (results never depend on the thread count, so clamping changes speed only).
    Builds without OpenMP always use one thread.
    """
    if n_jobs is not None and (isinstance(n_jobs, bool) or not isinstance(n_jobs, (int,))):
        try:
            import numpy as np

            if isinstance(n_jobs, np.integer):
                n_jobs = int(n_jobs)
            else:
                raise TypeError
        except TypeError:
            raise TypeError(f"n_jobs must be an int or None; got {n_jobs!r}") from None
    if n_jobs == 0:
        raise ValueError("n_jobs=0 is not valid: use None (all cores), a positive count or -1")
    if not _info.openmp_enabled():
        return 1
    cores = available_cores()
    max_threads = _info.openmp_max_threads()
    if "OMP_NUM_THREADS" not in os.environ:
        max_threads = min(max_threads, cores)
    max_threads = max(1, min(max_threads, OVERSUBSCRIBE_LIMIT * cores))
    if n_jobs is None:
        return max_threads
    if n_jobs < 0:
        return max(1, max_threads + n_jobs + 1)
    return min(n_jobs, max_threads)


# Below this many multiply-adds a kernel call runs on one thread: waking a second thread costs
# more than it saves (and, on a busy machine, can cost a scheduler time slice: 40x slower measured).
# Results never depend on the thread count.  Tests set it to 0 to exercise the threaded paths.
MIN_PARALLEL_WORK = 1 << 20


def threads_for_work(n_threads: int, work: float) -> int:
    """``n_threads``, or 1 when the call's ``work`` (multiply-adds, roughly) is below
    ``MIN_PARALLEL_WORK``: the one small-work rule of the kernels' callers."""
    return n_threads if work >= MIN_PARALLEL_WORK else 1


_BLAS_CONTROLLER: list = []  # one threadpoolctl controller, built on first use


def one_blas_thread(user_api: str | None = "blas"):
    """Context limiting BLAS (or, with ``user_api=None``, every native thread pool) to one thread.

    The one "single-threaded BLAS" switch of metafast.  The kernels call BLAS on tiny per-task
    matrices inside their own OpenMP threads, where a threaded BLAS only oversubscribes the cores
    (10-100x slower fits measured); ``user_api=None`` also pins OpenMP-using libraries (k-means),
    so numpy-side steps give the same bits whatever the machine's thread settings.  The
    controller is built once: scanning the loaded libraries costs milliseconds, more than a
    one-task adaptation.
    """
    return _controller().limit(limits=1, user_api=user_api)


def _controller():
    if not _BLAS_CONTROLLER:
        from threadpoolctl import ThreadpoolController

        _BLAS_CONTROLLER.append(ThreadpoolController())
    return _BLAS_CONTROLLER[0]


def with_one_blas_thread(method: Callable) -> Callable:
    """Decorator form of ``one_blas_thread()`` for the fit and predict methods of the learners."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with one_blas_thread():
            return method(*args, **kwargs)

    return wrapper


def dask_client():
    """The active dask.distributed Client, with a clear error when there is none."""
    try:
        from distributed import get_client
    except ImportError:  # pragma: no cover - optional dependency
        raise ImportError("backend='dask' needs dask.distributed: pip install 'metafast[dask]'") from None
    try:
        return get_client()
    except ValueError:
        raise ValueError(
            "backend='dask' needs a running dask.distributed Client: create one first, e.g. "
            "`from distributed import Client; client = Client()`"
        ) from None
