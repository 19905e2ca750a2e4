"""BasisSelector: chooses which basis functions to keep from a dictionary, across tasks.

``estimator`` holds the public class; ``_solvers`` the group-lasso path, SOMP and ARD, ``_pack``
the packed per-task designs and ``_refit`` the empirical-Bayes scoring of a support.
"""

from metafast.learners.select.estimator import BasisSelector

__all__ = ["BasisSelector"]
