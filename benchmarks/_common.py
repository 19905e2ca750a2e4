"""Make ``import metafast`` work when a benchmark script runs from a source checkout."""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def import_metafast():
    """Import metafast: the installed one, else the (built in place) checkout this file is in."""
    try:
        import metafast
    except ImportError:
        sys.path.insert(0, str(ROOT))
        import metafast
    return metafast


def best_of(fn, repeat: int) -> float:
    """Best wall-clock seconds of ``repeat`` calls of ``fn()`` (shared machines are noisy)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best
