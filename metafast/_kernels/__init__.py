"""Compiled kernels (Cython).  Python-level policy and validation live outside this package."""
