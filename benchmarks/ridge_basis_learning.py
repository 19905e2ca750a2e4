"""MetaRidge basis learning on `harmonic` (Lacoste et al. 2018): fixed vs learned basis.

A 1-D Fourier basis [cos(f_j x), sin(f_j x)] with 8 frequencies spread over [0.2, 9] is
mis-specified for harmonic tasks (frequencies w ~ U[5, 7] and 2w).  MetaRidge(learn_basis=True)
optimises the frequencies, log alpha and h jointly on the support -> query loss of the training
tasks.  Prints test MSE (mean and 95% CI over tasks) for the fixed and learned basis and saves a
figure: the learned frequencies, the training loss per L-BFGS iteration, and one test task.

Run: python benchmarks/ridge_basis_learning.py [--out docs/img/metaridge_harmonic.png]
The numpy family lives in tests/ridge_helpers.py (it implements the learnable-basis contract);
with the Cython `fourier` family from the kernels branch the same code applies unchanged.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from _common import import_metafast  # noqa: E402

import_metafast()  # the installed metafast, else this checkout (built in place)

from ridge_helpers import LearnableFourier  # noqa: E402

import metafast as mf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/img/metaridge_harmonic.png")
    parser.add_argument("--train", type=int, default=400)
    parser.add_argument("--max-iter", type=int, default=60)
    args = parser.parse_args()

    train = mf.tasks.load("harmonic", n_tasks=args.train, n_support=10, n_query=10, seed=0)
    test = mf.tasks.load("harmonic", n_tasks=1000, n_support=10, n_query=50, seed=1)
    basis = LearnableFourier(n_basis=16, max_frequency=9.0)
    fixed = mf.MetaRidge(basis=basis).fit(train)
    learned = mf.MetaRidge(basis=basis, learn_basis=True, max_iter=args.max_iter).fit(train)
    rf, rl = fixed.evaluate(test), learned.evaluate(test)
    print(f"harmonic, {args.train} training tasks, 10-shot, 1000 test tasks x 50 query points")
    print(f"  fixed basis   : mse {rf['mse']:.3f} +- {rf['mse_ci95']:.3f}  (alpha {fixed.alpha_:.3g})")
    print(
        f"  learned basis : mse {rl['mse']:.3f} +- {rl['mse_ci95']:.3f}  (alpha {learned.alpha_:.3g}, "
        f"{learned.n_iter_} L-BFGS iterations)"
    )
    print(f"  learned frequencies: {np.sort(learned.basis_.frequencies_).round(2)}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    ax[0].eventplot([fixed.basis_.frequencies_, learned.basis_.frequencies_], lineoffsets=[0, 1], colors=["grey", "C0"])
    ax[0].axvspan(5, 7, color="C1", alpha=0.2, label="w ~ U[5, 7]")
    ax[0].axvspan(10, 14, color="C2", alpha=0.2, label="2w")
    ax[0].set_yticks([0, 1], ["fixed", "learned"])
    ax[0].set_xlabel("basis frequency")
    ax[0].legend(fontsize=8)
    ax[1].plot(learned.basis_loss_)
    ax[1].set_xlabel("L-BFGS iteration")
    ax[1].set_ylabel("training query MSE")
    t = test[3]
    order = np.argsort(t.X_query[:, 0])
    xq = t.X_query[order]
    ax[2].plot(xq[:, 0], t.y_query[order], "k-", lw=1, label="truth")
    ax[2].plot(t.X_support[:, 0], t.y_support, "ko", label="support")
    ax[2].plot(xq[:, 0], fixed.adapt(t.X_support, t.y_support).predict(xq), color="grey", label="fixed")
    ax[2].plot(xq[:, 0], learned.adapt(t.X_support, t.y_support).predict(xq), color="C0", label="learned")
    ax[2].legend(fontsize=8)
    fig.suptitle(f"MetaRidge on harmonic: test MSE fixed {rf['mse']:.3f}, learned {rl['mse']:.3f}")
    fig.tight_layout()
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"  figure: {args.out}")


if __name__ == "__main__":
    main()
