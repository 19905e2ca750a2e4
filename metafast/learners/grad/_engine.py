"""The machinery of MetaGrad's outer loop: meta-batches, the meta-gradient call and Adam.

- ``TrainingRows`` holds a chunk's labelled rows (``TaskSet.all_rows``: each task's support rows
  first, then its query rows) and, for a fixed basis, their design matrix computed once.
- ``split_batch`` draws a meta-batch's inner (adaptation) and outer (meta-loss) rows.
- ``batch_meta_grad`` runs the ``_metagrad`` kernel on one meta-batch and returns the mean
  meta-loss and its gradients (with respect to w0, the inner rates and the basis parameters).
- ``Adam`` is the outer optimiser (Kingma & Ba 2015), on a dict of float64 arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metafast._kernels import _metagrad
from metafast.learners.grad._scales import target_scale
from metafast.tasks._taskset import TaskSet

METHOD_CODES = {
    "maml": _metagrad.METHOD_MAML,
    "metasgd": _metagrad.METHOD_MAML,
    "fomaml": _metagrad.METHOD_FOMAML,
    "reptile": _metagrad.METHOD_REPTILE,
    "imaml": _metagrad.METHOD_IMAML,
}
METHODS = tuple(METHOD_CODES)


class Adam:
    """Adam on named float64 arrays; ``step`` returns the updated arrays (inputs untouched)."""

    def __init__(self, lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.t = 0
        self.m: dict[str, np.ndarray] = {}
        self.v: dict[str, np.ndarray] = {}

    def step(self, params: dict, grads: dict, lr: dict | None = None) -> dict:
        """One descent step; ``lr`` optionally gives a per-key learning rate."""
        self.t += 1
        c1, c2 = 1.0 - self.beta1**self.t, 1.0 - self.beta2**self.t
        out = {}
        for key, p in params.items():
            g = grads.get(key)
            if g is None:
                out[key] = p
                continue
            m = self.m.get(key, np.zeros_like(p))
            v = self.v.get(key, np.zeros_like(p))
            m = self.beta1 * m + (1 - self.beta1) * g
            v = self.beta2 * v + (1 - self.beta2) * g * g
            self.m[key], self.v[key] = m, v
            step = (lr or {}).get(key, self.lr)
            out[key] = p - step * (m / c1) / (np.sqrt(v / c2) + self.eps)
        return out


@dataclass
class Batch:
    """Row indices (into ``TrainingRows``) of a meta-batch's inner and outer rows, per task."""

    tasks: np.ndarray
    inner: np.ndarray
    inner_offsets: np.ndarray
    outer: np.ndarray
    outer_offsets: np.ndarray


class TrainingRows:
    """A chunk's labelled rows for meta-training (see the module docstring)."""

    def __init__(self, chunk: TaskSet, basis, y_scale: float, cache_design: bool):
        merged = chunk.all_rows()
        self.X = merged.X_support
        self.y = np.asarray(merged.y_support, dtype=np.float64) / y_scale
        self.offsets = merged.support_offsets
        self.n_support = np.diff(chunk.support_offsets)
        self.n_tasks = len(chunk)
        self.Phi = np.ascontiguousarray(basis.design(self.X)) if cache_design else None

    def design(self, basis, rows: np.ndarray) -> np.ndarray:
        if self.Phi is not None:
            return self.Phi[rows]
        return np.ascontiguousarray(basis.design(self.X[rows]))


def _offsets(sizes: np.ndarray) -> np.ndarray:
    off = np.zeros(sizes.shape[0] + 1, dtype=np.int64)
    np.cumsum(sizes, out=off[1:])
    return off


def split_batch(rows: TrainingRows, tasks: np.ndarray, mode: str, rng: np.random.Generator) -> Batch:
    """Inner and outer rows of ``tasks``.

    mode "resplit": each task's labelled rows are shuffled and its first n_support of them (the
    size of its support set, at most all but one row) are the inner rows, the rest the outer rows,
    so every labelled row takes both roles over the meta-iterations.  "given": the support rows
    are inner, the query rows outer.  "inner-only" (Reptile): every row is inner.
    """
    starts = rows.offsets[tasks]
    sizes = rows.offsets[tasks + 1] - starts
    first = _offsets(sizes)[:-1]
    local = np.arange(int(sizes.sum())) - np.repeat(first, sizes)  # row number inside its task
    idx = np.repeat(starts, sizes) + local
    if mode == "inner-only":
        return Batch(tasks, idx, _offsets(sizes), idx[:0], np.zeros(len(tasks) + 1, dtype=np.int64))
    task_of_row = np.repeat(np.arange(len(tasks)), sizes)
    if mode == "resplit":
        order = np.lexsort((rng.random(idx.shape[0]), task_of_row))
        idx = idx[order]
        n_in = np.minimum(rows.n_support[tasks], np.maximum(sizes - 1, 0))
    else:
        n_in = np.minimum(rows.n_support[tasks], sizes)
    inner = local < np.repeat(n_in, sizes)
    return Batch(tasks, idx[inner], _offsets(n_in), idx[~inner], _offsets(sizes - n_in))


@dataclass
class MetaGradResult:
    loss: float  # mean meta-loss over the batch's tasks
    grad_w: np.ndarray  # (m,) mean gradient w.r.t. w0 (Reptile: mean of w0 - w_k)
    grad_rates: np.ndarray  # (m,) mean gradient w.r.t. the inner rates
    grad_basis: dict | None  # mean gradient w.r.t. the basis's learnable parameters
    bad_tasks: np.ndarray  # tasks (indices into the chunk) with a non-finite loss
    grad_log_reg: float = 0.0  # iMAML: mean gradient w.r.t. log(lam)


