"""Peak memory and time of a MetaBayes fit on many tasks, in process, each route in its own process.

Run from the repository root after building the kernels:

    python benchmarks/bench_scale_memory.py [--tasks 1000000] [--max-iter 200] [--routes stream memory]

Sinusoid tasks with 10 support points and no query (so the 10 points are what EM trains on),
40 RBFs, full covariance.  Each route runs in a fresh subprocess and reports its peak RSS
(resource.getrusage), the fit time, the passes over the data, and the time of one plain EM pass
over the same data measured in the same process (the ratio fit / one pass is the target: <= 6).
Routes: "stream" (mf.tasks.stream, chunks regenerated each pass: memory flat) and "memory" (one
in-memory TaskSet, E-step in blocks: TaskSet + O(block)).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from _common import ROOT

CHILD = r"""
import json, resource, sys, time, warnings
sys.path.insert(0, {root!r})
import metafast as mf
from metafast.learners.bayes._em import GaussianPrior
route, n_tasks, max_iter = {route!r}, {n_tasks}, {max_iter}
warnings.simplefilter("ignore")
if route == "stream":
    data = mf.tasks.stream("sinusoid", n_tasks=n_tasks, chunk_size=20000, seed=0, n_support=10, n_query=1)
else:
    data = mf.tasks.load("sinusoid", n_tasks=n_tasks, n_support=10, n_query=1, seed=0)
rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
model = mf.MetaBayes(basis=mf.basis.make("rbf", n_basis=40), max_iter=max_iter, train_rows="support")
t0 = time.perf_counter()
model.fit(data)
t_fit = time.perf_counter() - t0
# one plain EM pass over the same data at the fitted prior (E-step + M-step), same process
from threadpoolctl import threadpool_limits
from metafast.learners.bayes._blocks import DesignCache
source = model._chunk_source(data)[0]
with threadpool_limits(1, "blas"):
    t0 = time.perf_counter()
    model._estep_all(source, model._prior, DesignCache() if isinstance(source, list) else None)
t_pass = time.perf_counter() - t0
print(json.dumps(dict(route=route, n_tasks=n_tasks, fit_s=t_fit, pass_s=t_pass, passes=model.n_passes_,
                      iters=model.n_iter_, converged=bool(model.converged_),
                      objective_per_task=float(model.objective_[-1] / n_tasks),
                      peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      rss_after_data_mb=rss_data)))
"""


def run(route: str, n_tasks: int, max_iter: int) -> dict:
    code = CHILD.format(root=str(ROOT), route=route, n_tasks=n_tasks, max_iter=max_iter)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--max-iter", type=int, default=200)
    ap.add_argument("--routes", nargs="+", default=["stream", "memory"], choices=["stream", "memory"])
    args = ap.parse_args(argv)
    print(
        f"{'route':7s} {'tasks':>9s} {'fit s':>8s} {'pass s':>7s} {'fit/pass':>8s} {'passes':>6s} "
        f"{'conv':>5s} {'peak RSS MB':>11s} {'data MB':>8s}"
    )
    for n in args.tasks:
        for route in args.routes:
            r = run(route, n, args.max_iter)
            print(
                f"{route:7s} {n:9d} {r['fit_s']:8.1f} {r['pass_s']:7.2f} {r['fit_s'] / r['pass_s']:8.1f} "
                f"{r['passes']:6d} {str(r['converged']):>5s} {r['peak_rss_mb']:11.0f} {r['rss_after_data_mb']:8.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
