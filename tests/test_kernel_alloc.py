"""Kernels never abort or crash when a per-thread scratch allocation fails: they count the
failures inside the parallel loop and raise MemoryError after it (freeing what they got)."""

import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

import metafast

KERNELS = pathlib.Path(metafast.__file__).parent / "_kernels"


def test_no_kernel_calls_abort():
    sources = [p for pattern in ("*.pyx", "*.pyx.tp", "*.pxd", "*.h") for p in KERNELS.glob(pattern)]
    assert sources
    offenders = [p.name for p in sources if re.search(r"\babort\s*\(", p.read_text(encoding="utf-8"))]
    assert offenders == []


def test_every_parallel_scratch_malloc_is_checked():
    """Inside each ``with nogil, parallel`` block, every pointer from malloc is tested for NULL
    before the work loop uses it."""
    unchecked = []
    for path in [*KERNELS.glob("*.pyx"), *KERNELS.glob("*.pyx.tp")]:
        lines = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if "with nogil, parallel(" not in line:
                continue
            indent = len(line) - len(line.lstrip())
            block = []
            for nxt in lines[i + 1 :]:
                if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                    break
                block.append(nxt)
            text = "\n".join(block)
            for var in re.findall(r"(\w+) = <[\w ]+\*> malloc\(", text):
                if not re.search(rf"\b{var} == NULL", text):
                    unchecked.append(f"{path.name}:{i + 1} {var}")
    assert unchecked == []


_SCRIPT = textwrap.dedent("""
    import resource, sys
    import numpy as np
    import metafast as mf

    family = mf.basis.make(sys.argv[1], n_basis=4_000_001).fit(np.linspace(-1, 1, 20)[:, None])
    X = np.zeros((1, 1))
    family.design(X)                                   # warm up with the memory available
    with open("/proc/self/status") as fh:
        vm = next(int(l.split()[1]) * 1024 for l in fh if l.startswith("VmSize:"))
    # room for the (1, m) output (32 MB) but not for a thread's (m x 8) scratch tile (256 MB)
    resource.setrlimit(resource.RLIMIT_AS, (vm + 120 * 2**20, resource.RLIM_INFINITY))
    try:
        family.design(X)
    except MemoryError as exc:
        print("MemoryError:", exc)
    else:
        print("no error")
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses RLIMIT_AS and /proc")
@pytest.mark.parametrize("family", ["fourier", "polynomial"])
def test_failed_scratch_allocation_raises_memory_error(family):
    root = pathlib.Path(metafast.__file__).parent.parent
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, family], capture_output=True, text=True, timeout=300, cwd=root
    )
    assert proc.returncode == 0, proc.stderr[-2000:]  # before: SIGABRT (-6)
    assert "MemoryError: metafast: could not allocate the per-thread scratch" in proc.stdout, proc.stdout
