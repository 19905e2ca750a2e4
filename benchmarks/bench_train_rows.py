"""Every labelled row counts: meta-training on support + query rows against support rows only.

Harmonic tasks (Lacoste et al. 2018), 1,500 training tasks of 10 support + 10 query rows, the
regression table's two-band 60-function Fourier basis, MetaBayes with a mixture prior of
C = 6 components.  Three fits on the same tasks:
- ``train_rows="support"``: the 0.1 behaviour (query rows of the training tasks unused);
- ``train_rows="all"`` (the default): support and query rows;
- the same 20 rows per task handed over as support only (the reference of issue 12).
Query MSE +- 95% CI on 500 test tasks at K = 5 / 10 / 20.  Target: the default within 10% of
the reference (it is the same data, so it should match to round-off).

Run: python benchmarks/bench_train_rows.py [--quick]
"""

from __future__ import annotations

import argparse
import warnings

from _common import import_metafast  # noqa: E402

import_metafast()

import metafast as mf
from metafast.bench.suites import FAMILY_BASES


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--components", type=int, default=6)
    args = ap.parse_args()
    n_train, n_test = (300, 100) if args.quick else (1500, 500)
    train = mf.tasks.load("harmonic", n_tasks=n_train, n_support=10, n_query=10, seed=0)
    name, params = FAMILY_BASES["harmonic"]
    basis = mf.basis.make(name, **params).fit_tasks(train)
    fits = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for label, tasks, rows in (
            ("support rows only (0.1)", train, "support"),
            ("every labelled row (default)", train, "all"),
            ("all 20 rows as support (reference)", train.all_rows(), "all"),
        ):
            fits[label] = mf.MetaBayes(basis=basis, n_components=args.components, random_state=0, train_rows=rows).fit(
                tasks
            )
    print(
        f"harmonic: {n_train} training tasks of 10 support + 10 query rows, C = {args.components}, "
        "two-band Fourier basis (60 functions)"
    )
    print("| K | " + " | ".join(fits) + " |")
    print("|---" * (len(fits) + 1) + "|")
    for k in (5, 10, 20):
        test = mf.tasks.load("harmonic", n_tasks=n_test, n_support=k, n_query=20, seed=1)
        cells = []
        for model in fits.values():
            m = model.evaluate(test)
            cells.append(f"{m['mse']:.4g} +- {m['mse_ci95']:.2g}")
        print(f"| {k} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
