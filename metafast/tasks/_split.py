"""Splitting tasks (or classes) into disjoint meta-train / validation / test parts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from metafast.tasks._seeds import resolve_seed


def _part_sizes(n: int, sizes: Sequence[float | int], what: str) -> list[int]:
    """Counts per part from fractions (summing to <= 1) or integers (summing to <= n)."""
    sizes = list(sizes)
    if not sizes:
        raise ValueError("parameter 'sizes' is empty")
    if all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in sizes):
        counts = [int(s) for s in sizes]
        if sum(counts) > n:
            raise ValueError(f"parameter 'sizes' asks for {sum(counts)} {what} but there are {n}")
    else:
        fr = np.asarray(sizes, dtype=np.float64)
        if not np.all(np.isfinite(fr)) or np.any(fr < 0) or fr.sum() > 1 + 1e-9:
            raise ValueError(f"parameter 'sizes' fractions must be >= 0 and sum to <= 1; got {sizes}")
        counts = np.floor(fr * n + 1e-9).astype(int)
        if abs(fr.sum() - 1) <= 1e-9:  # fractions of everything: hand the remainder out in order
            for i in range(n - counts.sum()):
                counts[i % len(counts)] += 1
        counts = counts.tolist()
    for i, c in enumerate(counts):
        if c <= 0:
            raise ValueError(f"part {i} of the split would hold {c} {what} (sizes={list(sizes)}, {n} {what} in all)")
    return counts


def split_indices(
    n: int, sizes: Sequence[float | int] = (0.8, 0.1, 0.1), *, seed: Any = None, shuffle: bool = True
) -> tuple[np.ndarray, ...]:
    """Disjoint index arrays into ``n`` tasks, one per part of ``sizes`` (see :func:`split_tasks`)."""
    counts = _part_sizes(n, sizes, "tasks")
    order = np.random.default_rng(resolve_seed(seed)).permutation(n) if shuffle else np.arange(n)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return tuple(order[a:b] for a, b in zip(bounds[:-1], bounds[1:]))


def split_tasks(
    tasks, sizes: Sequence[float | int] = (0.8, 0.1, 0.1), *, seed: Any = None, shuffle: bool = True
) -> tuple:
    """Disjoint TaskSets by task, e.g. (meta-train, validation, test).

    ``sizes`` are fractions (summing to 1 puts every task in a part; less leaves the rest out)
    or task counts.  Tasks are shuffled with ``seed`` first unless ``shuffle=False``; each task
    lands in at most one part, so no task's points appear in two parts.
    """
    return tuple(tasks.subset(idx) for idx in split_indices(len(tasks), sizes, seed=seed, shuffle=shuffle))


def split_classes(
    classes, sizes: Sequence[float | int] = (0.6, 0.4), *, seed: Any = None, shuffle: bool = True
) -> tuple[np.ndarray, ...]:
    """Disjoint class sets (e.g. meta-train and meta-test classes) for :func:`episodes`.

    ``classes`` is a label vector y (its unique values are split) or the class list itself.
    """
    labels = np.unique(np.asarray(classes))
    counts = _part_sizes(labels.size, sizes, "classes")
    order = np.random.default_rng(resolve_seed(seed)).permutation(labels.size) if shuffle else np.arange(labels.size)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return tuple(np.sort(labels[order[a:b]]) for a, b in zip(bounds[:-1], bounds[1:]))
