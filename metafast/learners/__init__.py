"""Meta-learners: scikit-learn estimators that fit on tasks and adapt to a new task."""

from metafast.learners.ridge import BiasedRidgeRegressor, MetaRidge

__all__ = ["MetaRidge", "BiasedRidgeRegressor"]
