"""Cost of the base class's NaN check on a design matrix (issue 23 D13), as a ratio to design(X).

    python benchmarks/bench_design_check.py

Prints, per built-in family, (time of the check) / (time of design(X), the check included); the
best of 5 runs of each, measured in the same run.
"""

import time

import numpy as np

import metafast as mf
from metafast.basis._base import check_design_finite

CASES = [
    ("rbf", {"n_basis": 256}, 20000, 4),
    ("fourier", {"n_basis": 64}, 100000, 1),
    ("polynomial", {"n_basis": 10}, 100000, 1),
]


def main() -> None:
    rng = np.random.default_rng(0)
    for name, params, n, d in CASES:
        X = rng.uniform(-1, 1, size=(n, d))
        basis = mf.basis.make(name, **params).fit(X)
        design, check = [], []
        for _ in range(5):
            t0 = time.perf_counter()
            Phi = basis.design(X)
            t1 = time.perf_counter()
            check_design_finite(basis, Phi)
            check.append(time.perf_counter() - t1)
            design.append(t1 - t0)
        print(f"| {name} ({n} x {basis.n_basis}) | NaN check / design(X) = {min(check) / min(design):.3f} |")


if __name__ == "__main__":
    main()
