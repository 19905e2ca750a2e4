"""Run every benchmark from one place and write benchmarks/RESULTS.md (the README shows it).

Prints the machine summary first (CPU, threads, BLAS, versions), then runs, each in its own
process so one failing benchmark never stops the others:

    bench_kernels.py      fused basis kernels against numpy references
    bench_em_speed.py     MetaBayes EM against a batched numpy implementation
    bench_adapt_speed.py  adapt + predict one task against scikit-learn
    bench_mixture.py      mixture prior
    bench_regression.py   few-shot regression quality (the harness suite "regression")

A script that is not present yet is listed as such.  Every script takes ``--quick`` and prints
its results as markdown on stdout.

    python benchmarks/run_all.py [--quick] [--output benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from _common import ROOT, import_metafast

HERE = Path(__file__).resolve().parent
SCRIPTS = ("bench_kernels.py", "bench_em_speed.py", "bench_adapt_speed.py", "bench_mixture.py", "bench_regression.py")


def run_script(name: str, quick: bool, env: dict) -> tuple[str, float, int | None]:
    """(markdown section, seconds, exit status or None when absent) of one benchmark script."""
    path = HERE / name
    if not path.exists():
        return f"### {name}\n\nNot present in this checkout.\n", 0.0, None
    cmd = [sys.executable, str(path)] + (["--quick"] if quick else [])
    print(f"== {name}{' --quick' if quick else ''}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    print(proc.stdout, flush=True)
    status = "" if proc.returncode == 0 else f"\n**exited with status {proc.returncode}** (see its stderr)\n"
    body = proc.stdout.strip() or "(no output)"
    if not body.lstrip().startswith("#"):
        body = f"### {name}\n\n{body}"
    return f"{body}\n{status}\n_{name}: {seconds:.1f} s_\n", seconds, proc.returncode


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized runs of every benchmark")
    parser.add_argument("--output", default=str(HERE / "RESULTS.md"), help="markdown file to write")
    parser.add_argument("--only", nargs="+", choices=SCRIPTS, help="run only these scripts")
    args = parser.parse_args(argv)

    mf = import_metafast()
    from metafast.bench.machine import format_machine_info, machine_info

    info = machine_info()
    summary = format_machine_info(info)
    print("Machine\n" + summary + "\n", flush=True)

    env = dict(os.environ)
    pkg_parent = str(Path(mf.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_parent, env.get("PYTHONPATH")) if p)
    env["METAFAST_BENCH_NO_MACHINE"] = "1"  # printed once here, not again by every script
    sections, failed = [], []
    for name in args.only or SCRIPTS:
        text, _, rc = run_script(name, args.quick, env)
        sections.append(text)
        if rc not in (0, None):
            failed.append(name)

    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    head = [
        "# metafast benchmark results",
        "",
        f"Written by `python benchmarks/run_all.py{' --quick' if args.quick else ''}` on {stamp}.",
        "",
        "## Machine",
        "",
        summary,
        "",
        "",
    ]
    Path(args.output).write_text("\n".join(head) + "\n".join(sections), encoding="utf-8")
    print(f"wrote {args.output}")
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
