# OpenMP symbols for the kernels, usable whether or not the build found OpenMP.
# Without OpenMP, prange runs serially and these report one thread.

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define METAFAST_OPENMP_ENABLED 1
    #else
    #define METAFAST_OPENMP_ENABLED 0
    static inline int omp_get_max_threads(void) { return 1; }
    static inline int omp_get_thread_num(void) { return 0; }
    #endif
    """
    bint METAFAST_OPENMP_ENABLED
    int omp_get_max_threads() noexcept nogil
    int omp_get_thread_num() noexcept nogil
