"""MetaBayes on a Dask LocalCluster (2 worker processes x 1 thread) against in process (1 thread),
same data from npz files on disk, and the driver's peak RSS (it should stay flat in the tasks).

Run from the repository root after building the kernels:

    python benchmarks/bench_dask_scale.py [--tasks 100000 1000000] [--max-iter 4] [--format npz|parquet]

Sinusoid tasks, 10 support points (no query), 40 RBFs; files of 50,000 tasks each are written
to a temporary directory first: npz files (``TaskSet.save``) or Parquet tables of (task, x, y)
rows, made into tasks by ``from_frame`` (on the workers, or in process).  Each configuration
runs in a fresh subprocess; the fit runs ``--max-iter`` EM iterations (tol=0).  Both times start from the files on disk: the Dask time
includes reading the files and building the chunks on the workers, the in-process time reading
them once into a list of chunks (both then keep the chunks and their designs between passes);
the workers import metafast before the clock starts, as in a running cluster.  The last two
columns are the in-process fit with 2 threads: what the same two cores give without Dask.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from _common import ROOT

CHILD = r"""
import glob, json, resource, sys, time, warnings
sys.path.insert(0, {root!r})
import metafast as mf
from metafast.distributed import FileSource
warnings.simplefilter("ignore")
paths = sorted(glob.glob({pattern!r}))
table = dict(group="task", features=["x"], target="y") if paths[0].endswith(".parquet") else dict()
basis = mf.basis.make("rbf", n_basis=40).fit(__import__("numpy").linspace(-5, 5, 100)[:, None])
kw = dict(basis=basis, max_iter={max_iter}, tol=0, train_rows="support")
if {dask!r}:
    from distributed import Client, LocalCluster
    import importlib
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c, Client(c) as cl:
        # workers of a running cluster have the library imported: do it before the clock (a
        # 'python -c' parent does not make its spawned workers import it at start-up)
        for module in ("metafast.learners.bayes.estimator", "metafast._distributed_frames", "pandas", "pyarrow"):
            cl.run(importlib.import_module, module)
        t0 = time.perf_counter()
        mf.MetaBayes(backend="dask", **kw).fit(FileSource(paths, **table))
        t = time.perf_counter() - t0
else:
    t0 = time.perf_counter()
    chunks = list(FileSource(paths, **table))      # read once and kept, as the workers do
    mf.MetaBayes(n_jobs={n_jobs}, **kw).fit(chunks)
    t = time.perf_counter() - t0
print(json.dumps(dict(fit_s=t, driver_peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))
"""


def write_files(directory: str, n_tasks: int, fmt: str, per_file: int = 50_000) -> str:
    sys.path.insert(0, str(ROOT))
    import numpy as np

    import metafast as mf

    stream = mf.tasks.stream("sinusoid", n_tasks=n_tasks, chunk_size=per_file, seed=0, n_support=10, n_query=1)
    for i, chunk in enumerate(stream):
        if fmt == "npz":
            chunk.save(f"{directory}/chunk{i:05d}.npz")
            continue
        import pandas as pd

        first = i * per_file
        pd.DataFrame(
            {
                "task": np.repeat(np.arange(first, first + len(chunk)), chunk.support_sizes),
                "x": chunk.X_support[:, 0],
                "y": chunk.y_support,
            }
        ).to_parquet(f"{directory}/chunk{i:05d}.parquet", index=False)
    return f"{directory}/chunk*.{fmt}"


def run(pattern: str, dask: bool, max_iter: int, n_jobs: int = 1) -> dict:
    code = CHILD.format(root=str(ROOT), pattern=pattern, dask=dask, max_iter=max_iter, n_jobs=n_jobs)
    # the thread count is set here: an inherited OMP_NUM_THREADS=1 would clamp n_jobs=2 to 1
    env = {**os.environ, "OMP_NUM_THREADS": str(n_jobs)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--max-iter", type=int, default=4)
    ap.add_argument("--format", default="npz", choices=["npz", "parquet"])
    args = ap.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.1f}; {args.format} files; {args.max_iter} EM iterations")
    print(
        f"{'tasks':>9s} {'in-process s':>12s} {'dask s':>8s} {'speed-up':>8s} {'driver MB (proc)':>16s} "
        f"{'driver MB (dask)':>16s} {'2 threads s':>11s} {'speed-up':>8s}"
    )
    for n in args.tasks:
        with tempfile.TemporaryDirectory() as d:
            pattern = write_files(d, n, args.format)
            local = run(pattern, False, args.max_iter)
            remote = run(pattern, True, args.max_iter)
            threads = run(pattern, False, args.max_iter, n_jobs=2)
        print(
            f"{n:9d} {local['fit_s']:12.1f} {remote['fit_s']:8.1f} {local['fit_s'] / remote['fit_s']:8.2f} "
            f"{local['driver_peak_rss_mb']:16.0f} {remote['driver_peak_rss_mb']:16.0f} {threads['fit_s']:11.1f} "
            f"{local['fit_s'] / threads['fit_s']:8.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
