"""Seeds of every random choice in metafast.tasks (a leaf module: imports nothing of metafast)."""

from __future__ import annotations

from typing import Any

import numpy as np


def resolve_seed(seed: Any) -> int:
    """An integer seed: int >= 0 as is, None -> fresh OS entropy, a Generator -> one draw from it."""
    if seed is None:
        return int(np.random.SeedSequence().entropy)
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 2**63 - 1))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"parameter 'seed' must be a non-negative integer, None or a numpy Generator; got {seed!r}")
    if seed < 0:
        raise ValueError(f"parameter 'seed' must be >= 0; got {seed}")
    return int(seed)
