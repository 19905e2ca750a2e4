"""The classification part of ``metafast demo``: MetaClassifier heads on the ``logistic`` family.

Meta-trains every head on shared-label 3-class tasks in 2-D, compares them with per-task
LogisticRegression and the oracle that knows each task's weights, and draws the adapted class
regions of a few test tasks next to a reliability diagram.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HEADS = ("logistic", "ridge", "prototype")


def run(quick: bool = False, seed: int = 0, shots: int = 5):
    """(rows of (learner, metrics dict), fitted logistic MetaClassifier, test tasks)."""
    import metafast as mf
    from metafast.bench.baselines import OracleClassifier, PerEpisodeLogistic

    n_train, n_test = (300, 100) if quick else (1000, 300)
    train = mf.tasks.load("logistic", n_tasks=n_train, k_shot=shots, n_query=10, seed=seed)
    test = mf.tasks.load("logistic", n_tasks=n_test, k_shot=shots, n_query=10, seed=seed + 1)
    rows, models = [], {}
    for head in HEADS:
        clf = mf.MetaClassifier(basis=mf.basis.make("polynomial", n_basis=3), head=head, max_iter=30).fit(train)
        models[head] = clf
        rows.append((f"MetaClassifier ({head})", clf.evaluate(test)))
    rows.append(("per-task LogisticRegression", PerEpisodeLogistic().fit(train).evaluate(test)))
    rows.append(("oracle (true weights)", OracleClassifier().fit(train).evaluate(test)))
    return rows, models, test


def format_rows(rows) -> str:
    lines = [f"{'learner':<30} {'accuracy':>16} {'log loss':>9} {'ECE':>6}"]
    for name, s in rows:
        lines.append(f"{name:<30} {s['accuracy']:.3f} +- {s['accuracy_ci95']:.3f} {s['nll']:>9.3f} {s['ece']:>6.3f}")
    return "\n".join(lines)


def plot(models: dict, test, path: str | Path, task_ids=(0, 1, 2)) -> Path:
    """Adapted class regions (colour: predicted class, shade: its probability) of the logistic head
    on a few test tasks, with their support points, and the heads' reliability diagrams."""
    from metafast.bench.plots import _figure, _save

    fig = _figure(4.0 * (len(task_ids) + 1), 3.8)
    axes = fig.subplots(1, len(task_ids) + 1, squeeze=False)[0]
    g = np.linspace(-1, 1, 121)
    XX, YY = np.meshgrid(g, g)
    grid = np.column_stack([XX.ravel(), YY.ravel()])
    colours = np.array([[0.85, 0.33, 0.1], [0.0, 0.45, 0.74], [0.47, 0.67, 0.19]])
    clf = models["logistic"]
    for ax, t in zip(axes, task_ids):
        task = test[t]
        P = clf.adapt(task.X_support, task.y_support).predict_proba(grid)
        rgb = colours[P.argmax(axis=1) % 3] * P.max(axis=1)[:, None] + (1 - P.max(axis=1)[:, None])
        ax.imshow(rgb.reshape(121, 121, 3), extent=(-1, 1, -1, 1), origin="lower", alpha=0.8)
        ax.scatter(task.X_support[:, 0], task.X_support[:, 1], c=colours[task.y_support % 3], edgecolors="k", s=40)
        ax.set_title(f"test task {t}: {task.n_support} support points", fontsize="medium")
        ax.set_xticks([])
        ax.set_yticks([])
    ax = axes[-1]
    ax.plot([0, 1], [0, 1], color="0.6", ls=":", lw=1)
    for head, model in models.items():
        rel = model.reliability(test)
        ax.plot(rel["confidence"], rel["accuracy"], marker="o", ms=3, label=head)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title("reliability (test tasks)", fontsize="medium")
    ax.legend(fontsize="small")
    return _save(fig, path)
