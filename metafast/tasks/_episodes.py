"""N-way K-shot classification episodes, and the built-in ``digits`` loader.

An episode picks ``n_way`` classes, then ``k_shot`` support and ``n_query`` query examples of
each (per class, as in learn2learn), without replacement and with no example in both sets.
Labels are relabelled 0..n_way-1 in each episode; ``info["classes"]`` holds the original label
of each new label, and the TaskSet's ``label_setting`` is "episodic".  Rows are class-major: the k_shot support rows of label 0, then label 1, ...
Episodes are drawn in reproducible blocks (see ``_sampling``): the class choices come from the
task stream and the examples from the point stream, so a resampling stream keeps each
episode's classes and draws fresh examples on every pass.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metafast._validation import check_positive_int, check_X
from metafast.tasks._sampling import BlockSampler
from metafast.tasks._seeds import resolve_seed
from metafast.tasks._taskset import TaskSet

_MAX_SORT_CELLS = 4_000_000  # bound on the random-key matrix drawn at once per class


def _prepare(X=None, y=None, n_way=5, k_shot=1, n_query=15, classes=None, dtype=None):
    if X is None or y is None:
        raise TypeError("episodes need both X and y")
    X = check_X(X, "X", dtype=dtype)
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"argument 'y' must be 1-D with one label per row of X ({X.shape[0]}); got shape {y.shape}")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise ValueError("argument 'y' contains NaN or inf labels")
    n_way = check_positive_int(n_way, "n_way", minimum=2)
    k_shot = check_positive_int(k_shot, "k_shot")
    n_query = check_positive_int(n_query, "n_query")
    present = np.unique(y)
    if classes is None:
        labels = present
    else:
        labels = np.unique(np.asarray(classes))
        missing = np.setdiff1d(labels, present)
        if missing.size:
            raise ValueError(f"argument 'classes' names labels absent from y: {missing.tolist()[:10]}")
    if n_way > labels.size:
        raise ValueError(f"n_way={n_way} is larger than the number of classes available ({labels.size})")
    order = np.argsort(y, kind="stable")
    sorted_y = y[order]
    members = []
    short = []
    for c in labels:
        lo, hi = np.searchsorted(sorted_y, c, "left"), np.searchsorted(sorted_y, c, "right")
        members.append(order[lo:hi])
        if hi - lo < k_shot + n_query:
            short.append(f"{c.item() if isinstance(c, np.generic) else c!r} ({hi - lo} rows)")
    if short:
        raise ValueError(
            f"k_shot + n_query = {k_shot + n_query} examples per class are needed, but "
            f"{'class' if len(short) == 1 else f'{len(short)} classes:'} {', '.join(short[:10])} "
            f"{'has' if len(short) == 1 else 'have'} fewer"
        )
    return dict(X=X, labels=labels, members=members, n_way=n_way, k_shot=k_shot, n_query=n_query)


def _sample_block(task_rng, point_rng, n, *, X, labels, members, n_way, k_shot, n_query):
    C, per = labels.size, k_shot + n_query
    chosen = np.argsort(task_rng.random((n, C)), axis=1)[:, :n_way]  # (n, n_way) class ids
    picks = np.empty((n, n_way, per), dtype=np.int64)
    for c in range(C):
        where_t, where_j = np.nonzero(chosen == c)
        m, pool = where_t.size, members[c]
        if m == 0:
            continue
        step = max(1, _MAX_SORT_CELLS // pool.size)
        for a in range(0, m, step):
            b = min(a + step, m)
            keys = point_rng.random((b - a, pool.size))
            pos = np.argpartition(keys, per - 1, axis=1)[:, :per] if per < pool.size else np.argsort(keys, axis=1)
            # order the picked examples by their key so the draw is a uniform random sequence
            pos = np.take_along_axis(pos, np.argsort(np.take_along_axis(keys, pos, 1), axis=1), 1)
            picks[where_t[a:b], where_j[a:b]] = pool[pos[:, :per]]
    sup = picks[:, :, :k_shot].reshape(-1)
    qry = picks[:, :, k_shot:].reshape(-1)
    y_s = np.tile(np.repeat(np.arange(n_way, dtype=np.int64), k_shot), n)
    y_q = np.tile(np.repeat(np.arange(n_way, dtype=np.int64), n_query), n)
    names = labels[chosen].tolist()
    return TaskSet(
        X[sup],
        y_s,
        np.arange(n + 1, dtype=np.int64) * (n_way * k_shot),
        X[qry],
        y_q,
        np.arange(n + 1, dtype=np.int64) * (n_way * n_query),
        info=[{"classes": c} for c in names],
        label_setting="episodic",
        _copy_info=False,
    )


EPISODES = BlockSampler("episodes", _prepare, _sample_block)


def episodes(
    X,
    y,
    n_way: int = 5,
    k_shot: int = 1,
    n_query: int = 15,
    n_tasks: int = 600,
    classes=None,
    seed: Any = None,
    dtype=None,
) -> TaskSet:
    """N-way K-shot episodes from a labelled data set (X (n, d), y (n,) of any label type).

    ``k_shot`` and ``n_query`` are per class.  ``classes`` restricts the classes episodes may
    use (e.g. the meta-train half of :func:`split_classes`).  Every class used must have
    ``k_shot + n_query`` examples; ``n_way`` may not exceed the number of classes.  Labels are
    relabelled 0..n_way-1 per episode (original labels in ``info["classes"]``).
    """
    n_tasks = check_positive_int(n_tasks, "n_tasks")
    prepared = EPISODES.prepare(X=X, y=y, n_way=n_way, k_shot=k_shot, n_query=n_query, classes=classes, dtype=dtype)
    return EPISODES.generate(0, n_tasks, resolve_seed(seed), 0, **prepared)


# ---------------------------------------------------------------------------- digits

DIGITS_TRAIN_CLASSES = (0, 1, 2, 3, 4, 5)
DIGITS_TEST_CLASSES = (6, 7, 8, 9)
_DIGIT_SPLITS = {
    "train": DIGITS_TRAIN_CLASSES,
    "test": DIGITS_TEST_CLASSES,
    "all": DIGITS_TRAIN_CLASSES + DIGITS_TEST_CLASSES,
}


def _shots(n_support, k_shot) -> int:
    if n_support is not None and k_shot is not None and n_support != k_shot:
        raise ValueError(f"n_support={n_support} and k_shot={k_shot} disagree; they are the same parameter here")
    return 1 if n_support is None and k_shot is None else (n_support if n_support is not None else k_shot)


def _digit_classes(split: str, train_classes) -> tuple:
    """The digits a split may use: ``train_classes`` for "train", the other digits for "test"."""
    if split not in _DIGIT_SPLITS:
        raise ValueError(f"parameter 'split' must be one of {', '.join(_DIGIT_SPLITS)}; got {split!r}")
    if train_classes is None:
        train_classes = DIGITS_TRAIN_CLASSES
    try:
        train = tuple(sorted({int(c) for c in train_classes}))
    except (TypeError, ValueError):
        raise TypeError(f"parameter 'train_classes' must be a sequence of digits 0-9; got {train_classes!r}") from None
    if not train or train[0] < 0 or train[-1] > 9 or len(train) == 10:
        raise ValueError(
            f"parameter 'train_classes' must be a non-empty proper subset of the digits 0-9 (the rest are "
            f"the meta-test classes); got {train_classes!r}"
        )
    test = tuple(c for c in range(10) if c not in train)
    return {"train": train, "test": test, "all": tuple(range(10))}[split]


def _prepare_digits(
    n_support=None, n_query=15, n_way=4, split="train", dtype=np.float64, k_shot=None, train_classes=None
):
    n_support = _shots(n_support, k_shot)
    classes = _digit_classes(split, train_classes)
    from sklearn.datasets import load_digits

    data = load_digits()
    X = data.data / 16.0
    return _prepare(X, data.target, n_way=n_way, k_shot=n_support, n_query=n_query, classes=classes, dtype=dtype)


DIGITS = BlockSampler("digits", _prepare_digits, _sample_block)


def load_digits_episodes(
    n_tasks: int = 600,
    n_support: int | None = None,
    n_query: int = 15,
    seed: Any = 0,
    n_way: int = 4,
    split: str = "train",
    dtype=np.float64,
    k_shot: int | None = None,
    train_classes=None,
) -> TaskSet:
    """Few-shot episodes over scikit-learn's bundled 8x8 digits (1,797 images, no download).

    Class split: meta-train digits ``train_classes`` (default 0-5, ``split="train"``), meta-test
    the other digits (default 6-9, ``split="test"``), or ``"all"``.  ``train_classes=range(5)``
    gives 0-4 / 5-9, so 5-way episodes whose meta-test classes were never seen in meta-training.  ``n_support`` is k_shot (per class), ``n_query`` per
    class, ``n_way`` classes per episode (default 4, the most the test split allows).  Pixels
    are scaled to [0, 1] (divided by 16): 64 features.  There is no published few-shot
    protocol on this data set; this one is metafast's.  ``k_shot`` is accepted as another name
    for ``n_support`` (as in :func:`episodes`).
    """
    n_tasks = check_positive_int(n_tasks, "n_tasks")
    n_support = _shots(n_support, k_shot)
    prepared = DIGITS.prepare(
        n_support=n_support, n_query=n_query, n_way=n_way, split=split, dtype=dtype, train_classes=train_classes
    )
    return DIGITS.generate(0, n_tasks, resolve_seed(seed), 0, **prepared)


load_digits_episodes.sampler = DIGITS
