"""MetaBayes: an empirical-Bayes Gaussian (or mixture) prior over the basis weights, fitted by EM.

``estimator`` holds the public class; the engine sits beside it: ``_em`` (E/M-step equations),
``_blocks`` (blocked E-step and worker chunk functions), ``_accel`` (SQUAREM), ``_predict``
(adapt / predict), ``_task`` (the per-task regressor) and ``mixture/`` (the mixture prior).
"""

from metafast.learners.bayes._task import BayesTaskRegressor
from metafast.learners.bayes.estimator import MetaBayes

__all__ = ["MetaBayes", "BayesTaskRegressor"]
