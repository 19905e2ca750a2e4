"""MetaBayes against statsmodels' MixedLM on a real panel: quality and fit time, in one run.

Data: statsmodels' bundled ``fertility`` table (World Bank fertility rate per country and year,
1960-2013; shipped inside the statsmodels package, nothing is downloaded).  One task per
country; countries are split by group (``mf.tasks.split_groups``): 80% train with every row,
20% test, each seen through K random years (its support) and scored on its other years.

Both models are the same hierarchical model on the same basis (Legendre polynomials of the
year, ``n_basis`` functions): y = Phi w + noise, w ~ N(mu, Sigma) per country.  MixedLM fits it
as fixed effects mu plus correlated random effects with covariance Sigma (ML, lbfgs); MetaBayes
by EM (``prior_weight=0``: plain ML, like MixedLM; and the default MAP shrinkage).  A new
country's prediction is the posterior mean given its K years, computed from each model's
fitted (mu, Sigma, sigma^2).  Reported: query MSE +- 95% CI over test countries, fit seconds
and the fit-time ratio.  Target (issue 12): MetaBayes's MSE within MixedLM's CI, >= 10x faster.

Run: python benchmarks/bench_mixedlm.py [--n-basis 4] [--shots 5 10] [--plot docs/real-data.png]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from _common import import_metafast  # noqa: E402

import_metafast()

import metafast as mf


def fertility_table():
    """The fertility panel as a long table (country, year, fertility): rows with a value, countries
    with at least 20 of them."""
    import statsmodels.api as sm

    wide = sm.datasets.fertility.load_pandas().data
    years = [c for c in wide.columns if c.isdigit()]
    long = wide.melt(id_vars=["Country Name"], value_vars=years, var_name="year", value_name="fertility")
    long = long.dropna().rename(columns={"Country Name": "country"})
    long["year"] = long["year"].astype(int)
    size = long.groupby("country")["year"].transform("size")
    return long[size >= 20].reset_index(drop=True)  # a handful of countries have a few years only


def posterior_predict(mu, Sigma, s2, Phi_s, y_s, Phi_q):
    """Predictive mean at Phi_q of w ~ N(mu, Sigma) given y_s = Phi_s w + N(0, s2 I)."""
    if Phi_s.shape[0] == 0:
        return Phi_q @ mu
    C = Phi_s @ Sigma @ Phi_s.T + s2 * np.eye(Phi_s.shape[0])
    return Phi_q @ mu + Phi_q @ Sigma @ Phi_s.T @ np.linalg.solve(C, y_s - Phi_s @ mu)


def mse_ci(per_task):
    per_task = np.asarray(per_task)
    return per_task.mean(), 1.96 * per_task.std(ddof=1) / np.sqrt(per_task.size)


def fit_mixedlm(train, basis):
    import statsmodels.api as sm

    Phi = basis.design(train.X_support)
    groups = np.repeat(np.arange(len(train)), train.support_sizes)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sm.MixedLM(train.y_support, Phi, groups, exog_re=Phi).fit(reml=False, method="lbfgs")
    seconds = time.perf_counter() - t0
    return seconds, np.asarray(res.fe_params), np.asarray(res.cov_re), float(res.scale)


def evaluate(params, basis, test):
    mu, Sigma, s2 = params
    errors = []
    for t in test:
        pred = posterior_predict(mu, Sigma, s2, basis.design(t.X_support), t.y_support, basis.design(t.X_query))
        errors.append(np.mean((pred - t.y_query) ** 2))
    return mse_ci(errors)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-basis", type=int, default=4)
    ap.add_argument("--shots", type=int, nargs="+", default=[3, 5, 10])
    ap.add_argument("--repeat", type=int, default=3, help="best-of for the fit times")
    ap.add_argument("--plot", metavar="PNG", help="also plot four test countries")
    args = ap.parse_args()
    try:
        table = fertility_table()
    except ImportError:
        print("statsmodels is not installed: skipping the MixedLM comparison (pip install statsmodels)")
        return
    whole = mf.tasks.from_frame(table, group="country", features="year", target="fertility", n_support=None)
    basis = mf.basis.make("polynomial", n_basis=args.n_basis).fit_tasks(whole)
    print(
        f"fertility panel: {len(whole)} countries, {whole.X_support.shape[0]} country-years; "
        f"basis: {args.n_basis} Legendre polynomials of the year"
    )
    print("| K | model | query MSE +- 95% CI | fit seconds | fit-time ratio |")
    print("|---|---|---|---|---|")
    for k in args.shots:
        train, test = mf.tasks.split_groups(whole, test_size=0.2, n_support=k, seed=0)
        t_lm, mu, Sigma, s2 = min((fit_mixedlm(train, basis) for _ in range(args.repeat)), key=lambda r: r[0])
        rows = [("statsmodels MixedLM (ML)", evaluate((mu, Sigma, s2), basis, test), t_lm)]
        for label, params in (("MetaBayes, prior_weight=0 (ML)", {"prior_weight": 0.0}), ("MetaBayes (default)", {})):
            best, model = np.inf, None
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                model = mf.MetaBayes(basis=basis, **params).fit(train)
                best = min(best, time.perf_counter() - t0)
            metrics = model.evaluate(test)
            rows.append((label, (metrics["mse"], metrics["mse_ci95"]), best))
        for label, (mse, ci), seconds in rows:
            print(
                f"| {k} | {label} | {mse:.4f} +- {ci:.4f} | {seconds:.3f} | {t_lm / seconds:.0f}x |"
                if "MetaBayes" in label
                else f"| {k} | {label} | {mse:.4f} +- {ci:.4f} | {seconds:.3f} | 1 |"
            )
    if args.plot:
        plot(whole, basis, args.plot)


def plot(whole, basis, path):
    """Four test countries: their K = 5 support years, the predictive mean and 90% band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train, test = mf.tasks.split_groups(whole, test_size=0.2, n_support=5, seed=0)
    model = mf.MetaBayes(basis=basis).fit(train)
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.2), sharey=True)
    grid = np.linspace(whole.X_support.min(), whole.X_support.max(), 200)[:, None]
    for ax, t in zip(axes, range(4)):
        task = test[t]
        mean, std = model.adapt(task.X_support, task.y_support).predict(grid, return_std=True)
        ax.fill_between(grid[:, 0], mean - 1.645 * std, mean + 1.645 * std, alpha=0.25, label="90% band")
        ax.plot(grid[:, 0], mean, label="predictive mean")
        ax.plot(task.X_query[:, 0], task.y_query, ".", color="0.5", ms=4, label="held-out years")
        ax.plot(task.X_support[:, 0], task.y_support, "o", color="k", label="5 known years")
        ax.set_title(str(test.info[t]["group"]))
        ax.set_xlabel("year")
    axes[0].set_ylabel("fertility (births per woman)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
