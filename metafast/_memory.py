"""Refuse allocations that cannot fit in memory, before making them.

A design matrix of a million rows by a billion basis functions, or a basis with a billion
centres, would otherwise grow until the operating system kills the process (Linux overcommits
memory, so numpy's own allocation often "succeeds" and the failure comes later, as a kill).
Callers estimate what they are about to allocate and call :func:`check_allocation` first; the
error gives the estimate, what needs it and the memory available.
"""

from __future__ import annotations

import os

#: refuse when the estimate exceeds this fraction of the available memory
MEMORY_FRACTION = 0.9
#: smaller requests are not checked (reading the available memory costs more than they do)
CHECK_ABOVE = 64 * 2**20


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux MemAvailable, else physical
    memory), or None when the platform does not say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):  # pragma: no cover - Windows
        return None


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def check_allocation(nbytes: float, what: str, hint: str = "") -> None:
    """Raise MemoryError when ``what`` (needing about ``nbytes``) cannot fit in memory."""
    if nbytes < CHECK_ABOVE:
        return
    available = available_memory()
    if available is None or nbytes <= MEMORY_FRACTION * available:
        return
    raise MemoryError(
        f"{what} needs about {format_bytes(nbytes)}, but only {format_bytes(available)} of memory is "
        f"available; refused before allocating{'; ' + hint if hint else ''}"
    )
