"""Thread counts for the kernels (``n_jobs``) and the Dask client (see ``metafast.distributed``)."""

from __future__ import annotations

import os

from metafast._kernels import _info


def effective_n_threads(n_jobs: int | None) -> int:
    """Number of threads a kernel should use for ``n_jobs``.

    None means every core OpenMP offers (respecting OMP_NUM_THREADS); a negative value counts
    back from that (-1 = all, -2 = all but one); 0 is an error.  Builds without OpenMP always
    use one thread.
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
    max_threads = _info.openmp_max_threads()
    if "OMP_NUM_THREADS" not in os.environ:
        max_threads = min(max_threads, os.cpu_count() or 1)
    if n_jobs is None:
        return max(1, max_threads)
    if n_jobs < 0:
        return max(1, max_threads + n_jobs + 1)
    return n_jobs


def dask_client():
    """The active dask.distributed Client, with a clear error when there is none."""
    try:
        from distributed import get_client
    except ImportError:  # pragma: no cover - optional dependency
        raise ImportError(
            "backend='dask' needs dask.distributed: pip install 'metafast[dask]'"
        ) from None
    try:
        return get_client()
    except ValueError:
        raise ValueError(
            "backend='dask' needs a running dask.distributed Client: create one first, e.g. "
            "`from distributed import Client; client = Client()`"
        ) from None
