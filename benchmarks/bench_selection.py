"""Choosing the basis (issue 11): support recovery, few-shot MSE and group-lasso path speed.

(a) synthetic tasks with a known sparse support: a 400-column dictionary (8 Legendre
    polynomials, Fourier at 96 frequencies, 200 multi-scale RBFs), 8 true columns, 2,000
    training tasks of 10 support + 10 query points, noise 0.1.  Precision / recall / F1 of each
    method's support; query MSE at K = 5 / 10 / 20 on 300 test tasks of MetaBayes on the
    selected basis, MetaBayes on the whole dictionary and per-task lasso (penalty tuned on the
    training tasks); one-task ``adapt_predict`` time on the selected basis vs the dictionary.
(b) harmonic with a 200-column Fourier dictionary over 0.5-20 (no hand-set bands): the harness
    suite "selection" (``metafast bench selection`` runs the same cases).
(c) the group-lasso path against scikit-learn's MultiTaskLasso on the shared-design special
    case (same alphas, warm-started, both to a duality gap of 1e-10): time ratio and the largest
    relative objective difference.

(d) per-task designs: the group-lasso path against skglm's GroupLasso on the block-diagonal
    formulation, when skglm is importable (optional; e.g. ``pip install --target DIR skglm
    numba llvmlite`` and ``PYTHONPATH=DIR``).

    python benchmarks/bench_selection.py [--quick] [--parts abcd]

Prints markdown tables on stdout.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np
from _common import import_metafast


def _table(header, rows) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def part_a(quick: bool) -> str:
    from sklearn.base import clone

    import metafast as mf
    from metafast.bench import selection as S

    n_train, n_test = (500, 100) if quick else (2000, 300)
    D = S.sparse_dictionary()
    true = S.true_support(D)
    train = S.sparse_tasks(D, true, n_train, 10, 10, seed=1)
    rows, selected = [], {}
    for method in ("group-lasso", "somp", "ard"):
        t0 = time.perf_counter()
        sel = mf.BasisSelector(D, method=method, ard_params={"max_iter": 100}).fit(train)
        secs = time.perf_counter() - t0
        selected[method] = sel.selected_basis_
        r = S.support_recovery(sel.support_, true)
        rows.append(
            [method, r["n_selected"], f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}", f"{secs:.1f}"]
        )
    out = [
        f"### (a) support recovery (8 true of 400 columns, {n_train} training tasks of 10 + 10 points, noise 0.1)\n",
        _table(["method", "selected", "precision", "recall", "F1", "select s"], rows),
    ]

    # query MSE at K = 5 / 10 / 20 (test tasks drawn with the same support)
    models = {f"MetaBayes on {m} selection": mf.MetaBayes(basis=b, max_iter=100) for m, b in selected.items()}
    models["MetaBayes, whole dictionary"] = mf.MetaBayes(basis=D, max_iter=100)
    fitted = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, model in models.items():
            t0 = time.perf_counter()
            fitted[name] = (clone(model).fit(train), time.perf_counter() - t0)
    lasso_alpha = _tune_lasso(D, train)
    mse_rows = []
    for K in (5, 10, 20):
        test = S.sparse_tasks(D, true, n_test, K, 20, seed=100 + K)
        row = [K]
        for model, _ in fitted.values():
            row.append(f"{model.evaluate(test)['mse']:.4f}")
        row.append(f"{_lasso_mse(D, test, lasso_alpha):.4f}")
        mse_rows.append(row)
    out += [
        "\n### (a) query MSE on new tasks (300 test tasks, 20 query points)\n",
        _table(["K"] + list(fitted) + [f"per-task lasso (alpha={lasso_alpha:g})"], mse_rows),
    ]
    # one-task adapt_predict speed: selected (group lasso) vs whole dictionary
    t = S.sparse_tasks(D, true, 1, 10, 50, seed=7)[0]
    timing = []
    for name in ("MetaBayes on group-lasso selection", "MetaBayes, whole dictionary"):
        model = fitted[name][0]
        model.adapt_predict(t.X_support, t.y_support, t.X_query)
        reps = 200
        t0 = time.perf_counter()
        for _ in range(reps):
            model.adapt_predict(t.X_support, t.y_support, t.X_query)
        timing.append((name, model.basis_.n_basis, (time.perf_counter() - t0) / reps * 1e6, fitted[name][1]))
    out += [
        "\n### (a) one-task adapt_predict (10 support, 50 query points)\n",
        _table(
            ["model", "m", "adapt_predict us", "meta-fit s"],
            [[n, m, f"{us:.0f}", f"{fs:.1f}"] for n, m, us, fs in timing],
        ),
        f"\nspeed-up of the selected basis: {timing[1][2] / timing[0][2]:.1f}x "
        f"(m ratio {timing[1][1] / timing[0][1]:.1f}x)",
    ]
    return "\n".join(out)


def _tune_lasso(D, train) -> float:
    """Per-task lasso penalty with the best mean query MSE on (up to 300) training tasks."""
    sub = train.subset(slice(0, min(300, len(train))))
    best = min((_lasso_mse(D, sub, a), a) for a in (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1))
    return best[1]


def _lasso_mse(D, tasks, alpha: float) -> float:
    from sklearn.linear_model import Lasso

    errs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for t in tasks:
            model = Lasso(alpha=alpha, max_iter=5000).fit(D.design(t.X_support), t.y_support)
            errs.append(np.mean((model.predict(D.design(t.X_query)) - t.y_query) ** 2))
    return float(np.mean(errs))


def part_b(quick: bool) -> str:
    from metafast import bench

    results = bench.run_suite(bench.get_suite("selection", quick=quick), verbose=1)
    return bench.to_markdown(results, title="(b) harmonic, no hand-set bands (suite 'selection')")


def part_c(quick: bool) -> str:
    """Shared design: the whole warm-started path, best of 3 runs each, both to a duality gap of
    1e-10 (scikit-learn's tol is relative to ||Y||^2, ours to the objective at W = 0: the same
    scale up to the factor 1/2n); the objectives are compared at every alpha."""
    from _common import best_of
    from sklearn.linear_model import MultiTaskLasso

    from metafast.learners.select import _solvers as solvers

    rows = []
    for n, m, T in ((100, 400, 20), (200, 400, 50), (200, 2000, 100)) if not quick else ((100, 200, 20),):
        rng = np.random.default_rng(0)
        X = rng.standard_normal((n, m))
        W = np.zeros((m, T))
        W[rng.choice(m, 8, replace=False)] = rng.standard_normal((8, T))
        Y = X @ W + 0.1 * rng.standard_normal((n, T))
        packed = solvers.Packed(
            np.ascontiguousarray(np.tile(X.T, (1, T))), Y.T.ravel(), np.arange(T + 1, dtype=np.int64) * n
        )
        alphas = solvers.alpha_grid(solvers.GroupLasso(packed).alpha_max, 30, 1e-2)
        ours, theirs = [], []

        def run_ours(detect: bool):
            ours.clear()
            gl = (
                solvers.GroupLasso(solvers.Packed(packed.PhiT, packed.y, packed.offsets))
                if detect
                else solvers.GroupLasso.shared_design(X, Y)
            )
            prev = None
            for a in alphas:
                gl.solve(a, prev, 1e-10, 100_000)
                prev = a
                ours.append(gl.objective(a))

        def run_sklearn():
            theirs.clear()
            sk = MultiTaskLasso(fit_intercept=False, warm_start=True, tol=1e-10, max_iter=100_000)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for a in alphas:
                    sk.set_params(alpha=a).fit(X, Y)
                    R = Y - X @ sk.coef_.T
                    theirs.append(0.5 * (R**2).sum() / n + a * np.linalg.norm(sk.coef_, axis=0).sum())

        t_sk = best_of(run_sklearn, 3)
        t_detect = best_of(lambda: run_ours(True), 3)
        t_ours = best_of(lambda: run_ours(False), 3)
        rel = np.max(np.abs(np.array(ours) - np.array(theirs)) / np.abs(theirs))
        rows.append(
            [
                f"n={n}, m={m}, T={T}",
                f"{t_ours:.4f}",
                f"{t_detect:.4f}",
                f"{t_sk:.3f}",
                f"{t_sk / t_ours:.1f}x",
                f"{t_sk / t_detect:.1f}x",
                f"{rel:.1e}",
            ]
        )
    return "\n".join(
        [
            "### (c) group-lasso path (30 alphas to 1e-2 alpha_max) vs sklearn MultiTaskLasso, shared X "
            "(best of 3; metafast works on the Gram columns of the shared design, given as X "
            "or detected in T packed copies of it)\n",
            _table(
                [
                    "problem",
                    "metafast s (X given)",
                    "metafast s (detected)",
                    "sklearn s",
                    "speed-up (X given)",
                    "speed-up (detected)",
                    "max rel. objective diff",
                ],
                rows,
            ),
        ]
    )


def part_d(quick: bool) -> str:
    """Per-task designs against skglm's GroupLasso on the block-diagonal formulation (one design
    with a block per task, groups = one column across the tasks), if skglm imports (it is not a
    dependency: put it on PYTHONPATH).  skglm's datafit is 1/(2N) ||y - X w||^2 with N = n T, so
    our objective at lam equals T times skglm's at lam / T.  Both to a tight tolerance, same
    alphas, warm-started; skglm's JIT compilation is excluded (a warm-up fit first)."""
    try:
        from skglm import GroupLasso as SkglmGroupLasso
    except ImportError:
        return "### (d) per-task designs vs skglm GroupLasso: skipped (skglm is not importable)"
    from _common import best_of

    from metafast.learners.select import _solvers as solvers

    rows = []
    for n, m, T in ((10, 100, 50), (20, 200, 100)) if not quick else ((10, 50, 20),):
        rng = np.random.default_rng(1)
        Phi = rng.standard_normal((T, n, m))
        W = np.zeros((m, T))
        W[rng.choice(m, 6, replace=False)] = rng.standard_normal((6, T))
        y = np.einsum("tnm,mt->tn", Phi, W) + 0.1 * rng.standard_normal((T, n))
        packed = solvers.Packed(
            np.ascontiguousarray(Phi.transpose(2, 0, 1).reshape(m, T * n)),
            y.ravel(),
            np.arange(T + 1, dtype=np.int64) * n,
        )
        big = np.zeros((T * n, m * T))  # column j * T + t: task t's column j
        for t in range(T):
            big[t * n : (t + 1) * n, t::T] = Phi[t]
        from scipy import sparse

        big = sparse.csc_matrix(big)  # skglm's sparse path: the blocks only
        alphas = solvers.alpha_grid(solvers.GroupLasso(packed).alpha_max, 20, 1e-2)
        ours, theirs = [], []

        def run_ours():
            ours.clear()
            gl, prev = solvers.GroupLasso(solvers.Packed(packed.PhiT, packed.y, packed.offsets)), None
            for a in alphas:
                gl.solve(a, prev, 1e-10, 100_000)
                prev = a
                ours.append(gl.objective(a))

        def run_skglm():
            theirs.clear()
            est = SkglmGroupLasso(
                groups=T, alpha=alphas[0] / T, fit_intercept=False, tol=1e-10, max_iter=10_000, warm_start=True
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for a in alphas:
                    est.set_params(alpha=a / T).fit(big, y.ravel())
                    w = est.coef_.reshape(m, T)
                    r = y.ravel() - big @ est.coef_
                    theirs.append(0.5 * (r @ r) / n + a * np.linalg.norm(w, axis=1).sum())

        run_skglm()  # JIT warm-up
        t_sk, t_ours = best_of(run_skglm, 3), best_of(run_ours, 3)
        rel = np.max(np.abs(np.array(ours) - np.array(theirs)) / np.abs(theirs))
        rows.append([f"n_t={n}, m={m}, T={T}", f"{t_ours:.3f}", f"{t_sk:.3f}", f"{t_sk / t_ours:.1f}x", f"{rel:.1e}"])
    return "\n".join(
        [
            "### (d) group-lasso path (20 alphas to 1e-2 alpha_max), per-task designs, vs skglm "
            "GroupLasso on the block-diagonal design (scipy sparse; best of 3)\n",
            _table(["problem", "metafast s", "skglm s", "speed-up", "max rel. objective diff"], rows),
        ]
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--parts", default="abcd")
    args = parser.parse_args(argv)
    import_metafast()
    for part, run in (("c", part_c), ("d", part_d), ("a", part_a), ("b", part_b)):
        if part in args.parts:
            print(run(args.quick), flush=True)
            print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
