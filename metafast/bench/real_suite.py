"""The ``real-classification`` suite: MetaClassifier with its defaults against the baselines a user
tries first, on real tables (``real_tables``).

* episodic: 5-way 1- and 5-shot episodes, meta-test classes disjoint from meta-train classes;
  baselines: nearest class mean and LDA + nearest mean (standardised inputs), per-episode
  LogisticRegression;
* shared labels: one task per group, K = 5, 10, 20 support rows, the rest of the group as query;
  baselines: per-task and pooled LogisticRegression (standardised inputs).

Table names are the case's ``family``; the held-out tables (``real_tables.HELD_OUT``) are rows like
the others, and reports mark them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from metafast.bench.suites import Case, LearnerSpec, Suite, metafast_learner

EPISODIC_SHOTS = (1, 5)
SHARED_SHOTS = (5, 10, 20)


def table_baselines(kind: str) -> list[LearnerSpec]:
    """The baselines of one kind of table (see the module docstring)."""
    from metafast.bench.table_baselines import (
        LdaCentroid,
        PooledLogistic,
        StandardisedCentroid,
        TaskLogistic,
    )

    specs = [LearnerSpec("per-task logistic", lambda b, c: TaskLogistic(), "baseline")]
    if kind == "episodic":
        specs += [LearnerSpec("nearest mean (standardised)", lambda b, c: StandardisedCentroid(), "baseline"),
                  LearnerSpec("LDA + nearest mean", lambda b, c: LdaCentroid(), "baseline")]
    else:
        specs.append(LearnerSpec("pooled logistic", lambda b, c: PooledLogistic(), "baseline"))
    return specs


def classifier(**params) -> Callable[[Any, Case], Any]:
    """A factory of ``MetaClassifier(**params)``: the case's basis is ignored, so the learner's
    own default (or ``params["basis"]``) is what is measured."""
    learner = metafast_learner("MetaClassifier", **params)
    return lambda basis, case: learner(params.get("basis"), case)


def default_table_learners() -> list[LearnerSpec]:
    """MetaClassifier as it comes (the row the issue's targets are about)."""
    return [LearnerSpec("MetaClassifier()", classifier())]


def real_classification_suite(quick: bool = False, seed: int = 0, learners: Sequence[LearnerSpec] | None = None,
                              tables: Sequence[str] | None = None) -> Suite:
    """Every (table, shots, learner or baseline) case; ``quick``: fewer tasks and shots."""
    from metafast.bench.real_tables import TABLES, loader_for

    learners = list(default_table_learners() if learners is None else learners)
    names = list(TABLES) if tables is None else list(tables)
    sizes = {"n_train": 100, "n_test": 60} if quick else {"n_train": 600, "n_test": 300}
    cases = []
    for name in names:
        kind = TABLES[name].kind
        shots = EPISODIC_SHOTS if kind == "episodic" else SHARED_SHOTS
        if quick:
            shots = shots[:1]
        task_params = {"n_way": 5} if kind == "episodic" else {}
        for k in shots:
            for spec in learners + table_baselines(kind):
                cases.append(Case(name, k, spec, n_query=15, seed=seed, task_params=task_params,
                                  problem="classification", loader=loader_for(name), basis=("linear", {}), **sizes))
    return Suite("real-classification", cases,
                 "MetaClassifier defaults vs first baselines on real tables (episodic and shared labels)")


__all__ = ["default_table_learners", "real_classification_suite", "table_baselines"]
