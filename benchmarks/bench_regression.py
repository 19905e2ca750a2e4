"""Few-shot regression quality (issue 5): query MSE with 95% CI over test tasks and fit seconds.

sinusoid, harmonic and multimodal at K = 5, 10, 20; MetaRidge, MetaBayes (fixed and learned
basis, mixture prior) and the baselines (per-task ridge, pooled ridge, oracle), each trained on
2,000 tasks and tested on 600 (``--quick``: 300 / 100 tasks, K = 5 and 10).  Built on the
harness suite "regression" (``metafast bench regression`` runs the same cases).

    python benchmarks/bench_regression.py [--quick] [--out DIR]

Prints the table as markdown on stdout; with ``--out`` also writes results.json, results.md and
the plots there.
"""

from __future__ import annotations

import argparse
import os
import sys

from _common import import_metafast


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized run (under a minute)")
    parser.add_argument("--out", metavar="DIR", help="also write results.json, results.md and plots here")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import_metafast()
    from metafast import bench

    results = bench.run_suite(bench.get_suite("regression", quick=args.quick, seed=args.seed), verbose=1)
    if os.environ.get("METAFAST_BENCH_NO_MACHINE"):  # run_all.py prints the machine summary once
        results.machine = None
    print(
        bench.to_markdown(
            results, title="Few-shot regression (bench_regression.py" + (" --quick)" if args.quick else ")")
        )
    )
    if args.out:
        written = bench.write_results(results, args.out)
        print("wrote " + ", ".join(written["written"]), file=sys.stderr)
    return 1 if results.failed() else 0


if __name__ == "__main__":
    sys.exit(main())
