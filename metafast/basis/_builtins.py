"""Built-in basis families, registered through the same hook as plugins."""

from metafast.hookspecs import hookimpl


@hookimpl
def metafast_basis_families(register):
    from metafast.basis.random_features import RFF, RandomReLU
    from metafast.basis.rbf import RBF

    register("rbf", RBF)
    register("rff", RFF)
    register("relu", RandomReLU)
