"""The benchmark harness: suites of cases, baselines, a runner with a tidy results table, reports
and plots.  ``metafast bench SUITE`` is its command-line front end.

    from metafast import bench
    results = bench.run_suite(bench.get_suite("regression", quick=True))
    print(bench.format_table(results))
    bench.write_results(results, "bench-out")      # results.json, results.md, PNG plots
"""

from metafast.bench._skip import Unavailable
from metafast.bench.baselines import Oracle, PerTaskCentroid, PerTaskRidge, PooledRidge, noise_free_target
from metafast.bench.report import format_table, to_json, to_markdown, write_results
from metafast.bench.runner import COLUMNS, Results, run_case, run_suite
from metafast.bench.suites import (
    BUILTIN_SUITES,
    Case,
    LearnerSpec,
    Suite,
    available_suites,
    default_baselines,
    default_learners,
    get_suite,
    grid,
    metafast_learner,
)

__all__ = [
    "BUILTIN_SUITES",
    "COLUMNS",
    "Case",
    "LearnerSpec",
    "Oracle",
    "PerTaskCentroid",
    "PerTaskRidge",
    "PooledRidge",
    "Results",
    "Suite",
    "Unavailable",
    "available_suites",
    "default_baselines",
    "default_learners",
    "format_table",
    "get_suite",
    "grid",
    "metafast_learner",
    "noise_free_target",
    "run_case",
    "run_suite",
    "to_json",
    "to_markdown",
    "write_results",
]
