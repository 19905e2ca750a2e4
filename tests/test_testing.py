"""metafast.testing: the conformance checks pass on good families/loaders and catch each defect."""

from __future__ import annotations

import re

import numpy as np
import pytest

import metafast as mf
from metafast.basis.rbf import RBF
from metafast.testing import (
    basis_family_checks,
    check_basis_family,
    check_task_loader,
    task_loader_checks,
)


class Cubes(mf.basis.BasisFamily):
    """A correct family with one learnable parameter: g_j(x) = (s * x_0 - j)^3, s = exp(log_s)."""

    def __init__(self, n_basis=4, scale=1.0):
        self.n_basis = n_basis
        self.scale = scale

    def fit(self, X, y=None):
        self.scale_ = float(self.scale)
        return self

    def design(self, X):
        return (self.scale_ * X[:, :1] - np.arange(self.n_basis, dtype=X.dtype)) ** 3

    def learnable_params(self):
        return {"log_scale": np.array([np.log(self.scale_)])}

    def with_params(self, **params):
        new = super().with_params(**params)
        if "log_scale" in params:
            new.scale_ = float(np.exp(params["log_scale"][0]))
        return new

    def design_vjp(self, X, G):
        X = self._check_input(X)
        j = np.arange(self.n_basis)
        dPhi_ds = 3 * (self.scale_ * X[:, :1] - j) ** 2 * X[:, :1]
        return {"log_scale": np.array([np.sum(G * dPhi_ds) * self.scale_])}


class NoNBasis(Cubes):
    def __init__(self, scale=1.0):
        self.scale = scale
        self.n_basis = 4  # not a constructor parameter


class AltersParams(Cubes):
    def __init__(self, n_basis=4, scale=1.0):
        self.n_basis = n_basis
        self.scale = [scale]  # sklearn's clone refuses this


class NaNs(Cubes):
    def design(self, X):
        out = (X[:, :1] - np.arange(self.n_basis, dtype=X.dtype)) ** 3
        out[0, 0] = np.nan
        return out


class Float32Sloppy(Cubes):
    def design(self, X):  # float32 input computed in float16: too imprecise even for float32
        low = X.astype(np.float16) if X.dtype == np.float32 else X
        return super().design.__wrapped__(self, low).astype(X.dtype)


class ColumnCentred(Cubes):
    def design(self, X):  # depends on the other rows
        return (X[:, :1] - X[:, :1].sum() / max(len(X), 1) - np.arange(self.n_basis, dtype=X.dtype)) ** 3


class WrongSum(Cubes):
    def weighted_sum(self, X, w):
        return super().weighted_sum(X, w) + 1e-3


class Random(Cubes):
    def fit(self, X, y=None):
        self.scale_ = float(np.random.default_rng().uniform(0.5, 2))
        return self


class Unpicklable(Cubes):
    def fit(self, X, y=None):
        super().fit.__wrapped__(self, X)
        self.hook_ = lambda v: v
        return self


class Unchecked(Cubes):
    def transform(self, X):
        return self.design(X)

    def weighted_sum(self, X, w):  # skips the base validation: any w length "works"
        Phi = self.design(X)
        w = np.resize(np.asarray(w, dtype=float), self.n_basis)
        return Phi @ w


class WrongGradient(Cubes):
    def design_vjp(self, X, G):
        grads = super().design_vjp(X, G)
        return {"log_scale": 2 * grads["log_scale"]}


def test_good_families_pass():
    check_basis_family(Cubes(n_basis=5, scale=0.7))
    check_basis_family(RBF, n_features=(2,))
    check_basis_family(RBF(n_basis=6), X=np.linspace(0, 10, 12)[:, None])
    names = [name for name, _ in basis_family_checks(Cubes())]
    assert "check_family_weighted_sum" in names and len(names) == len(set(names))


