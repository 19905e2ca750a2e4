"""The mixture prior on a Dask LocalCluster: the worker design cache, and n_components="auto".

Run from the repository root after building the kernels:

    python benchmarks/bench_mixture_dask.py [--tasks 10000] [--max-iter 10]

Sinusoid tasks (10 support points, no query), 40 RBFs, C = 2, ``--max-iter`` EM iterations
(tol=0), on a LocalCluster of 2 workers x 1 thread in this process (``processes=False``, so the
cache can be switched off).  Reports, measured in the same run:

- the Dask mixture fit with the rescaled design cached on the workers between passes
  (``_bayes_blocks.worker_design_cache``) against the same fit recomputing it every pass
  (a zero-byte cache): the ratio is the saving per pass;
- ``n_components="auto"`` (C = 1..8) on Dask against in process with 2 threads, and whether the
  two give the same choice and component scores.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

from _common import import_metafast


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--max-iter", type=int, default=10)
    ap.add_argument("--auto-tasks", type=int, default=2_000)
    args = ap.parse_args(argv)

    import numpy as np
    from distributed import Client, LocalCluster

    mf = import_metafast()
    from metafast.learners.bayes._blocks import DesignCache
    from metafast.learners.bayes.mixture import _dask as _mixture_dask

    warnings.simplefilter("ignore")
    basis = mf.basis.make("rbf", n_basis=40).fit(np.linspace(-5, 5, 100)[:, None])
    tasks = mf.tasks.load("sinusoid", n_tasks=args.tasks, n_support=10, n_query=1, seed=0)
    kw = dict(
        basis=basis, n_components=2, n_init=1, max_iter=args.max_iter, tol=0, random_state=0, train_rows="support"
    )
    out = {}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as c, Client(c):
        mf.MetaBayes(backend="dask", **dict(kw, max_iter=1)).fit(tasks[:200])  # warm-up
        t0 = time.perf_counter()
        cached = mf.MetaBayes(backend="dask", **kw).fit(tasks)
        out["fit_cached_s"] = time.perf_counter() - t0
        original = _mixture_dask.worker_design_cache
        _mixture_dask.worker_design_cache = lambda *a: DesignCache(budget=0)
        try:
            t0 = time.perf_counter()
            plain = mf.MetaBayes(backend="dask", **kw).fit(tasks)
            out["fit_uncached_s"] = time.perf_counter() - t0
        finally:
            _mixture_dask.worker_design_cache = original
        out["uncached_over_cached"] = out["fit_uncached_s"] / out["fit_cached_s"]
        out["same_result"] = bool(np.allclose(plain.means_, cached.means_, rtol=1e-12, atol=0))

        few = tasks[: args.auto_tasks]
        auto = dict(kw, n_components="auto", max_iter=5)
        t0 = time.perf_counter()
        remote = mf.MetaBayes(backend="dask", **auto).fit(few)
        out["auto_dask_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    local = mf.MetaBayes(n_jobs=2, **auto).fit(few)
    out["auto_threads_s"] = time.perf_counter() - t0
    out["auto_same_choice"] = bool(remote.n_components_ == local.n_components_)
    a, b = (m.mixture_.component_scores_["heldout_log_evidence"] for m in (local, remote))
    out["auto_max_rel_score_diff"] = float(np.max(np.abs(a - b) / np.abs(a)))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
