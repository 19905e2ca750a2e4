"""MetaBayes(learn_basis=True): the default schedule against the 0.1 schedule, in one run.

The 0.1 schedule ran EM to convergence after every basis phase (``basis_em_iter=None``); the
default runs ``basis_em_iter`` warm-started EM iterations between phases and EM to convergence
once at the end, and evaluates the evidence once less per phase.  Both climb the same objective
(summed log evidence); the table gives the fit time of each, the ratio, and the final log
evidence per task of each (their relative difference should be <= 1e-4).

Cases: a panel of 150 groups x 57 rows with 12 RBFs (the size of a yearly country panel), and
2,000 sinusoid tasks (10 support + 10 query points) with 40 RBFs.
Target (issue 12): >= 5x faster at the same evidence.

Run: python benchmarks/bench_learn_basis.py [--quick]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from _common import import_metafast  # noqa: E402

import_metafast()

import metafast as mf


def panel(n_groups=150, n_rows=57, seed=0):
    """Smooth yearly curves with group-specific level, trend and bump (like fertility or GDP panels)."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 1.0, n_rows)[:, None]
    tasks = []
    for _ in range(n_groups):
        level, trend, bump, at = rng.normal(3, 1), rng.normal(-2, 0.7), rng.normal(0, 0.5), rng.uniform(0.2, 0.8)
        y = level + trend * x[:, 0] + bump * np.exp(-0.5 * ((x[:, 0] - at) / 0.12) ** 2) + rng.normal(0, 0.05, n_rows)
        tasks.append(mf.tasks.Task(x, y, x[:0], y[:0]))
    return mf.tasks.TaskSet.from_list(tasks)


def run(name, tasks, basis, repeat):
    rows = {}
    for label, em_iter in (("0.1 schedule (EM to convergence each phase)", None), ("default", 3)):
        best, model = np.inf, None
        for _ in range(repeat):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()
                model = mf.MetaBayes(basis=basis, learn_basis=True, basis_em_iter=em_iter).fit(tasks)
                best = min(best, time.perf_counter() - t0)
        rows[label] = (best, model.log_evidence_[-1] / len(tasks), model.n_iter_)
    (t_old, ev_old, it_old), (t_new, ev_new, it_new) = rows.values()
    print(f"\n{name}")
    print(f"| schedule | fit seconds (best of {repeat}) | EM iterations | log evidence per task |")
    print("|---|---|---|---|")
    for label, (t, ev, it) in rows.items():
        print(f"| {label} | {t:.3f} | {it} | {ev:.6f} |")
    print(
        f"speed-up: {t_old / t_new:.1f}x; relative evidence difference: "
        f"{abs(ev_new - ev_old) / abs(ev_old):.2e} (new {'>=' if ev_new >= ev_old else '<'} old)"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    n_sin = 300 if args.quick else 2000
    pan = panel(n_groups=50 if args.quick else 150)
    run(f"panel: {len(pan)} groups x 57 rows, 12 RBFs", pan, mf.basis.make("rbf", n_basis=12), args.repeat)
    sin = mf.tasks.load("sinusoid", n_tasks=n_sin, n_support=10, n_query=10, seed=0)
    run(
        f"sinusoid: {n_sin} tasks x (10 support + 10 query), 40 RBFs",
        sin,
        mf.basis.make("rbf", n_basis=40),
        args.repeat,
    )


if __name__ == "__main__":
    main()
