"""``basis="auto"``: MetaClassifier picks its representation by a task-level held-out score.

Candidates (all on inputs standardised by the training rows, ``basis.Standardized``): the
``linear`` family; random Fourier features at 0.5, 1 and 2 times the median pairwise distance of
the standardised inputs; linear + rff (1x) side by side.  Each is scored by fitting the learner
(same head and settings, at most ``MAX_ITER`` iterations) on one fold of the training tasks and
computing the query log loss of the held-out tasks (3 task folds as ``model_selection.TaskKFold``
makes them, the first one used), on at most ``MAX_TASKS`` training tasks.  Candidates are tried in order until the
time budget is spent (the first is always scored).  A candidate that raises, or whose score is not
finite, is skipped with a warning naming it; only all failing is an error.  Too few training
tasks (or no query rows to score on) fall back to the linear family with a warning.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from metafast.tasks._taskset import TaskSet

MAX_TASKS = 200  # training tasks used to choose (a random subset: choosing must stay cheap)
MIN_TASKS = 6  # fewer: no held-out split is worth having
MAX_ITER = 15
RFF_FEATURES = 128
RFF_SCALES = (0.5, 1.0, 2.0)
MEDIAN_ROWS = 500


def median_distance(X: np.ndarray, seed: int = 0) -> float:
    """Median pairwise Euclidean distance of (at most ``MEDIAN_ROWS``) standardised rows."""
    from scipy.spatial.distance import pdist

    from metafast.basis.linear import column_scaling

    X = np.asarray(X, dtype=np.float64)
    if X.shape[0] > MEDIAN_ROWS:
        X = X[np.random.default_rng(seed).choice(X.shape[0], MEDIAN_ROWS, replace=False)]
    mean, scale = column_scaling(X)
    d = pdist((X - mean) / scale)
    med = float(np.median(d)) if d.size else 1.0
    return med if med > 0 else 1.0


def candidates(X: np.ndarray) -> dict:
    """{name: unfitted basis family} of the candidate set, each wrapped in ``Standardized``."""
    from metafast.basis import make
    from metafast.basis.standardized import Standardized
    from metafast.basis.union import Union

    med = median_distance(X)
    out = {"linear": Standardized(make("linear"))}
    for c in RFF_SCALES:
        out[f"rff({c:g})"] = Standardized(make("rff", n_basis=RFF_FEATURES, length_scale=c * med, random_state=0))
    out["linear+rff(1)"] = Standardized(
        Union([make("linear"), make("rff", n_basis=RFF_FEATURES, length_scale=med, random_state=0)])
    )
    return out


def _fallback(reason: str) -> tuple[str, object, dict]:
    from metafast.basis import make
    from metafast.basis.standardized import Standardized

    warnings.warn(f"basis='auto': {reason}; using the linear family", UserWarning, stacklevel=4)
    return (
        "linear",
        Standardized(make("linear")),
        {"candidate": [], "nll": [], "accuracy": [], "seconds": [], "status": []},
    )


def choose_basis(learner, tasks: TaskSet, budget: float, candidate_set: dict | None = None):
    """(name, unfitted basis, cv_results dict) of the candidate with the lowest held-out query log
    loss; ``learner`` is the MetaClassifier being fitted (its parameters are copied)."""
    from sklearn.model_selection import KFold

    if len(tasks) < MIN_TASKS:
        return _fallback(f"{len(tasks)} training tasks are too few for a held-out split (need {MIN_TASKS})")
    rng = np.random.default_rng(0)
    pool = tasks if len(tasks) <= MAX_TASKS else tasks.subset(np.sort(rng.choice(len(tasks), MAX_TASKS, replace=False)))
    # the fold rule of model_selection.TaskKFold(3, shuffle=True) (not imported: it imports the learners)
    train_idx, test_idx = next(KFold(3, shuffle=True, random_state=0).split(np.arange(len(pool))))
    fit_tasks, held = pool.subset(train_idx), pool.subset(test_idx)
    if int(held.query_sizes.sum()) == 0:
        return _fallback("the training tasks have no query rows to score candidates on")
    if candidate_set is None:
        candidate_set = candidates(np.concatenate([pool.X_support, pool.X_query]))
    results = {"candidate": [], "nll": [], "accuracy": [], "seconds": [], "status": []}
    start = time.perf_counter()
    for name, basis in candidate_set.items():
        if results["candidate"] and time.perf_counter() - start > budget:
            break
        t0 = time.perf_counter()
        params = dict(
            learner.get_params(deep=False),
            basis=basis,
            learn_basis=False,
            backend="threads",
            max_iter=min(learner.max_iter, MAX_ITER),
            verbose=0,
            standardize=False,
        )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scores = type(learner)(**params).fit(fit_tasks).evaluate(held)
            nll, acc = float(scores["nll"]), float(scores["accuracy"])
            status = "ok" if np.isfinite(nll) else "non-finite score"
        except Exception as exc:  # noqa: BLE001 - a broken candidate (e.g. a plugin family) is skipped
            nll, acc, status = np.nan, np.nan, f"{type(exc).__name__}: {exc}"
        if status != "ok":
            warnings.warn(
                f"basis='auto': candidate {name!r} failed and is skipped ({status})", UserWarning, stacklevel=3
            )
        for key, value in (
            ("candidate", name),
            ("nll", nll),
            ("accuracy", acc),
            ("seconds", time.perf_counter() - t0),
            ("status", status),
        ):
            results[key].append(value)
    ok = [i for i, s in enumerate(results["status"]) if s == "ok"]
    if not ok:
        raise ValueError(
            "basis='auto': every candidate basis failed: "
            + "; ".join(f"{n}: {s}" for n, s in zip(results["candidate"], results["status"]))
        )
    best = min(ok, key=lambda i: results["nll"][i])
    name = results["candidate"][best]
    return name, candidate_set[name], results


__all__ = ["candidates", "choose_basis", "median_distance"]
