"""Meta-learners: scikit-learn estimators that fit on tasks and adapt to a new task."""

from metafast.learners.bayes import BayesTaskRegressor, MetaBayes
from metafast.learners.ridge import BiasedRidgeRegressor, MetaRidge
from metafast.learners.selector import BasisSelector

__all__ = ["MetaBayes", "BayesTaskRegressor", "MetaRidge", "BiasedRidgeRegressor", "BasisSelector"]
