"""Integer lattices in graded order: compositions (polynomial multi-indices) and the half
lattice of Z^d with a parent for angle-addition recurrences (multivariate Fourier).

In the half lattice (``Fourier(multivariate="lattice")``), vector k
stands for the pair cos(sum_j k_j w_j x_j), sin(...).  Only one of k and -k is kept (the one
whose first non-zero entry is positive), since they give the same pair up to the sign of the
sine.  Vectors come by total degree |k|_1 = 1, 2, ...; within a degree by the absolute values
(lexicographically decreasing) and then the signs (+ before -).
"""

from __future__ import annotations

import itertools

import numpy as np


def compositions(total: int, d: int):
    """All a in N^d with sum(a) == total, lexicographically decreasing."""
    if d == 1:
        yield (total,)
        return
    for first in range(total, -1, -1):
        for rest in compositions(total - first, d - 1):
            yield (first,) + rest


def half_lattice(d: int, n: int) -> np.ndarray:
    """The first n vectors of the half lattice in graded order, shape (n, d)."""
    out: list[tuple[int, ...]] = []
    degree = 1
    while len(out) < n:
        for a in compositions(degree, d):
            nz = [j for j in range(d) if a[j]]
            for signs in itertools.product((1, -1), repeat=len(nz) - 1):
                k = list(a)
                for j, s in zip(nz[1:], signs):
                    k[j] *= s
                out.append(tuple(k))
        degree += 1
    return np.asarray(out[:n], dtype=np.intp).reshape(n, d)


def lattice_parents(K: np.ndarray):
    """Recurrence structure: k_q = (parent_sign * k_parent) + step_sign * e_step_dim.

    The step removes one unit from the last non-zero entry, so the parent has degree one less
    and comes earlier; parent -1 is the zero vector.  Returns (parent, parent_sign, step_dim,
    step_sign) as arrays of length len(K).
    """
    index = {tuple(k): q for q, k in enumerate(K)}
    Q = K.shape[0]
    parent = np.full(Q, -1, dtype=np.intp)
    parent_sign = np.ones(Q)
    step_dim = np.zeros(Q, dtype=np.intp)
    step_sign = np.ones(Q)
    for q, k in enumerate(K):
        last = int(np.flatnonzero(k)[-1])
        sigma = 1.0 if k[last] > 0 else -1.0
        p = k.copy()
        p[last] -= int(sigma)
        step_dim[q], step_sign[q] = last, sigma
        if not p.any():
            continue
        if tuple(p) in index:
            parent[q] = index[tuple(p)]
        else:
            parent[q], parent_sign[q] = index[tuple(-p)], -1.0
    return parent, parent_sign, step_dim, step_sign
