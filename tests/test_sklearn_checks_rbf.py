"""scikit-learn's estimator checks on the rbf / rff / relu families.

Every check passes (no expected failures).
"""

from sklearn.utils.estimator_checks import parametrize_with_checks

from metafast.basis.random_features import RFF, RandomReLU
from metafast.basis.rbf import RBF


@parametrize_with_checks(
    [RBF(n_basis=5), RBF(n_basis=6, centers="kmeans", ard=True), RFF(n_basis=8, ard=True), RandomReLU(n_basis=8)],
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
