"""Input variants shared by the basis-family kernel tests (imported by test modules)."""

import numpy as np

DTYPES = [np.float64, np.float32]
LAYOUTS = ["C", "F", "strided"]


def make_input(rng, n, d, dtype, layout, low=-3.0, high=5.0):
    """(n, d) uniform inputs in the requested memory layout."""
    if layout == "strided":
        big = rng.uniform(low, high, size=(2 * n, 2 * d)).astype(dtype)
        X = big[::2, ::2]
        assert not X.flags.c_contiguous or n <= 1
        return X
    X = rng.uniform(low, high, size=(n, d)).astype(dtype)
    return np.asfortranarray(X) if layout == "F" else np.ascontiguousarray(X)


def tol(dtype):
    """Comparison tolerances for kernels that compute in double and round to dtype."""
    return dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-11)


def central_difference(family, X, G, key, eps=1e-6):
    """d/dtheta sum(G * family.with_params(key=theta).design(X)) by central differences."""
    theta = family.learnable_params()[key]
    grad = np.zeros_like(theta)
    for i in range(theta.size):
        up, down = theta.copy(), theta.copy()
        up.flat[i] += eps
        down.flat[i] -= eps
        f_up = np.sum(G * family.with_params(**{key: up}).design(X))
        f_down = np.sum(G * family.with_params(**{key: down}).design(X))
        grad.flat[i] = (f_up - f_down) / (2 * eps)
    return grad


def per_task_reference(family, X, offsets, W):
    """Plain reference for weighted_sum_tasks: design(X[rows of t]) @ W[t] task by task."""
    Phi = family.design(X).astype(np.float64)
    out = np.empty(X.shape[0])
    for t in range(len(offsets) - 1):
        a, b = offsets[t], offsets[t + 1]
        out[a:b] = Phi[a:b] @ W[t]
    return out