@pytest.mark.parametrize(
    "family, check, message",
    [
        (NoNBasis(), "check_family_params", "no n_basis constructor parameter"),
        (Cubes(n_basis=0), "check_family_params", "n_basis must be a positive integer"),
        (AltersParams(), "check_family_params", "clone failed"),
        (NaNs(), "check_family_design", "NaN or inf"),
        (Float32Sloppy(), "check_family_design", "float32 design differs"),
        (ColumnCentred(), "check_family_rows_independent", "design(X[rows]) differs"),
        (WrongSum(), "check_family_weighted_sum", "weighted_sum(X, w) != design(X) @ w"),
        (Random(), "check_family_deterministic", "different designs"),
        (Unpicklable(), "check_family_pickle_clone", "does not pickle"),
        (Unchecked(), "check_family_bad_input", "wrong length: no error"),
        (WrongGradient(), "check_family_learnable_params", "disagrees with finite differences"),
    ],
    ids=[
        "no_n_basis",
        "n_basis_0",
        "alters_params",
        "nans",
        "float32",
        "rows",
        "weighted_sum",
        "random",
        "pickle",
        "unchecked",
        "gradient",
    ],
)
def test_each_defect_is_caught_by_its_check(family, check, message):
    with pytest.raises(AssertionError, match=rf"\[{check}\] .*{re.escape(message)}"):
        dict(basis_family_checks(family))[check]()
    with pytest.raises(AssertionError):  # and the whole suite fails (maybe at an earlier check)
        check_basis_family(family)


def test_skip_and_bad_arguments():
    check_basis_family(
        Random(),
        skip={
            "check_family_deterministic",
            "check_family_design",
            "check_family_pickle_clone",
            "check_family_learnable_params",
        },
    )
    with pytest.raises(ValueError, match="unknown checks"):
        check_basis_family(Cubes(), skip={"check_nothing"})
    with pytest.raises(TypeError, match="BasisFamily"):
        check_basis_family(object())


# ---------------------------------------------------------------------------------- loaders
def _validated(n_tasks, n_support, n_query):
    for name, v, low in (("n_tasks", n_tasks, 1), ("n_support", n_support, 1), ("n_query", n_query, 0)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"argument {name!r} must be an integer")
        if v < low:
            raise ValueError(f"argument {name!r} must be >= {low}")


def good_loader(n_tasks=3, n_support=2, n_query=2, seed=0):
    _validated(n_tasks, n_support, n_query)
    return mf.tasks.load("sinusoid", n_tasks=n_tasks, n_support=n_support, n_query=n_query, seed=seed)


def ignores_n_support(n_tasks=3, n_support=2, n_query=2, seed=0):
    return good_loader(n_tasks, 4, n_query, seed)


def unseeded(n_tasks=3, n_support=2, n_query=2, seed=None):
    return good_loader(n_tasks, n_support, n_query, np.random.default_rng().integers(1 << 30))


def returns_list(n_tasks=3, n_support=2, n_query=2, seed=0):
    ts = good_loader(n_tasks, n_support, n_query, seed)
    return [ts[i] for i in range(len(ts))]


def unvalidated(n_tasks=3, n_support=2, n_query=2, seed=0):
    return mf.tasks.load("sinusoid", n_tasks=max(int(n_tasks), 1), n_support=2, n_query=2, seed=seed)


def streams(n_tasks=4, n_support=2, n_query=2, seed=0):
    _validated(n_tasks, n_support, n_query)
    ts = good_loader(n_tasks, n_support, n_query, seed)
    yield ts[:2]
    yield ts[2:]


def test_good_loaders_pass():
    check_task_loader(good_loader, n_tasks=3, n_support=2, n_query=1, seed=4)
    check_task_loader("sinusoid", n_tasks=3, n_support=2, n_query=1, seed=0)
    check_task_loader(streams, n_tasks=4, n_support=2, n_query=2)
    assert len(task_loader_checks(good_loader)) == 5


@pytest.mark.parametrize(
    "loader, check, message",
    [
        (ignores_n_support, "check_loader_sizes", r"asked for n_support=2, got support_sizes \[4\]"),
        (unseeded, "check_loader_deterministic", "different tasks"),
        (returns_list, "check_loader_returns_taskset", "returned a list, not a TaskSet"),
        (unvalidated, "check_loader_bad_input", "n_tasks=0 raised no error"),
    ],
    ids=["sizes", "deterministic", "returns", "bad_input"],
)
def test_each_loader_defect_is_caught(loader, check, message):
    with pytest.raises(AssertionError, match=rf"\[{check}\] .*{message}"):
        check_task_loader(loader, n_tasks=3, n_support=2, n_query=2)
