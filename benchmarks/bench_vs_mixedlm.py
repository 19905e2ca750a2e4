"""MetaBayes against mixedlm-rs (and statsmodels) on grouped linear models: time and log-likelihood.

The peer benchmark of issue 22.  One DataFrame (group, x, y) per shape; each library goes from
that frame to a converged maximum-likelihood fit of the same model:

    y_gi = phi(x_gi)^T w_g + e_gi,   w_g ~ N(mu, Sigma) (full covariance),   e ~ N(0, s2)

with phi the q Legendre polynomials of x (fixed effects mu and random effects on every column).
metafast: ``mf.tasks.from_frame`` + ``MetaBayes(basis=polynomial(q), prior_weight=0)``;
mixedlm-rs: ``MixedLM(y, Phi, groups, exog_re=Phi).fit(reml=False)`` with Phi from
``numpy.polynomial.legendre.legvander`` (inside its timing); statsmodels the same (the smallest
size only: it takes minutes beyond).  The Legendre domain differs slightly between the two
(metafast maps the observed x range to [-1, 1]), which is an invertible linear map of the
columns: the model and its maximum likelihood are the same.

Reported per shape: seconds (best of ``--repeat``), the ratio metafast / peer (< 1: metafast
faster), both log-likelihoods and their relative difference, and metafast's passes over the
data.  Converged fits per second are 1 / seconds.

Run:  python benchmarks/bench_vs_mixedlm.py [--quick] [--repeat 3] [--profile]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from _common import import_metafast

import_metafast()

import metafast as mf  # noqa: E402

SHAPES = ((2, 4), (6, 10))  # (q, rows a group)
SIZES = (2_000, 20_000, 125_066)
QUICK_SIZES = (2_000, 20_000)
STATSMODELS_MAX_GROUPS = 2_000
ACCELERATION = "lbfgs"  # interior optimum (noisy groups): the gradient optimiser, see docs/metabayes.md


def make_frame(n_groups: int, q: int, rows: int, seed: int = 0):
    """A DataFrame (group, x, y) drawn from the model above (noise sd 0.5)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, n_groups * rows)
    mu = rng.normal(size=q)
    B = rng.normal(size=(q, q)) / np.sqrt(q)
    W = mu + rng.normal(size=(n_groups, q)) @ B.T
    Phi = np.polynomial.legendre.legvander(x, q - 1)
    y = np.einsum("ij,ij->i", Phi, np.repeat(W, rows, axis=0)) + 0.5 * rng.normal(size=x.size)
    return pd.DataFrame({"group": np.repeat(np.arange(n_groups), rows), "x": x, "y": y})


def fit_metafast(frame, q: int):
    tasks = mf.tasks.from_frame(frame, group="group", features="x", target="y", n_support=None)
    model = mf.MetaBayes(basis=mf.basis.make("polynomial", n_basis=q), prior_weight=0.0, acceleration=ACCELERATION)
    model.fit(tasks)
    return model, float(model.log_evidence_[-1])


def peer_design(frame, q: int):
    x = frame["x"].to_numpy()
    Phi = np.polynomial.legendre.legvander(x, q - 1)
    return frame["y"].to_numpy(), Phi, frame["group"].to_numpy()


def fit_mixedlm_rs(frame, q: int):
    from mixedlm_rs import MixedLM

    y, Phi, groups = peer_design(frame, q)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = MixedLM(y, Phi, groups, exog_re=Phi).fit(reml=False)
    return res, float(res.llf)


def fit_statsmodels(frame, q: int):
    import statsmodels.api as sm

    y, Phi, groups = peer_design(frame, q)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sm.MixedLM(y, Phi, groups, exog_re=Phi).fit(reml=False, method="lbfgs")
    return res, float(res.llf)


def timed(fn, repeat: int):
    """(best seconds, last result) of ``repeat`` calls."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def available(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def profile_small(q: int = 2, rows: int = 4, n_groups: int = 2_000) -> None:
    """Where metafast's time goes from the DataFrame to the fitted model (cProfile, top 25)."""
    import cProfile
    import pstats

    frame = make_frame(n_groups, q, rows)
    fit_metafast(frame, q)  # warm up imports and kernels
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(20):
        fit_metafast(frame, q)
    prof.disable()
    print(f"\ncProfile of 20 metafast fits at q = {q}, {n_groups:,} groups (cumulative seconds):")
    pstats.Stats(prof).sort_stats("cumulative").print_stats(25)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=f"only {QUICK_SIZES} groups")
    ap.add_argument("--sizes", type=int, nargs="+", help="numbers of groups (overrides --quick)")
    ap.add_argument("--repeat", type=int, default=3, help="best-of for the times")
    ap.add_argument("--profile", action="store_true", help="also profile metafast at q = 2, 2,000 groups")
    args = ap.parse_args()
    sizes = args.sizes or (QUICK_SIZES if args.quick else SIZES)
    has_rs, has_sm = available("mixedlm_rs"), available("statsmodels")
    if not has_rs:
        print(
            "mixedlm-rs is not installed: skipping the mixedlm-rs columns "
            "(pip install mixedlm-rs, or the extra: pip install metafast[peers])"
        )
    if not has_sm:
        print(
            "statsmodels is not installed: skipping the statsmodels columns "
            "(pip install statsmodels, or the extra: pip install metafast[peers])"
        )
    print(
        "| q | groups | metafast s | passes | mixedlm-rs s | ratio mf/rs | llf metafast | llf mixedlm-rs "
        "| rel. diff | statsmodels s | ratio mf/sm | rel. diff sm |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for q, rows in SHAPES:
        for n in sizes:
            frame = make_frame(n, q, rows)
            t_mf, (model, ll_mf) = timed(lambda: fit_metafast(frame, q), args.repeat)
            cells = [f"{q}", f"{n:,}", f"{t_mf:.3f}", f"{model.n_passes_}"]
            if has_rs:
                t_rs, (_, ll_rs) = timed(lambda: fit_mixedlm_rs(frame, q), args.repeat)
                cells += [
                    f"{t_rs:.3f}",
                    f"{t_mf / t_rs:.2f}",
                    f"{ll_mf:.6f}",
                    f"{ll_rs:.6f}",
                    f"{abs(ll_mf - ll_rs) / abs(ll_rs):.1e}",
                ]
            else:
                cells += ["-", "-", f"{ll_mf:.6f}", "-", "-"]
            if has_sm and n <= STATSMODELS_MAX_GROUPS:
                t_sm, (_, ll_sm) = timed(lambda: fit_statsmodels(frame, q), 1)
                cells += [f"{t_sm:.3f}", f"{t_mf / t_sm:.3f}", f"{abs(ll_mf - ll_sm) / abs(ll_sm):.1e}"]
            else:
                cells += ["-", "-", "-"]
            print("| " + " | ".join(cells) + " |", flush=True)
    if args.profile:
        profile_small()


if __name__ == "__main__":
    main()
