"""Train/test splits of whole groups (one task per group, e.g. from ``from_frame(n_support=None)``).

A panel user trains on whole groups and tests on held-out groups, each seen through K labelled
rows (its support) with the rest of its rows to score (its query).  The split is by group, so
no row of a test group is ever used in training, and reproducible for a seed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metafast._validation import check_positive_int
from metafast.tasks._seeds import resolve_seed
from metafast.tasks._taskset import TaskSet, _offsets_from_sizes


def split_groups(
    tasks: TaskSet, test_size: float | int = 0.2, *, n_support: int, n_query: int | None = None, seed: Any = 0
) -> tuple[TaskSet, TaskSet]:
    """(train, test): whole groups for training, held-out groups as few-shot test tasks.

    ``tasks`` holds one task per group; each task's support and query rows together are its
    labelled rows.  ``test_size`` is a fraction of the groups or a count.  Train tasks keep every
    labelled row in their support (empty query).  Each test task gets ``n_support`` of its rows
    at random as support and the rest (or ``n_query`` of the rest) as query; a test group with
    fewer than ``n_support + 1`` rows is an error naming it.  Row positions in ``info``
    (``support_rows`` / ``query_rows`` from ``from_frame``) follow the rows.
    """
    if not isinstance(tasks, TaskSet):
        raise TypeError(f"argument 'tasks' must be a metafast TaskSet; got {type(tasks).__name__}")
    n = len(tasks)
    n_support = check_positive_int(n_support, "n_support")
    if n_query is not None:
        n_query = check_positive_int(n_query, "n_query")
    n_test = _n_test(test_size, n)
    order = np.random.default_rng(resolve_seed(seed)).permutation(n)
    test_ids, train_ids = np.sort(order[:n_test]), np.sort(order[n_test:])
    merged = tasks.all_rows()
    rows = [_rows_info(tasks, t) for t in range(n)]
    train = merged.subset(train_ids)
    for k, t in enumerate(train_ids):
        if rows[t] is not None:
            train.info[k]["support_rows"], train.info[k]["query_rows"] = rows[t], rows[t][:0]
    return train, _few_shot(merged, test_ids, rows, n_support, n_query, seed)


def _n_test(test_size, n: int) -> int:
    if isinstance(test_size, (int, np.integer)) and not isinstance(test_size, bool):
        k = int(test_size)
    else:
        try:
            frac = float(test_size)
        except (TypeError, ValueError):
            raise TypeError(f"parameter 'test_size' must be a fraction or a count; got {test_size!r}") from None
        if not 0 < frac < 1:
            raise ValueError(f"parameter 'test_size' as a fraction must be in (0, 1); got {test_size!r}")
        k = int(round(frac * n))
    if not 1 <= k < n:
        raise ValueError(
            f"parameter 'test_size'={test_size!r} leaves {k} of {n} groups for testing: "
            "both the train and the test part need at least one group"
        )
    return k


def _rows_info(tasks: TaskSet, t: int):
    """Frame positions of task t's labelled rows (support then query), when ``info`` has them."""
    d = tasks.info[t]
    if "support_rows" in d and "query_rows" in d:
        return np.concatenate([np.asarray(d["support_rows"]), np.asarray(d["query_rows"])])
    return None


def _few_shot(merged: TaskSet, ids: np.ndarray, rows: list, n_support: int, n_query: int | None, seed: Any) -> TaskSet:
    sizes = merged.support_sizes[ids]
    small = np.flatnonzero(sizes < n_support + 1)
    if small.size:
        t = int(ids[small[0]])
        raise ValueError(
            f"test group {merged.info[t].get('group', t)!r} (task {t}) has {int(sizes[small[0]])} labelled "
            f"rows, fewer than n_support + 1 = {n_support + 1}; {small.size} test group(s) are that small: "
            "lower n_support or drop small groups first (from_frame(drop_small=True))"
        )
    # a random rank of each row inside its task: the first n_support are its support
    rng = np.random.default_rng([resolve_seed(seed), 1])
    s_X, s_y, q_X, q_y, s_n, q_n, info = [], [], [], [], [], [], []
    for t in ids.tolist():
        task = merged[t]
        perm = rng.permutation(task.n_support)
        sup = np.sort(perm[:n_support])
        qry = np.sort(perm[n_support:] if n_query is None else perm[n_support : n_support + n_query])
        s_X.append(task.X_support[sup])
        s_y.append(task.y_support[sup])
        q_X.append(task.X_support[qry])
        q_y.append(task.y_support[qry])
        s_n.append(sup.size)
        q_n.append(qry.size)
        d = dict(merged.info[t])
        if rows[t] is not None:
            d["support_rows"], d["query_rows"] = rows[t][sup], rows[t][qry]
        info.append(d)
    return TaskSet(
        np.concatenate(s_X),
        np.concatenate(s_y),
        _offsets_from_sizes(s_n),
        np.concatenate(q_X),
        np.concatenate(q_y),
        _offsets_from_sizes(q_n),
        info=info,
        _copy_info=False,
    )
