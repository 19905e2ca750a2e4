"""MetaGrad: gradient-based meta-learning (MAML, Meta-SGD, Reptile, ...) of basis weights.

``estimator`` holds the public class and its per-task regressor; ``_engine`` the inner loop,
exact meta-gradients and the optimiser.
"""

from metafast.learners.grad.estimator import GradTaskRegressor, MetaGrad

__all__ = ["MetaGrad", "GradTaskRegressor"]
