"""metafast: fast meta-learning of basis-function models.

Meta-learns, across many related tasks, which basis functions g_i to use and a prior over the
weights w of f_t(x) = sum_i w_{t,i} g_i(x), so that a new task is fit from a few points.
"""

from metafast import (
    _check_build,  # noqa: F401  (clear error when kernels are not built)
    basis,
    model_selection,
    plugins,  # the registry host; plugins themselves load lazily, on first use
    tasks,
)
from metafast._version import __version__
from metafast.hookspecs import hookimpl
from metafast.learners import BasisSelector, MetaBayes, MetaClassifier, MetaGrad, MetaRidge
from metafast.model_selection import TaskGridSearchCV

__all__ = [
    "__version__",
    "hookimpl",
    "basis",
    "tasks",
    "plugins",
    "MetaBayes",
    "MetaRidge",
    "MetaClassifier",
    "MetaGrad",
    "BasisSelector",
    "model_selection",
    "TaskGridSearchCV",
]
