"""The allow-list of classes a model file may rebuild: metafast's own, registered through the
``metafast_model_types`` hook like a plugin's (this module is a built-in plugin).

metafast's rule: every scikit-learn estimator defined in a metafast module (meta-learners, the
per-task regressors and classifiers ``adapt`` returns, basis families) and every class that
carries the pickle guard (``metafast._pickle.VersionTagged``), plus the fitted-state helpers
listed in ``_helpers`` (priors, heads, optimiser states).  A class is registered under
``module.qualname``; a plugin registers its own classes the same way (see ``hookspecs``).
A class missing here makes ``save_model`` fail loudly, never fall back to something unsafe.
"""

from __future__ import annotations

import sys

from sklearn.base import BaseEstimator

from metafast._pickle import VersionTagged
from metafast.hookspecs import hookimpl
from metafast.plugins import get_host, set_validator

KIND = "model type"

#: top-level packages whose classes a plugin may not declare (skops decides about those)
_FOREIGN_PACKAGES = frozenset(
    {
        "builtins",
        "numpy",
        "scipy",
        "sklearn",
        "skops",
        "pandas",
        "joblib",
        "dask",
        "distributed",
        "pluggy",
        "threadpoolctl",
    }
)


def type_name(cls: type) -> str:
    """The name a class is registered under: ``module.qualname``."""
    return f"{cls.__module__}.{cls.__qualname__}"


def check_model_type(obj) -> None:
    """Validator of ``metafast_model_types`` registrations: a class of the plugin's own code."""
    if not isinstance(obj, type):
        raise TypeError(f"got a {type(obj).__name__}, not a class")
    top = (obj.__module__ or "").split(".")[0]
    if top in _FOREIGN_PACKAGES or top in sys.stdlib_module_names:
        raise TypeError(
            f"{type_name(obj)} belongs to {top!r}, not to the plugin: declare only your own "
            "classes (scikit-learn objects are stored with skops)"
        )


set_validator(KIND, check_model_type)


def _helpers() -> list[type]:
    """Fitted-state helpers that are neither estimators nor version-tagged."""
    from metafast.basis.union import ColumnOrigin
    from metafast.learners._prior import GaussianPrior
    from metafast.learners.bayes._em import Stats
    from metafast.learners.bayes._whiten import WhiteningMap
    from metafast.learners.bayes.mixture._em import _Params
    from metafast.learners.classify._logistic import (
        ClassPrior,
        LaplaceFit,
        LogisticEM,
        LogisticHead,
    )
    from metafast.learners.classify._prototype import PrototypeHead
    from metafast.learners.classify._ridge_head import RidgeHead
    from metafast.learners.grad._engine import Adam, MetaGradResult
    from metafast.tasks import Task, TaskSet

    return [
        ColumnOrigin,
        GaussianPrior,
        Stats,
        _Params,
        ClassPrior,
        LaplaceFit,
        LogisticEM,
        LogisticHead,
        PrototypeHead,
        RidgeHead,
        Adam,
        MetaGradResult,
        Task,
        TaskSet,
        WhiteningMap,
    ]


def _subclasses(base: type) -> list[type]:
    out, todo = [], [base]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in out:
                out.append(sub)
                todo.append(sub)
    return out


def builtin_types() -> list[type]:
    """metafast's classes on the allow-list (after importing every learner and family)."""
    import metafast.basis.bspline
    import metafast.basis.fourier
    import metafast.basis.linear
    import metafast.basis.mlp
    import metafast.basis.polynomial
    import metafast.basis.random_features
    import metafast.basis.rbf
    import metafast.basis.standardized
    import metafast.basis.task_models
    import metafast.learners  # noqa: F401

    found = [
        c for c in _subclasses(BaseEstimator) + _subclasses(VersionTagged) if c.__module__.split(".")[0] == "metafast"
    ]
    return list(dict.fromkeys(found + _helpers()))


@hookimpl
def metafast_model_types(register):
    for cls in builtin_types():
        register(type_name(cls), cls)


def allowed_types() -> dict[str, type]:
    """Registered name -> class, for every class model files may rebuild (built-in and plugins)."""
    registry = get_host().registry(KIND)
    return {name: registry.get(name) for name in registry.names()}
