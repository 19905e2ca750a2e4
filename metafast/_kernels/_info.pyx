"""Build facts the Python layer needs: was OpenMP compiled in, how many threads it offers."""

from metafast._kernels._openmp cimport METAFAST_OPENMP_ENABLED, omp_get_max_threads


def openmp_enabled():
    """True when the kernels were compiled with OpenMP (prange runs in parallel)."""
    return bool(METAFAST_OPENMP_ENABLED)


def openmp_max_threads():
    """omp_get_max_threads() (1 without OpenMP); honours OMP_NUM_THREADS."""
    return int(omp_get_max_threads())
