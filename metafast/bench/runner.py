"""Run a suite: load each case's tasks (cached and shared across cases), fit, evaluate, time.

Every case gives one row of a tidy table (one column per variable: family, shots, learner,
metrics with 95% CIs, seconds, status).  A case that raises is recorded with its error and the
run goes on; a case whose learner, family or basis is not installed is recorded as skipped.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from metafast.bench._skip import Unavailable
from metafast.bench.suites import Case, Suite

logger = logging.getLogger(__name__)

METRICS = ("mse", "nll", "coverage90", "accuracy", "ece")
COLUMNS = (
    "suite",
    "family",
    "problem",
    "shots",
    "learner",
    "kind",
    "n_train",
    "n_test",
    "seed",
    "status",
    "error",
    "n_tasks",
    *[k for m in METRICS for k in (m, m + "_ci95")],
    "fit_seconds",
    "eval_seconds",
)


@dataclass
class Results:
    """The rows of a run (dicts with the keys ``COLUMNS``) and what produced them.

    ``models`` and ``tasks`` hold fitted estimators and test TaskSets, keyed by
    (family, shots, learner label) and (family, shots), when the run kept them.
    """

    suite: str
    rows: list[dict]
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    machine: dict | None = None
    models: dict = field(default_factory=dict)
    tasks: dict = field(default_factory=dict)

    def ok(self) -> list[dict]:
        return [r for r in self.rows if r["status"] == "ok"]

    def failed(self) -> list[dict]:
        return [r for r in self.rows if r["status"] == "error"]

    def skipped(self) -> list[dict]:
        return [r for r in self.rows if r["status"] == "skipped"]

    def to_dict(self) -> dict:
        return {"suite": self.suite, "created": self.created, "machine": self.machine, "rows": self.rows}

    def to_frame(self):
        """The rows as a pandas DataFrame (needs pandas)."""
        import pandas as pd

        return pd.DataFrame(self.rows, columns=list(COLUMNS))


def _progress(total: int, desc: str, verbose: int):
    """A tqdm bar on a terminal when verbose, else a silent stand-in with the same methods."""
    from tqdm.auto import tqdm

    enabled = bool(verbose) and sys.stderr.isatty()
    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, unit="case")


class _TaskCache:
    """Loads each (family, split, loader parameters) once; remembers failures too."""

    def __init__(self):
        self._store: dict = {}

    def get(self, case: Case, split: str):
        params = case.loader_params(split)
        key = (case.family, split, tuple(sorted(params.items())))
        if key not in self._store:
            try:
                tasks = case.loader(split, **params) if case.loader is not None else _load_tasks(case.family, params)
                self._store[key] = (tasks, None)
            except Exception as exc:
                self._store[key] = (None, exc)
        tasks, exc = self._store[key]
        if exc is not None:
            raise exc
        return tasks


def _load_tasks(family: str, params: dict):
    import metafast as mf

    names = mf.tasks.available()
    if family not in names:
        raise Unavailable(f"task family {family!r} is not installed (installed: {', '.join(names)})")
    return mf.tasks.load(family, **params)


def _make_basis(case: Case):
    import metafast as mf

    name, params = case.basis
    names = mf.basis.available()
    if name not in names:
        raise Unavailable(f"basis family {name!r} is not installed (installed: {', '.join(names)})")
    return mf.basis.make(name, **dict(params))


def run_case(case: Case, cache: _TaskCache | None = None, suite: str = "") -> tuple[dict, Any, Any]:
    """Fit and evaluate one case; returns (row, fitted estimator or None, test tasks or None).

    Never raises for a failing case (KeyboardInterrupt and SystemExit still stop the run).
    """
    cache = cache or _TaskCache()
    row: dict = dict.fromkeys(COLUMNS)
    row.update(
        suite=suite,
        family=case.family,
        problem=case.problem,
        shots=case.shots,
        learner=case.learner.label,
        kind=case.learner.kind,
        n_train=case.n_train,
        n_test=case.n_test,
        seed=case.seed,
    )
    model = test = None
    try:
        train = cache.get(case, "train")
        test = cache.get(case, "test")
        model = case.learner.factory(_make_basis(case), case)
        t0 = time.perf_counter()
        model.fit(train)
        t1 = time.perf_counter()
        scores = model.evaluate(test)
        t2 = time.perf_counter()
    except Unavailable as exc:
        row.update(status="skipped", error=str(exc))
        logger.info("skipped %s / K=%s / %s: %s", case.family, case.shots, case.learner.label, exc)
        return row, None, test
    except Exception as exc:
        row.update(status="error", error=f"{type(exc).__name__}: {exc}")
        logger.warning(
            "case %s / K=%s / %s failed: %s: %s", case.family, case.shots, case.learner.label, type(exc).__name__, exc
        )
        logger.debug("traceback of the failed case", exc_info=True)
        return row, None, test
    metrics = {k: float(v) for k, v in scores.items() if k in COLUMNS and k != "n_tasks"}
    bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
    if bad:  # a learner bug: never let NaN or inf into a results table
        row.update(status="error", error=f"evaluate returned non-finite {', '.join(bad)}")
        logger.warning("case %s / K=%s / %s: %s", case.family, case.shots, case.learner.label, row["error"])
        return row, None, test
    row.update(metrics, status="ok", fit_seconds=t1 - t0, eval_seconds=t2 - t1)
    if hasattr(model, "reliability"):  # classifiers with probabilities: data of a reliability diagram
        try:
            row["reliability"] = model.reliability(test)
        except Exception as exc:  # the metrics stand; only the diagram is lost
            logger.warning("reliability of %s failed: %s", case.learner.label, exc)
    history = getattr(model, "history_", None)
    if isinstance(history, dict) and history.get("iteration"):  # learning curves (MetaGrad)
        row["history"] = {k: [float(v) if math.isfinite(v) else None for v in values] for k, values in history.items()}
    row["n_tasks"] = int(scores.get("n_tasks", case.n_test))
    return row, model, test


def run_suite(
    suite: Suite, verbose: int = 1, keep_models: bool = False, on_row: Callable[[dict], None] | None = None
) -> Results:
    """Run every case of ``suite`` in order; ``keep_models`` keeps fitted models and test tasks
    (for plots); ``on_row(row)`` is called after each case.  Progress bar when ``verbose`` and
    stderr is a terminal."""
    from metafast.bench.machine import machine_info

    cache = _TaskCache()
    results = Results(suite.name, [], machine=machine_info())
    with _progress(len(suite.cases), suite.name, verbose) as bar:
        for case in suite.cases:
            bar.set_postfix_str(f"{case.family} K={case.shots} {case.learner.label}", refresh=False)
            row, model, test = run_case(case, cache, suite.name)
            results.rows.append(row)
            if keep_models and model is not None:
                results.models[(case.family, case.shots, case.learner.label)] = model
                results.tasks[(case.family, case.shots)] = test
            if on_row is not None:
                on_row(row)
            bar.update(1)
    n_err, n_skip = len(results.failed()), len(results.skipped())
    if n_err or n_skip:
        logger.info("suite %s: %d cases, %d failed, %d skipped", suite.name, len(suite.cases), n_err, n_skip)
    return results
