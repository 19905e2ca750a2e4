"""Meta-learners: scikit-learn estimators that fit on tasks and adapt to a new task.

One subpackage per learner family (``bayes``, ``ridge``, ``classify``, ``select``, ``grad``), each
with its public estimator in ``estimator.py`` and its engine beside it.  The modules here are
what several families share: ``_base`` (MetaLearner, task input, evaluation), ``_arrays`` (array
coercion), ``_prior`` (the Gaussian weight prior), ``_basis_opt`` (L-BFGS over a basis) and
``_chunks`` (``LocalChunks``, the in-process twin of ``metafast.distributed.DaskChunks``).
"""

from metafast.learners.bayes import BayesTaskRegressor, MetaBayes
from metafast.learners.classify import BasisClassifier, MetaClassifier
from metafast.learners.grad import GradTaskRegressor, MetaGrad
from metafast.learners.ridge import BiasedRidgeRegressor, MetaRidge
from metafast.learners.select import BasisSelector

__all__ = [
    "MetaBayes",
    "BayesTaskRegressor",
    "MetaRidge",
    "BiasedRidgeRegressor",
    "MetaClassifier",
    "BasisClassifier",
    "MetaGrad",
    "GradTaskRegressor",
    "BasisSelector",
]
