"""MetaClassifier with backend="dask" on a LocalCluster (2 worker processes x 1 thread) against in
process (1 thread), per head, same TaskSet, with the agreement of the two fits.

Run from the repository root after building the kernels:

    python benchmarks/bench_classifier_dask.py [--tasks 2000] [--max-iter 20] [--heads ridge prototype]

5-way 5-shot class-mixtures episodes (8 features, 10 query rows a class), 32 RBFs fitted up front.
Each fit runs ``--max-iter`` EM iterations (L-BFGS iterations for the prototype head) with tol=0;
the logistic head then calibrates its scale and the ridge head its temperature (one pass per trial
value).  Times are the best of two fits; the Dask time includes sending the TaskSet's two chunks to
the workers and building their designs (the first pass).  The ratio is the speed-up; on an idle
2-core machine it is bounded by 2, minus the per-pass scheduling cost (a few ms per pass).
"""

from __future__ import annotations

import argparse
import importlib
import warnings

import numpy as np
from _common import best_of, import_metafast


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--max-iter", type=int, default=20)
    ap.add_argument("--heads", nargs="+", default=["logistic", "ridge", "prototype"])
    args = ap.parse_args(argv)
    mf = import_metafast()
    import distributed

    train = mf.tasks.load(
        "class-mixtures", n_tasks=args.tasks, seed=0, n_way=5, n_features=8, n_total_classes=40, k_shot=5, n_query=10
    )
    basis = mf.basis.make("rbf", n_basis=32, random_state=0).fit_tasks(train)
    test = mf.tasks.load(
        "class-mixtures", n_tasks=50, seed=1, n_way=5, n_features=8, n_total_classes=40, k_shot=5, n_query=10
    )
    print(f"{args.tasks} tasks, {train.X_support.shape[0] + train.X_query.shape[0]} rows, m = 33")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with (
            distributed.LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            client.run(importlib.import_module, "metafast.learners.classify.estimator")
            for head in args.heads:
                fits = {}

                def fit(backend):
                    fits[backend] = mf.MetaClassifier(
                        basis=basis, head=head, max_iter=args.max_iter, tol=0, n_jobs=1, backend=backend
                    ).fit(train)

                t_local = best_of(lambda: fit("threads"), 2)
                t_dask = best_of(lambda: fit("dask"), 2)
                p_local = fits["threads"].predict_tasks_proba(test)
                p_dask = fits["dask"].predict_tasks_proba(test)
                diff = float(np.abs(p_local - p_dask).max())
                print(
                    f"{head:9s}: in process {t_local:6.2f} s, dask 2 x 1 {t_dask:6.2f} s, "
                    f"speed-up {t_local / t_dask:4.2f}x, max |proba difference| {diff:.1e}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
