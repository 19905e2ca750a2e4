"""MetaClassifier's representation: the basis (chosen or given, standardised), the learned
metric in front of it, the normalisation after it; each function sets the learner's fitted
attributes (``basis_choice_``, ``cv_results_``, ``metric_choice_``, ...) as it goes."""

from __future__ import annotations

from metafast.learners.classify._chunks import split_codes
from metafast.tasks._taskset import TaskSet


def fit_representation(self, tasks: TaskSet):
    """The fitted basis_ of learner ``self`` on its first training chunk ``tasks``."""
    if self.learn_basis and (self.metric not in ("auto", "none") or self.normalize not in ("auto", "none")):
        raise ValueError(
            "learn_basis=True tunes the basis through its own parameters: it needs metric and "
            f"normalize 'auto' or 'none' (got metric={self.metric!r}, normalize={self.normalize!r})"
        )
    self.basis_ = fit_basis(self, tasks)
    if self.basis_.n_features_in_ == tasks.n_features and not self.learn_basis:
        learn_metric(self, tasks)
    self.normalize_ = self.normalize
    if self.normalize == "auto":  # measured: l2 helps episodes on average (docs/classification.md), but
        # not after a low-rank metric map (r axes on the unit sphere lose the radius)
        plain = getattr(self, "metric_eigenvalues_", None) is None
        self.normalize_ = "l2" if self.setting_ == "episodic" and not self.learn_basis and plain else "none"
    if self.normalize_ != "none":
        from metafast.learners.classify._normalize import normalize_basis

        self.basis_ = normalize_basis(self.basis_, tasks, self.normalize_)
    return self.basis_


def fit_basis(self, tasks: TaskSet):
    """The fitted basis: chosen from candidates (basis="auto"), or the given one, standardised
    when ``standardize`` and the learner fits it."""
    from sklearn.base import clone

    from metafast.basis import BasisFamily, make
    from metafast.basis.standardized import Standardized

    for attr in ("basis_choice_", "cv_results_"):
        self.__dict__.pop(attr, None)
    spec = "auto" if self.basis is None else self.basis
    if isinstance(spec, str) and spec == "auto":
        from metafast.learners.classify._auto_basis import choose_basis

        self.basis_choice_, chosen, self.cv_results_ = choose_basis(self, tasks, float(self.auto_budget))
        return clone(chosen).fit_tasks(tasks)
    if self.standardize and (
        isinstance(spec, str) or (isinstance(spec, BasisFamily) and not spec.__sklearn_is_fitted__())
    ):
        return Standardized(make(spec) if isinstance(spec, str) else clone(spec)).fit_tasks(tasks)
    return self._init_basis(tasks, default="linear")


def learn_metric(self, tasks: TaskSet) -> None:
    """metric="lda", or "auto" on episodes in process when a class-disjoint held-out split
    prefers it (``_metric.choose_metric``): put the discriminant map after the basis."""
    from metafast.learners.classify import _metric

    for attr in ("metric_eigenvalues_", "metric_choice_", "metric_scores_"):
        self.__dict__.pop(attr, None)
    episodic = self.setting_ == "episodic" and self.backend == "threads"
    if self.metric.startswith("lda") and not episodic:
        raise ValueError(f"metric={self.metric!r} needs episodic tasks fitted in process (backend='threads')")
    if self.metric == "none" or not episodic:
        return
    metric = self.metric
    if metric == "auto":
        metric, self.metric_scores_ = _metric.choose_metric(self, tasks)
        self.metric_choice_ = metric
        if metric == "none":
            return
    self.basis_, self.metric_eigenvalues_ = _metric.project_basis(
        self.basis_,
        tasks,
        lambda ts: split_codes("episodic", None, ts, self.max_classes),
        self.metric_rank,
        refine=metric == "lda-refined",
    )
