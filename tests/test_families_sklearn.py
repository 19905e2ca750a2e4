"""scikit-learn's estimator checks on the kernel families (Fourier, Polynomial, BSpline).

Every check passes. TaskModels is not checked: it is fitted on a TaskSet, not on X.
"""

from sklearn.utils.estimator_checks import parametrize_with_checks

from metafast.basis.bspline import BSpline
from metafast.basis.fourier import Fourier
from metafast.basis.polynomial import Polynomial


@parametrize_with_checks(
    # BSpline with degree 1: the checks use up to 10 features and every feature needs
    # degree + 1 functions
    [
        Fourier(n_basis=9),
        Fourier(n_basis=9, multivariate="lattice"),
        Polynomial(n_basis=6),
        BSpline(n_basis=40, degree=1),
    ],
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
