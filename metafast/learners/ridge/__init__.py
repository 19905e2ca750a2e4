"""MetaRidge: a meta-learned ridge bias (and metric) fitted in closed form across tasks.

``estimator`` holds the public class; ``_task`` the per-task BiasedRidgeRegressor, ``_source``
the in-process task passes, ``_learn`` the metric and basis fits, ``_math`` the GLS mean and
``_dask`` each pass summed on Dask workers.
"""

from metafast.learners.ridge._task import BiasedRidgeRegressor
from metafast.learners.ridge.estimator import MetaRidge

__all__ = ["MetaRidge", "BiasedRidgeRegressor"]
