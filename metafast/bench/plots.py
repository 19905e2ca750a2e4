"""Benchmark and demo plots (PNG).  matplotlib is optional: ``pip install "metafast[plot]"``.

Figures are drawn on matplotlib's object API with the Agg canvas (no pyplot global state, no
display needed).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from metafast.bench.baselines import PerTaskRidge, PooledRidge
from metafast.bench.runner import Results

INSTALL_HINT = 'pip install "metafast[plot]"'
_Z90 = 1.6448536269514722  # central 90% interval half-width in standard deviations


class PlotUnavailable(ImportError):
    """matplotlib is not installed; the message says how to get it."""


def _save(fig, path: str | Path) -> Path:
    """Write ``fig`` as PNG and return the file really written (matplotlib adds ".png" to a
    path without a suffix)."""
    from metafast.bench._files import atomic_write

    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(".png")
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))


def _figure(width: float, height: float):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise PlotUnavailable(f"plots need matplotlib, which is not installed: {INSTALL_HINT}") from exc
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _by_learner(rows: Sequence[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["learner"], []).append(r)
    return out


def _style(kind: str) -> dict:
    return {
        "learner": {"marker": "o"},
        "baseline": {"marker": "s", "linestyle": "--"},
        "oracle": {"marker": "", "linestyle": ":", "color": "black"},
    }.get(kind, {})


def plot_error_vs_shots(results: Results, path: str | Path, metric: str = "mse") -> Path:
    """One panel per task family: ``metric`` (95% CI error bars) against shots, a line per learner."""
    rows = [r for r in results.ok() if r.get(metric) is not None]
    families = list(dict.fromkeys(r["family"] for r in rows))
    fig = _figure(4.2 * max(len(families), 1) + 2.0, 3.6)
    axes = fig.subplots(1, max(len(families), 1), squeeze=False)[0]
    for ax, family in zip(axes, families):
        for label, lr in _by_learner([r for r in rows if r["family"] == family]).items():
            lr = sorted(lr, key=lambda r: r["shots"])
            if lr[0]["kind"] == "oracle" and metric == "mse" and all(r[metric] <= 0 for r in lr):
                continue  # a noise-free oracle has zero error: nothing to draw on a log axis
            ax.errorbar(
                [r["shots"] for r in lr],
                [r[metric] for r in lr],
                yerr=[r.get(metric + "_ci95") or 0.0 for r in lr],
                label=label,
                capsize=3,
                **_style(lr[0]["kind"]),
            )
        ax.set_title(family)
        ax.set_xticks(sorted({r["shots"] for r in rows if r["family"] == family}))
        ax.set_xlabel("shots K (support points per task)")
        ax.set_ylabel(f"query {metric.upper() if metric == 'mse' else metric} (95% CI)")
        if metric == "mse":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    labels: dict = {}  # one legend for all panels: a learner may be missing from some
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            labels.setdefault(label, handle)
    if labels:
        fig.legend(list(labels.values()), list(labels), loc="outside right center", fontsize="small")
    return _save(fig, path)


def plot_fit_time_vs_tasks(results: Results, path: str | Path) -> Path:
    """Meta-training seconds against the number of training tasks, a line per learner (log-log)."""
    rows = [r for r in results.ok() if r.get("fit_seconds") is not None and r["kind"] != "oracle"]
    fig = _figure(5.0, 3.8)
    ax = fig.subplots()
    for label, lr in _by_learner(rows).items():
        lr = sorted(lr, key=lambda r: r["n_train"])
        ax.plot(
            [r["n_train"] for r in lr], [max(r["fit_seconds"], 1e-6) for r in lr], label=label, **_style(lr[0]["kind"])
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training tasks")
    ax.set_ylabel("fit seconds")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_results(results: Results, out_dir: str | Path) -> list[Path]:
    """The plots that apply to a run: error against shots when several shots were run, fit time
    against tasks when several training-set sizes were."""
    out_dir = Path(out_dir)
    ok = results.ok()
    written = []
    for metric in ("mse", "accuracy"):
        rows = [r for r in ok if r.get(metric) is not None]
        if len({r["shots"] for r in rows}) > 1:
            written.append(plot_error_vs_shots(results, out_dir / f"{results.suite}_{metric}_vs_shots.png", metric))
    if any(r.get("history") for r in ok):
        written.append(plot_learning_curves(results, out_dir / f"{results.suite}_learning_curves.png"))
    if any(r.get("reliability") for r in ok):
        written.append(plot_reliability(results, out_dir / f"{results.suite}_reliability.png"))
    if len({r["n_train"] for r in ok}) > 1:
        written.append(plot_fit_time_vs_tasks(results, out_dir / f"{results.suite}_fit_time_vs_tasks.png"))
    return written


def plot_learning_curves(results: Results, path: str | Path) -> Path:
    """Training (dashed) and validation (solid) meta-loss against meta-iterations, one panel per
    family (rows) and shot count (columns), a colour per learner that recorded ``history_``."""
    rows = [r for r in results.ok() if r.get("history")]
    families = list(dict.fromkeys(r["family"] for r in rows))
    shots = sorted({r["shots"] for r in rows})
    fig = _figure(3.4 * max(len(shots), 1) + 1.5, 2.8 * max(len(families), 1))
    axes = fig.subplots(max(len(families), 1), max(len(shots), 1), squeeze=False)
    colours: dict = {}
    for i, family in enumerate(families):
        for j, k in enumerate(shots):
            ax = axes[i][j]
            for r in (r for r in rows if r["family"] == family and r["shots"] == k):
                h = r["history"]
                c = colours.setdefault(r["learner"], f"C{len(colours) % 10}")
                it = np.asarray(h["iteration"], dtype=float)
                for key, style in (("val_loss", "-"), ("train_loss", "--")):
                    y = np.array([np.nan if v is None else v for v in h[key]], dtype=float)
                    ax.plot(
                        it,
                        y,
                        style,
                        color=c,
                        alpha=1.0 if style == "-" else 0.5,
                        label=r["learner"] if style == "-" else None,
                    )
            ax.set_title(f"{family}, K={k}", fontsize="medium")
            ax.set_yscale("log")
            ax.set_xlabel("meta-iteration")
            ax.set_ylabel("meta-loss (MSE)")
            ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(
        handles, labels, loc="outside right upper", fontsize="small", title="solid: validation\ndashed: training"
    )
    return _save(fig, path)


def plot_reliability(results: Results, path: str | Path) -> Path:
    """Reliability diagrams (accuracy against confidence of the top class, 15 bins; marker area
    proportional to the bin's count): one panel per (family, shots), one line per classifier."""
    rows = [r for r in results.ok() if r.get("reliability")]
    panels = sorted({(r["family"], r["shots"]) for r in rows}, key=str)
    cols = min(3, len(panels))
    n_rows = -(-len(panels) // cols)
    fig = _figure(4.0 * cols, 3.6 * n_rows)
    axes = fig.subplots(n_rows, cols, squeeze=False).ravel()
    for ax, (family, shots) in zip(axes, panels):
        ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls=":")
        for r in rows:
            if (r["family"], r["shots"]) != (family, shots):
                continue
            rel = r["reliability"]
            count = np.asarray(rel["count"], dtype=float)
            ax.plot(rel["confidence"], rel["accuracy"], marker="o", ms=3, label=r["learner"])
            ax.scatter(rel["confidence"], rel["accuracy"], s=60 * count / count.max(), alpha=0.3)
        ax.set_title(f"{family}, K={shots}", fontsize="medium")
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(fontsize="x-small")
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    return _save(fig, path)


def plot_task_fits(
    tasks, models: dict, path: str | Path, truth=None, task_ids: Sequence[int] = (0, 1, 2, 3), title: str = ""
) -> Path:
    """Few-shot fits on a few test tasks (1-D inputs): support points, the true curve, each
    model's adapted mean (dashed for the baselines) and, for Bayesian models, the 90% predictive
    band.

    ``models`` maps a label to a fitted meta-learner; ``truth(task_index, X)`` gives the
    noise-free curve (or None).
    """
    task_ids = [i for i in task_ids if i < len(tasks)]
    fig = _figure(3.4 * len(task_ids), 3.6)
    axes = fig.subplots(1, len(task_ids), squeeze=False, sharey=False)[0]
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    X_all = np.concatenate([tasks.X_support[:, 0], tasks.X_query[:, 0]])  # the family's input domain
    grid = np.linspace(X_all.min(), X_all.max(), 300)[:, None]
    for ax, i in zip(axes, task_ids):
        t = tasks[i]
        if truth is not None:
            y_true = truth(i, grid)
            if y_true is not None:
                ax.plot(grid[:, 0], y_true, color="black", linewidth=1.2, label="true function")
        for color, (label, model) in zip(colors, models.items()):
            learner = model.adapt(t.X_support, t.y_support)
            if getattr(model, "_bayesian", False):
                mean, std = learner.predict(grid, return_std=True)
                ax.fill_between(
                    grid[:, 0], mean - _Z90 * std, mean + _Z90 * std, color=color, alpha=0.2, label=f"{label} 90% band"
                )
            else:
                mean = learner.predict(grid)
            ax.plot(
                grid[:, 0],
                mean,
                color=color,
                label=f"{label} mean",
                linestyle="--" if isinstance(model, (PerTaskRidge, PooledRidge)) else "-",
            )
        ax.scatter(t.X_support[:, 0], t.y_support, color="black", zorder=5, s=22, label="support points")
        ax.set_title(f"test task {i} (K={t.n_support})")
        ax.set_xlabel("x")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 6), fontsize="small")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_selected_frequencies(
    selector,
    path: str | Path,
    bands: Sequence[tuple[float, float]] = (),
    title: str = "frequencies chosen by BasisSelector",
) -> Path:
    """Importance of every frequency of a fitted BasisSelector on a Fourier dictionary (the
    larger score of its cosine and sine), the selected ones highlighted; ``bands`` (lo, hi) are
    shaded, e.g. the frequency ranges the tasks were drawn from."""
    basis = getattr(selector, "basis_", None)
    if basis is None or not hasattr(basis, "frequencies_") or basis.lattice_vectors_ is not None:
        raise TypeError(
            "plot_selected_frequencies needs a BasisSelector fitted on an additive "
            "Fourier dictionary (mf.basis.make('fourier', frequencies=...))"
        )
    freqs = np.asarray(basis.frequencies_)
    c = 1 if basis.include_constant else 0
    cols = np.arange(basis.n_basis)
    pair = np.where(cols >= c, (cols - c) // 2, -1)
    score = np.zeros(freqs.size)
    chosen = np.zeros(freqs.size, dtype=bool)
    selected = set(int(j) for j in selector.support_)
    top = float(np.max(selector.scores_)) or 1.0
    for j in cols[cols >= c]:
        score[pair[j]] = max(score[pair[j]], selector.scores_[j] / top)
        chosen[pair[j]] |= j in selected
    fig = _figure(8, 3.2)
    ax = fig.add_subplot(1, 1, 1)
    for lo, hi in bands:
        ax.axvspan(lo, hi, color="tab:green", alpha=0.15, lw=0)
    ax.vlines(freqs[~chosen], 0, score[~chosen], color="0.6", lw=1.2, label="not selected")
    ax.vlines(freqs[chosen], 0, score[chosen], color="tab:red", lw=2.0, label="selected")
    ax.set_xlabel("angular frequency")
    ax.set_ylabel("relative importance")
    ax.set_title(f"{title} ({int(chosen.sum())} of {freqs.size} frequencies)")
    ax.legend(loc="upper right", frameon=False)
    return _save(fig, path)
