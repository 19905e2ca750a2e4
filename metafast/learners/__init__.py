"""Meta-learners: scikit-learn estimators that fit on tasks and adapt to a new task."""

from metafast.learners.bayes import BayesTaskRegressor, MetaBayes
from metafast.learners.grad import GradTaskRegressor, MetaGrad
from metafast.learners.ridge import BiasedRidgeRegressor, MetaRidge
from metafast.learners.classifier import BasisClassifier, MetaClassifier
from metafast.learners.selector import BasisSelector

__all__ = ["MetaBayes", "BayesTaskRegressor", "MetaRidge", "BiasedRidgeRegressor", "MetaClassifier",
           "BasisClassifier", "MetaGrad", "GradTaskRegressor", "BasisSelector"]
