"""Fused weighted sums of the recurrence families against plain numpy references.

    python benchmarks/bench_recurrence_families.py [--n 100000] [--m 64] [--repeat 7]

Prints, per family and thread count, the best-of-repeat time, ns per (sample x basis
function) and the speed-up over the numpy reference (same inputs, same result to rounding).
The DESIGN target is the 1-D Fourier case (m = 64, n = 100,000, float64): >= 10x.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import import_metafast  # noqa: E402
from numpy.polynomial import legendre
from scipy.interpolate import BSpline as ScipyBSpline

import_metafast()  # the installed metafast, else this checkout (built in place)

from metafast.basis.bspline import BSpline
from metafast.basis.fourier import Fourier
from metafast.basis.polynomial import Polynomial


def best_time(fn, repeat: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def fourier_case(X, m, rng):
    B = Fourier(n_basis=m, include_constant=False).fit(X)
    f = B.frequencies_
    w = rng.normal(size=m)
    wc, ws = w[0::2], w[1::2]

    def reference():
        arg = 2 * np.pi * X * (f / (2 * np.pi))  # the np.cos(2 pi x f) @ wc + np.sin(...) form
        return np.cos(arg) @ wc + np.sin(arg) @ ws

    return B, w, reference


def polynomial_case(X, m, rng):
    B = Polynomial(n_basis=m).fit(X)
    w = rng.normal(size=m)
    u = (X[:, 0] - B.shift_[0]) * np.exp(-B.log_scale_[0])
    return B, w, lambda: legendre.legvander(u, m - 1) @ w


def bspline_case(X, m, rng):
    B = BSpline(n_basis=m).fit(X)
    w = rng.normal(size=m)
    spline = ScipyBSpline(B.knots(0), w, B.degree_, extrapolate=True)
    return B, w, lambda: spline(X[:, 0])  # scipy's own fused evaluation (a strong baseline)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--m", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    X = rng.uniform(-5, 5, size=(args.n, 1))
    print(f"n={args.n}, m={args.m}, d=1, float64; best of {args.repeat}")
    print(f"{'family':<11} {'reference':>12} {'threads':>7} {'fused':>10} {'ns/(n*m)':>9} {'speed-up':>8}")
    for name, case in (("fourier", fourier_case), ("polynomial", polynomial_case), ("bspline", bspline_case)):
        B, w, reference = case(X, args.m, rng)
        t_ref = best_time(reference, args.repeat)
        err = np.abs(B.weighted_sum(X, w) - reference()).max()
        for n_jobs in (1, 2):
            B.set_params(n_jobs=n_jobs)
            t = best_time(lambda: B.weighted_sum(X, w), args.repeat)
            ns = t / (args.n * args.m) * 1e9
            print(
                f"{name:<11} {t_ref * 1e3:>10.2f}ms {n_jobs:>7} {t * 1e3:>8.2f}ms {ns:>9.3f} "
                f"{t_ref / t:>7.1f}x   (max |diff| {err:.1e})"
            )


if __name__ == "__main__":
    main()
