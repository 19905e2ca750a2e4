"""Built-in basis families, registered through the same hook as plugins."""

from metafast.hookspecs import hookimpl


@hookimpl
def metafast_basis_families(register):
    from metafast.basis.bspline import BSpline
    from metafast.basis.fourier import Fourier
    from metafast.basis.linear import Linear
    from metafast.basis.mlp import MLP
    from metafast.basis.polynomial import Polynomial
    from metafast.basis.random_features import RFF, RandomReLU
    from metafast.basis.rbf import RBF
    from metafast.basis.task_models import TaskModels
    from metafast.basis.union import Union

    register("rbf", RBF)
    register("rff", RFF)
    register("linear", Linear)
    register("relu", RandomReLU)
    register("fourier", Fourier)
    register("polynomial", Polynomial)
    register("bspline", BSpline)
    register("task-models", TaskModels)
    register("mlp", MLP)
    register("union", Union)
