"""scikit-learn's estimator checks on the per-task regressors that ``adapt`` returns.

BiasedRidgeRegressor (MetaRidge.adapt) and BayesTaskRegressor (MetaBayes.adapt) pass every
check when given an unfitted basis, which they fit on X as a Pipeline would (``adapt`` passes
the meta-learned, fitted basis instead).  MixtureTaskRegressor is not checked here: its fitted
mixture prior fixes the width of the design, so it cannot be fitted on the checks' data of
varying feature counts; tests/test_mixture.py and tests/test_hardening.py cover it.
"""

from sklearn.utils.estimator_checks import parametrize_with_checks

import metafast as mf
from metafast.learners import BayesTaskRegressor
from metafast.learners.ridge.estimator import BiasedRidgeRegressor


def _basis():
    return mf.basis.make("rbf", n_basis=20, random_state=0)


@parametrize_with_checks([BiasedRidgeRegressor(basis=_basis()), BayesTaskRegressor(basis=_basis())])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
