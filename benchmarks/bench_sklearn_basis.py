"""Cost of scikit-learn transformers and Pipelines as bases (metafast.basis.SklearnBasis).

Prints ratios measured in one run (best of `repeat`):
- a Pipeline([StandardScaler, rbf]) keeps the fused RBF kernel: its weighted_sum against the RBF
  family's own on pre-scaled X (expect ~1 + the scaler's cost) and against the numpy reference
  exp(-sqdist / 2 l^2) @ w (n = 100,000, d = 4, m = 256, float64);
- a plain transformer (SplineTransformer) through the wrapper against calling it directly,
  transform(X) @ w: the wrapper's blocked sums and output checks cost (expect ~1);
- MetaBayes.fit with the RBF family passed directly against the same family in a one-step
  Pipeline (4,000 tasks x 20 points, m = 40): the built-in path must not slow down.

Run: python benchmarks/bench_sklearn_basis.py [--quick] [--repeat 3] [--n-jobs 1]
(--quick: 20,000 rows and 1,000 tasks).  Prints markdown.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from _common import best_of, import_metafast  # noqa: E402
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import SplineTransformer, StandardScaler

import_metafast()

import metafast as mf
from metafast.basis import SklearnBasis


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--n-jobs", type=int, default=None, help="kernel threads (default: all cores)")
    ap.add_argument("--quick", action="store_true", help="CI-sized run")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n_rows, n_tasks = (20_000, 1000) if args.quick else (100_000, 4000)
    rows = []

    X = rng.uniform(-3, 3, size=(n_rows, 4)) * np.array([1.0, 10.0, 0.1, 5.0])
    rbf = mf.basis.make("rbf", n_basis=256, random_state=0, n_jobs=args.n_jobs)
    pipe = SklearnBasis(Pipeline([("scale", StandardScaler()), ("rbf", rbf)])).fit(X)
    scaler, fitted_rbf = pipe.transformer_.named_steps["scale"], pipe.transformer_.named_steps["rbf"]
    Z = scaler.transform(X)
    w = rng.normal(size=256)
    C, ls = fitted_rbf.centers_, float(fitted_rbf.length_scale_[0])

    def numpy_ref():
        sq = (Z**2).sum(1)[:, None] - 2 * Z @ C.T + (C**2).sum(1)[None, :]
        return np.exp(-0.5 * sq / ls**2) @ w

    assert np.allclose(pipe.weighted_sum(X, w), numpy_ref())
    t_pipe = best_of(lambda: pipe.weighted_sum(X, w), args.repeat)
    t_family = best_of(lambda: fitted_rbf.weighted_sum(Z, w), args.repeat)
    t_numpy = best_of(numpy_ref, args.repeat)
    rows.append(
        (
            f"Pipeline[StandardScaler, rbf].weighted_sum, n={n_rows}, d=4, m=256",
            t_pipe,
            "rbf.weighted_sum on pre-scaled X",
            t_family,
        )
    )
    rows.append(("(same)", t_pipe, "numpy exp(-sqdist/2l^2) @ w", t_numpy))

    X1 = rng.uniform(-3, 3, size=(n_rows, 1))
    spline = SplineTransformer(n_knots=30)
    wrapped = SklearnBasis(spline).fit(X1)
    direct = spline.fit(X1)
    ws = rng.normal(size=wrapped.n_basis)
    t_wrapped = best_of(lambda: wrapped.weighted_sum(X1, ws), args.repeat)
    t_direct = best_of(lambda: direct.transform(X1) @ ws, args.repeat)
    rows.append(
        (
            f"SklearnBasis(SplineTransformer(n_knots=30)).weighted_sum, n={n_rows}",
            t_wrapped,
            "transform(X) @ w",
            t_direct,
        )
    )

    tasks = mf.tasks.load("sinusoid", n_tasks=n_tasks, n_support=20, n_query=1, seed=0)
    fam = mf.basis.make("rbf", n_basis=40)
    fit = {
        "family": lambda: mf.MetaBayes(basis=fam, max_iter=20, tol=0, n_jobs=args.n_jobs).fit(tasks),
        "pipeline": lambda: mf.MetaBayes(basis=Pipeline([("rbf", fam)]), max_iter=20, tol=0, n_jobs=args.n_jobs).fit(
            tasks
        ),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_fit = {k: best_of(f, args.repeat) for k, f in fit.items()}
    rows.append(
        (
            f"MetaBayes.fit, rbf in a one-step Pipeline ({n_tasks} tasks x 20 points, m=40, 20 EM iterations)",
            t_fit["pipeline"],
            "the rbf family passed directly",
            t_fit["family"],
        )
    )

    print(f"### scikit-learn transformers as bases (best of {args.repeat}, n_jobs={args.n_jobs})\n")
    print("| measured | ms | reference | ms | time / reference |")
    print("|---|---:|---|---:|---:|")
    for what, t, ref, t_ref in rows:
        print(f"| {what} | {t * 1e3:.1f} | {ref} | {t_ref * 1e3:.1f} | {t / t_ref:.2f} |")


if __name__ == "__main__":
    main()