def batch_meta_grad(
    method: str,
    inner_steps: int,
    lam: float,
    basis,
    rows: TrainingRows,
    batch: Batch,
    w0: np.ndarray,
    rates: np.ndarray,
    learn_basis: bool,
    n_threads: int,
) -> MetaGradResult:
    """Mean meta-loss and meta-gradients of one meta-batch (kernel: ``_metagrad.meta_grad``)."""
    n_in = batch.inner.shape[0]
    Phi_all = rows.design(basis, np.concatenate([batch.inner, batch.outer]))  # one basis call
    Phi, Phiq = np.ascontiguousarray(Phi_all[:n_in]), np.ascontiguousarray(Phi_all[n_in:])
    dtype = Phi.dtype
    T, m = len(batch.tasks), Phi.shape[1]
    y = np.ascontiguousarray(rows.y[batch.inner], dtype=dtype)
    yq = np.ascontiguousarray(rows.y[batch.outer], dtype=dtype)
    loss = np.empty(T, dtype)
    gw, ga = np.empty((T, m), dtype), np.empty((T, m), dtype)
    G = np.empty((Phi.shape[0] if learn_basis else 0, m), dtype)
    Gq = np.empty((Phiq.shape[0] if learn_basis else 0, m), dtype)
    status = np.empty(T, np.intc)
    with np.errstate(all="ignore"):
        _metagrad.meta_grad(
            METHOD_CODES[method],
            inner_steps,
            lam,
            Phi,
            y,
            batch.inner_offsets,
            Phiq,
            yq,
            batch.outer_offsets,
            np.ascontiguousarray(w0, dtype=dtype),
            np.ascontiguousarray(rates, dtype=dtype),
            loss,
            gw,
            ga,
            G,
            Gq,
            status,
            n_threads,
        )
    if (status == _metagrad.STATUS_NO_MEMORY).any():
        raise MemoryError("MetaGrad: could not allocate the meta-gradient kernel's scratch memory")
    bad = ~np.isfinite(loss) | (status != 0) | ~np.isfinite(gw).all(axis=1)
    if bad.any():
        return MetaGradResult(np.inf, gw[0], ga[0], None, batch.tasks[bad])
    grad_log_reg = 0.0
    if method == "imaml":  # dL/dlog(lam) = lam z.(w0 - w*) = (kernel's w0-gradient).(w0 - w*), z = (A + lam I)^-1 g
        W = adapt_weights(method, inner_steps, lam, Phi, y, batch.inner_offsets, w0, rates, n_threads)
        grad_log_reg = float(
            np.mean(
                np.einsum(
                    "tm,tm->t", gw.astype(np.float64), np.asarray(w0, dtype=np.float64)[None] - W.astype(np.float64)
                )
            )
        )
    grad_basis = None
    if learn_basis:
        X = np.concatenate([rows.X[batch.inner], rows.X[batch.outer]])
        grad_basis = {
            k: np.asarray(v, dtype=np.float64) / T for k, v in basis.design_vjp(X, np.concatenate([G, Gq])).items()
        }
    return MetaGradResult(
        float(loss.astype(np.float64).mean()),
        gw.astype(np.float64).mean(axis=0),
        ga.astype(np.float64).mean(axis=0),
        grad_basis,
        batch.tasks[:0],
        grad_log_reg,
    )


def adapt_weights(
    method: str,
    inner_steps: int,
    lam: float,
    Phi: np.ndarray,
    y: np.ndarray,
    offsets: np.ndarray,
    w0: np.ndarray,
    rates: np.ndarray,
    n_threads: int,
) -> np.ndarray:
    """(T, m) adapted weights of packed tasks (kernel: ``_metagrad.adapt_tasks``), in Phi's dtype.

    The inner loop is linear in (w0, y), so it runs on y / c and w0 / c (c the RMS of both) and the
    result is multiplied back: targets near 1e-300 or 1e300 neither underflow nor overflow.
    """
    dtype = Phi.dtype
    y, w0 = np.asarray(y, dtype=np.float64), np.asarray(w0, dtype=np.float64)
    c = target_scale(np.concatenate([y, w0]))
    y, w0 = y / c, w0 / c
    T = offsets.shape[0] - 1
    W = np.empty((T, Phi.shape[1]), dtype)
    status = np.empty(T, np.intc)
    with np.errstate(all="ignore"):
        _metagrad.adapt_tasks(
            METHOD_CODES[method],
            inner_steps,
            lam,
            Phi,
            np.ascontiguousarray(y, dtype=dtype),
            np.ascontiguousarray(offsets, dtype=np.int64),
            np.ascontiguousarray(w0, dtype=dtype),
            np.ascontiguousarray(rates, dtype=dtype),
            W,
            status,
            n_threads,
        )
    if (status == _metagrad.STATUS_NO_MEMORY).any():
        raise MemoryError("MetaGrad: could not allocate the adaptation kernel's scratch memory")
    bad = (status != 0) | ~np.isfinite(W).all(axis=1)
    if bad.any():
        raise FloatingPointError(
            f"MetaGrad: adaptation diverged or was singular on task(s) {np.flatnonzero(bad)[:10].tolist()}: "
            "the inner learning rate is too large for these inputs (or the targets are huge)"
        )
    return W * np.asarray(c, dtype=dtype) if c != 1.0 else W
