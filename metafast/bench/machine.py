"""A summary of the machine a benchmark ran on: CPU, threads, BLAS and library versions.

Timings mean little without it, so every benchmark report starts with this block.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _blas() -> list[dict]:
    """BLAS/OpenMP libraries numpy and scipy loaded, as threadpoolctl sees them."""
    try:
        import numpy  # noqa: F401  (load numpy's BLAS before inspecting)
        import scipy.linalg  # noqa: F401
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keys = ("user_api", "internal_api", "version", "num_threads", "threading_layer", "architecture")
    return [{k: info.get(k) for k in keys if info.get(k) is not None} for info in threadpool_info()]


def machine_info() -> dict:
    """CPU, cores, metafast's kernel threads, BLAS libraries and the versions that matter."""
    from metafast import __version__
    from metafast._kernels import _info
    from metafast.parallel import effective_n_threads

    return {
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "openmp": bool(_info.openmp_enabled()),
        "kernel_threads": effective_n_threads(None),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "blas": _blas(),
        "versions": {
            "metafast": __version__,
            **{name: _version(name) for name in ("numpy", "scipy", "scikit-learn", "cython", "pluggy", "tqdm")},
        },
    }


def format_machine_info(info: dict | None = None) -> str:
    """The machine summary as a few human-readable lines (also valid markdown)."""
    info = machine_info() if info is None else info
    blas = (
        "; ".join(
            f"{b.get('internal_api', b.get('user_api', '?'))} {b.get('version', '')} "
            f"({b.get('num_threads', '?')} threads)".replace("  ", " ")
            for b in info["blas"]
        )
        or "unknown (threadpoolctl not installed)"
    )
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    omp = "on" if info["openmp"] else "off (single-threaded kernels)"
    env = f", OMP_NUM_THREADS={info['omp_num_threads']}" if info.get("omp_num_threads") else ""
    return "\n".join(
        [
            f"- CPU: {info['cpu']} ({info['logical_cores']} logical cores), {info['platform']}",
            f"- threads: metafast kernels use {info['kernel_threads']} (OpenMP {omp}{env})",
            f"- BLAS: {blas}",
            f"- Python {info['python']}; {versions}",
        ]
    )
