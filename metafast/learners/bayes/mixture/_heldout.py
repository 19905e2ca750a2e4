"""Which tasks ``n_components="auto"`` holds out: a per-task hash rule, the same in process and on Dask.

A task is held out when the hash of (seed, its global index) is at most a cut, so whether a task
is held out depends on nothing but the seed and its position in the training data: not on how the
tasks are chunked, and it is decided where the task lives (a Dask worker needs its chunk's first
global index and two integers, never a list of indices).  The hash is splitmix64 (Steele, Lea &
Flood 2014) in numpy uint64 arithmetic: exact integers, so every machine gets the same split.

The nominal cut keeps the tasks whose hash is below 2^64 / 5 (about 20% held out, binomially
spread).  The split is then clamped to at least one held-out task and at least ``min_train``
training tasks by lowering or raising the cut to the k-th smallest hash (hashes of distinct
indices are distinct: the mix is a bijection of uint64), which needs only the k smallest hashes
of each chunk, and only for tiny task sets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.utils import check_random_state

HELD_FRACTION = 0.2
_NOMINAL = 2**64 // 5  # hash < this: held out (P = 0.2 up to 2^-64)
_GAMMA = np.uint64(0x9E3779B97F4A7C15)  # splitmix64 constants
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser (a bijection of uint64), on an array (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def split_seed(random_state) -> int:
    """The uint64 seed of the split: an int seed itself, else one draw from the generator
    (``None``: numpy's global one, so not reproducible, as for any scikit-learn estimator)."""
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"parameter 'random_state' must be >= 0; got {random_state}")
        return int(random_state) % 2**64
    try:
        rng = check_random_state(random_state)
    except ValueError as exc:
        raise ValueError(f"parameter 'random_state' must be None, an int or a RandomState; {exc}") from None
    return int(rng.randint(0, 2**63, dtype=np.int64))


def task_hashes(seed: int, start: int, n: int) -> np.ndarray:
    """uint64 hashes of the tasks with global indices start .. start + n - 1."""
    key = _mix(np.array([seed], dtype=np.uint64))
    index = np.arange(start, start + n, dtype=np.uint64)
    return _mix(key + index * _GAMMA)


@dataclass(frozen=True)
class Split:
    """The held-out rule: task i is held out when task_hashes(seed, i) <= cut."""

    seed: int
    cut: int

    def held(self, start: int, n: int) -> np.ndarray:
        """Boolean held-out mask of the tasks start .. start + n - 1."""
        return task_hashes(self.seed, start, n) <= np.uint64(self.cut)

    def tasks(self, start: int, n: int, held: bool) -> np.ndarray:
        """Local indices (0 .. n-1) of the held-out (``held``) or training tasks of a chunk."""
        return np.flatnonzero(self.held(start, n) == held)


def count_nominal(seed: int, start: int, n: int) -> int:
    """How many of the tasks start .. start + n - 1 the nominal cut holds out."""
    return int(np.count_nonzero(task_hashes(seed, start, n) < np.uint64(_NOMINAL)))


def smallest_hashes(seed: int, start: int, n: int, k: int) -> np.ndarray:
    """The k smallest hashes (sorted) of the tasks start .. start + n - 1."""
    h = task_hashes(seed, start, n)
    k = min(k, n)
    return np.sort(np.partition(h, k - 1)[:k]) if k else h[:0]


def make_split(
    seed: int, n_tasks: int, n_nominal: int, min_train: int, what: str, smallest: Callable[[int], np.ndarray]
) -> tuple[Split, int]:
    """(Split, number held out) for ``n_tasks`` tasks of which the nominal cut holds out
    ``n_nominal``, clamped to >= 1 held out and >= ``min_train`` training tasks; ``smallest(k)``
    gives the k smallest hashes of all tasks, sorted (called only when the clamp applies)."""
    if n_tasks - 1 < min_train:
        raise ValueError(
            f"{what} needs at least {min_train + 1} tasks ({min_train} to train on and 1 to hold out); got {n_tasks}"
        )
    k = min(max(n_nominal, 1), n_tasks - min_train)
    if k == n_nominal:
        return Split(seed, _NOMINAL - 1), k
    return Split(seed, int(smallest(k)[k - 1])), k
