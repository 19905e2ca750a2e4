"""Mixture-of-Gaussians weight prior: few-shot accuracy and meta-fit speed against plain numpy.

Two task families, each with a matching fixed basis:

- ``harmonic`` (Lacoste et al. 2018): y = a1 sin(w x + b1) + a2 sin(2 w x + b2), w ~ U[5, 7],
  a ~ N(0, 1), b ~ U[0, 2 pi], x = mu_x + N(0, 1), mu_x ~ U[-4, 4]; 60-function Fourier basis
  (cos and sin at 15 frequencies in 4.6-7.4 and 15 in 9.2-14.8).
- ``multimodal``: each task is a sine, a line, a quadratic, a cubic or a tanh step, x ~ U[-5, 5];
  a mixed basis (cubic polynomial, sin x, cos x, 20 Gaussian bumps).

For each: meta-fit on 1,500 training tasks of 20 points with C = 1 and C > 1 (30 EM iterations),
then query MSE on test tasks given K = 5, 10, 20 support points.  Speed: the same EM written in
plain batched numpy (primal form, einsum + inv, vectorised over tasks) is timed on a few
iterations and extrapolated linearly to the same number of iterations (said in the output).

Uses ``mf.tasks.load("harmonic"/"multimodal")`` and ``mf.basis.make("fourier", ...)`` when they
exist, and generates tasks / builds the designs in numpy otherwise.

    python benchmarks/bench_mixture.py            # full run (a few minutes)
    python benchmarks/bench_mixture.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from _common import import_metafast  # noqa: E402

import_metafast()  # the installed metafast, else this checkout (built in place)

import metafast as mf
from metafast.learners.bayes.mixture._em import _EM
from metafast.learners.bayes.mixture.prior import MixturePrior
from metafast.parallel import one_blas_thread
from metafast.tasks import TaskSet

HARMONIC_FREQS = np.concatenate([np.linspace(4.6, 7.4, 15), np.linspace(9.2, 14.8, 15)])


# ------------------------------------------------------------------------------------ task families
def harmonic_tasks(n_tasks, n_support, n_query, seed):
    try:
        return mf.tasks.load("harmonic", n_tasks=n_tasks, n_support=n_support, n_query=n_query, seed=seed)
    except Exception:
        pass
    rng = np.random.default_rng(seed)
    w = rng.uniform(5, 7, n_tasks)[:, None]
    a1, a2 = rng.normal(size=(2, n_tasks, 1))
    b1, b2 = rng.uniform(0, 2 * np.pi, size=(2, n_tasks, 1))
    mu_x = rng.uniform(-4, 4, n_tasks)[:, None]
    X = mu_x + rng.normal(size=(n_tasks, n_support + n_query))
    Y = a1 * np.sin(w * X + b1) + a2 * np.sin(2 * w * X + b2)
    return _pack(X, Y, n_support)


def multimodal_tasks(n_tasks, n_support, n_query, seed):
    try:
        return mf.tasks.load("multimodal", n_tasks=n_tasks, n_support=n_support, n_query=n_query, seed=seed)
    except Exception:
        pass
    rng = np.random.default_rng(seed)
    X = rng.uniform(-5, 5, size=(n_tasks, n_support + n_query))
    kind = rng.integers(0, 5, n_tasks)[:, None]
    A, phi = rng.uniform(0.1, 5, (n_tasks, 1)), rng.uniform(0, np.pi, (n_tasks, 1))
    a, b, c = rng.uniform(-3, 3, size=(3, n_tasks, 1))
    sine = A * np.sin(X - phi)
    line = a * X + b
    quad = 0.2 * a * (X - c) ** 2 + b
    cubic = 0.02 * a * X**3 + 0.1 * b * X**2 + c
    step = A * np.tanh(X - c) + b
    Y = np.select([kind == 0, kind == 1, kind == 2, kind == 3], [sine, line, quad, cubic], step)
    return _pack(X, Y + 0.05 * rng.normal(size=Y.shape), n_support)


def _pack(X, Y, n_support):
    T, n = X.shape
    off_s = np.arange(T + 1, dtype=np.int64) * n_support
    off_q = np.arange(T + 1, dtype=np.int64) * (n - n_support)
    return TaskSet(
        X[:, :n_support].reshape(-1, 1),
        Y[:, :n_support].ravel(),
        off_s,
        X[:, n_support:].reshape(-1, 1),
        Y[:, n_support:].ravel(),
        off_q,
    )


# ------------------------------------------------------------------------------------ designs
def fourier_design():
    try:
        B = mf.basis.make(
            "fourier", n_basis=2 * len(HARMONIC_FREQS), frequencies=HARMONIC_FREQS, include_constant=False
        ).fit(np.array([[-8.0], [8.0]]))
        print("design: mf.basis.make('fourier', ...)")
        return B.design
    except Exception:
        pass

    print("design: numpy Fourier features (mf.basis.make('fourier', frequencies=...) unavailable)")

    def design(X):
        x = np.asarray(X, dtype=np.float64)[:, :1]
        arg = x * HARMONIC_FREQS[None, :]
        return np.ascontiguousarray(np.concatenate([np.cos(arg), np.sin(arg)], axis=1))

    return design


def mixed_design():
    centers = np.linspace(-5, 5, 20)

    def design(X):
        x = np.asarray(X, dtype=np.float64)[:, :1]
        poly = np.concatenate([np.ones_like(x), x / 5, (x / 5) ** 2, (x / 5) ** 3], axis=1)
        bumps = np.exp(-0.5 * (x - centers[None, :]) ** 2)
        return np.ascontiguousarray(np.concatenate([poly, np.sin(x), np.cos(x), bumps], axis=1))

    return design


# ------------------------------------------------------------------------------------ numpy reference
def numpy_em(Phi3, Y, n_comp, n_iter, seed):
    """The same EM in plain batched numpy (primal m x m form, einsum + inv, vectorised over tasks).

    Phi3 (T, n, m), Y (T, n).  Initialised by k-means on per-task ridge solutions."""
    from sklearn.cluster import KMeans

    T, n, m = Phi3.shape
    H = np.einsum("tnm,tnk->tmk", Phi3, Phi3)
    b = np.einsum("tnm,tn->tm", Phi3, Y)
    yy = np.einsum("tn,tn->t", Y, Y)
    W = np.linalg.solve(H + 1e-2 * np.eye(m), b[..., None])[..., 0]
    labels = KMeans(n_comp, n_init=1, random_state=seed).fit(W).labels_ if n_comp > 1 else np.zeros(T, int)
    pi = np.bincount(labels, minlength=n_comp) / T
    mu = np.stack([W[labels == c].mean(0) for c in range(n_comp)])
    Sig = np.stack([np.cov(W.T) + 1e-3 * np.eye(m)] * n_comp)
    s2 = 0.1 * Y.var()
    history = []
    for _ in range(n_iter):
        ll = np.empty((T, n_comp))
        Ms, Ss = [], []
        for c in range(n_comp):
            Sinv = np.linalg.inv(Sig[c])
            A = Sinv[None] + H / s2
            S = np.linalg.inv(A)
            mt = np.einsum("tij,tj->ti", S, (Sinv @ mu[c])[None] + b / s2)
            resid = yy - 2 * np.einsum("tm,tm->t", b, mt) + np.einsum("ti,tij,tj->t", mt, H, mt)
            dm = mt - mu[c]
            quad = np.einsum("ti,ij,tj->t", dm, Sinv, dm)
            ll[:, c] = -0.5 * (
                resid / s2 + quad + np.linalg.slogdet(A)[1] + np.linalg.slogdet(Sig[c])[1] + n * np.log(2 * np.pi * s2)
            )
            Ms.append(mt)
            Ss.append(S)
        lw = ll + np.log(pi)
        mx = lw.max(1, keepdims=True)
        lev = mx[:, 0] + np.log(np.exp(lw - mx).sum(1))
        history.append(lev.sum())
        R = np.exp(lw - lev[:, None])
        Nc = R.sum(0)
        noise = 0.0
        for c in range(n_comp):
            mt, S = Ms[c], Ss[c]
            mu[c] = R[:, c] @ mt / Nc[c]
            dm = mt - mu[c]
            Sig[c] = (np.einsum("t,tij->ij", R[:, c], S) + np.einsum("t,ti,tj->ij", R[:, c], dm, dm)) / Nc[c]
            resid = yy - 2 * np.einsum("tm,tm->t", b, mt) + np.einsum("ti,tij,tj->t", mt, H, mt)
            noise += R[:, c] @ (resid + np.einsum("tij,tji->t", H, S))
        pi = Nc / T
        s2 = noise / (T * n)
    return history


# ------------------------------------------------------------------------------------ run
def evaluate(prior, design, tasks):
    Phi_s, Phi_q = design(tasks.X_support), design(tasks.X_query)
    mean, _ = prior.predict_tasks(Phi_s, tasks.y_support, tasks.support_offsets, Phi_q, tasks.query_offsets)
    err = (mean - tasks.y_query) ** 2
    per_task = np.add.reduceat(err, tasks.query_offsets[:-1]) / np.diff(tasks.query_offsets)
    return float(per_task.mean()), float(1.96 * per_task.std(ddof=1) / np.sqrt(len(per_task)))


def run_family(name, make_tasks, design, components, args):
    train = make_tasks(args.n_train, 20, 0, seed=1)
    Phi = design(train.X_support)
    print(
        f"\n== {name}: {args.n_train} training tasks x 20 points, m = {Phi.shape[1]}, "
        f"{args.iters} EM iterations, n_threads = {args.n_threads}, prior_weight = {args.prior_weight}"
    )
    fits = {}
    for C in components:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            prior = MixturePrior(
                n_components=C,
                max_iter=args.iters,
                tol=0.0,
                n_init=args.n_init,
                random_state=0,
                n_threads=args.n_threads,
                prior_weight=args.prior_weight,
            ).fit(Phi, train.y_support, train.support_offsets)
        fits[C] = (prior, time.perf_counter() - t0)
    print(f"{'K':>4} " + " ".join(f"{'MSE C=' + str(C):>18}" for C in components))
    for K in (5, 10, 20):
        test = make_tasks(args.n_test, K, 50, seed=100 + K)
        cells = [evaluate(fits[C][0], design, test) for C in components]
        print(f"{K:>4} " + " ".join(f"{m:>9.4f} +- {ci:<6.4f}" for m, ci in cells))
    for C in components:
        prior, secs = fits[C]
        print(
            f"meta-fit C={C}: {secs:.2f} s ({prior.n_iter_} iterations after init, "
            f"{prior.n_components_} components, weights {np.round(prior.weights_, 3)})"
        )
    # numpy reference, timed on fewer iterations and tasks, extrapolated linearly
    C = components[-1]
    T_ref = min(args.n_train, args.ref_tasks)
    n_it = min(args.ref_iters, args.iters)
    Phi3 = Phi[: T_ref * 20].reshape(T_ref, 20, -1)
    Y = train.y_support[: T_ref * 20].reshape(T_ref, 20)
    t0 = time.perf_counter()
    numpy_em(Phi3, Y, C, n_it, seed=0)
    secs = time.perf_counter() - t0
    est = secs * (args.iters / n_it) * (args.n_train / T_ref)
    print(
        f"numpy reference EM C={C}: {secs:.2f} s for {n_it} iterations on {T_ref} tasks -> "
        f"extrapolated linearly to {args.iters} iterations on {args.n_train} tasks: {est:.1f} s"
    )
    print(
        f"speed ratio (numpy reference / metafast meta-fit, C={C}): {est / fits[C][1]:.1f}x  "
        f"(the meta-fit includes the single-Gaussian start and {args.n_init} restarts)"
    )
    # per EM iteration, same work on both sides: one E-step + M-step from the fitted parameters
    prior = fits[C][0]
    em = _EM(
        np.ascontiguousarray(Phi / prior._col_scale),
        train.y_support / prior._y_scale,
        train.support_offsets,
        "full",
        prior.n_threads_,
    )
    t0 = time.perf_counter()
    with one_blas_thread(None):
        em.run(prior._params, 3, 0.0)
    per_iter = (time.perf_counter() - t0) / 3
    print(
        f"per EM iteration: metafast {per_iter * 1e3:.0f} ms, numpy reference "
        f"{secs / n_it * args.n_train / T_ref * 1e3:.0f} ms -> {secs / n_it * args.n_train / T_ref / per_iter:.1f}x"
    )
    return fits


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small smoke run")
    ap.add_argument("--n-train", type=int, default=1500)
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--n-init", type=int, default=3)
    ap.add_argument("--ref-iters", type=int, default=3, help="numpy reference iterations actually run")
    ap.add_argument("--ref-tasks", type=int, default=1500, help="numpy reference tasks actually used")
    ap.add_argument("--n-threads", type=int, default=None)
    ap.add_argument(
        "--prior-weight",
        type=float,
        default=1.0,
        help="MixturePrior prior_weight (covariance shrinkage, in pseudo-tasks; 0 = plain ML)",
    )
    ap.add_argument("--family", choices=["harmonic", "multimodal", "both"], default="both")
    args = ap.parse_args(argv)
    if args.quick:
        args.n_train, args.n_test, args.iters, args.ref_iters = 300, 100, 10, 2
    if args.family in ("harmonic", "both"):
        run_family("harmonic", harmonic_tasks, fourier_design(), (1, 6), args)
    if args.family in ("multimodal", "both"):
        run_family("multimodal", multimodal_tasks, mixed_design(), (1, 5), args)


if __name__ == "__main__":
    main()
