"""MetaRidge's iterative fits: the diagonal metric D (``metric="diag"``) and the basis
hyperparameters (``learn_basis=True``), both by L-BFGS with exact gradients from the ridge kernels
(docs/metaridge.md; docs/derivations.md 0.3 / 3.3).  A mixin of ``MetaRidge``, kept apart so the
estimator module holds the closed-form fit only.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from metafast.learners.ridge._dask import ridge_envelope
from metafast.learners.ridge._math import _softmax_scale, gls_mean
from metafast.learners.ridge._source import _progress

_METRIC_MIN = 1e-8  # smallest prior scale kept for a basis function, relative to the mean of 1


class RidgeMetricBasisMixin:
    """``_fit_metric`` and ``_fit_basis`` of MetaRidge (they use its ``_stats``, its source's
    passes and its parameters)."""

    def _fit_metric(self, source, h, alpha, s):
        """Alternate: D by L-BFGS on the envelope objective (h fixed), then h in closed form."""
        m = s.size
        z = np.log(np.maximum(s**2, _METRIC_MIN))
        n_iter = 0
        prev = np.inf
        bar = _progress(self.verbose, None, "metric rounds")
        for _ in range(self.max_iter):
            if bar is not None:
                bar.update(1)

            def objective(zv):
                d = _softmax_scale(zv)
                val, grad_d = self._envelope(source, h, np.sqrt(d), alpha)  # noqa: B023 (used in this iteration)
                # d = m softmax(z):  dd_j/dz_k = d_j (delta_jk - d_k / m)
                gz = d * grad_d - d * (d @ grad_d) / m
                return val, gz

            res = minimize(
                objective, z, jac=True, method="L-BFGS-B", options={"maxiter": self.max_iter, "gtol": self.tol}
            )
            z = res.x
            n_iter += int(res.nit)
            s = np.sqrt(np.maximum(_softmax_scale(z), _METRIC_MIN))
            M, b, *_ = self._stats(source, np.array([alpha]), s, with_loo=False)
            h = gls_mean(M[0], b[0])
            val = self._envelope(source, h, s, alpha)[0]
            if prev - val <= self.tol * max(abs(prev), 1.0):
                break
            prev = val
        if bar is not None:
            bar.close()
        return h, s, n_iter

    def _envelope(self, source, h, s, alpha):
        """(mean Moreau-envelope objective over tasks, its gradient in the metric), one pass."""
        return ridge_envelope(source, self, h, s, alpha)

    # ------------------------------------------------------------------ basis learning
    def _fit_basis(self, source, h, alpha, s):
        """L-BFGS on (basis params, log alpha, h) jointly, held-out loss with exact gradients."""
        base = self.basis_
        objective, pack, unpack = self._basis_objective(source, base, s)
        params0 = base.learnable_params()
        keys = sorted(params0)
        m = base.n_basis
        x0 = pack(params0, np.log(alpha), h)
        n_theta = x0.size - 1 - m
        bounds = [(None, None)] * n_theta + [(np.log(1e-8), np.log(1e8))] + [(None, None)] * m
        bar = _progress(self.verbose, self.max_iter, "basis learning")
        trace = []

        def callback(intermediate_result):
            trace.append(float(intermediate_result.fun))
            if bar is not None:
                bar.update(1)

        try:
            res = minimize(
                objective,
                x0,
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
                callback=callback,
                options={"maxiter": self.max_iter, "gtol": self.tol, "ftol": self.tol * 1e-3},
            )
        finally:
            if bar is not None:
                bar.close()
        theta, log_lam, hv = unpack(res.x)
        self.basis_ = base.with_params(**theta) if keys else base
        self.basis_loss_ = [float(objective(x0)[0])] + trace
        self.basis_result_ = res
        return np.array(hv, dtype=np.float64), float(np.exp(log_lam)), int(res.nit)

    def _basis_objective(self, source, base, s):
        """The basis-learning objective over x = (basis params flattened, log alpha, h):
        mean over tasks of the query MSE after adapting on the support set (or of the LOO MSE on
        the support set when some task has no query points), with its exact gradient
        (docs/derivations.md 0.3 / 3.3; G matrices from the kernel, contracted by design_vjp)."""
        params0 = base.learnable_params()
        keys = sorted(params0)
        shapes = [np.shape(params0[k]) for k in keys]
        sizes = [int(np.prod(sh)) for sh in shapes]
        m = base.n_basis
        use_query = source.all_have_queries()
        n_total = source.n_tasks()

        def unpack(x):
            out, pos = {}, 0
            for k, sh, n in zip(keys, shapes, sizes):
                out[k] = x[pos : pos + n].reshape(sh)
                pos += n
            return out, x[pos], x[pos + 1 : pos + 1 + m]

        def objective(x):
            theta, log_lam, hv = unpack(x)
            basis = base.with_params(**theta) if keys else base
            lam = float(np.exp(log_lam))
            # in process or summed on the Dask workers: the same per-chunk function
            total, g_flat, g_lam, g_h = source.heldout(self, basis, hv, s, lam, use_query, n_total)
            return total, np.concatenate([g_flat, [g_lam * lam], g_h])

        def pack(theta, log_lam, hv):
            return np.concatenate([np.ravel(np.asarray(theta[k], dtype=np.float64)) for k in keys] + [[log_lam], hv])

        return objective, pack, unpack
