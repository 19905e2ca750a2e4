"""The conformance checks of a basis family (``check_basis_family``, ``basis_family_checks``):
one short check per clause of the BasisFamily contract, each failing with a message naming the
check, the family and what is wrong."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from metafast.basis._base import ROW_BLOCK, BasisFamily, NonFiniteDesignError


# ================================================================================== basis families
class _FamilyCase:
    """The family under test plus the data it is checked on."""

    def __init__(self, family: BasisFamily | type, X: Any, n_features: Iterable[int], seed: int):
        if isinstance(family, type):
            if not issubclass(family, BasisFamily):
                raise TypeError(f"{family.__qualname__} is not a metafast.basis.BasisFamily subclass")
            family = family()
        if not isinstance(family, BasisFamily):
            raise TypeError(f"check_basis_family needs a BasisFamily instance or subclass; got {type(family).__name__}")
        self.family = family
        self.seed = seed
        rng = np.random.default_rng(seed)
        if X is not None:
            X = np.asarray(X, dtype=np.float64)
            if X.ndim != 2 or X.shape[0] < 2:
                raise ValueError(f"argument 'X' must be 2-D with at least 2 rows; got shape {X.shape}")
            self.datasets = [np.ascontiguousarray(X)]
        else:
            self.datasets = [rng.uniform(-2.0, 2.0, size=(37, d)) for d in n_features]
        self.rng = rng

    def new(self) -> BasisFamily:
        fam = clone(self.family)
        if "random_state" in fam.get_params():
            fam.set_params(random_state=self.seed)
        return fam

    def fitted(self, X: np.ndarray) -> BasisFamily:
        return self.new().fit(X)


def _fail(case: _FamilyCase, check: str, problem: str) -> None:
    raise AssertionError(f"[{check}] {case.family!r}: {problem}")


def _close(a: np.ndarray, b: np.ndarray, dtype: np.dtype) -> bool:
    rtol, atol = (1e-4, 1e-5) if dtype == np.float32 else (1e-9, 1e-11)
    scale = max(1.0, float(np.max(np.abs(b), initial=0.0)))
    return bool(np.allclose(a, b, rtol=rtol, atol=atol * scale))


def check_family_params(case: _FamilyCase) -> None:
    """get_params/set_params/clone work and there is a positive integer n_basis parameter (or, for a
    family whose class sets ``_n_basis_from_fit = True``, a positive integer n_basis once fitted)."""
    name = "check_family_params"
    params = case.family.get_params()
    if "n_basis" in params:
        m = params["n_basis"]
    elif getattr(case.family, "_n_basis_from_fit", False):  # e.g. a wrapped transformer: known once fitted
        m = case.fitted(case.datasets[0]).n_basis
    else:
        _fail(
            case,
            name,
            "has no n_basis constructor parameter (every family must have one, or "
            "declare _n_basis_from_fit = True and set n_basis in fit)",
        )
    if not isinstance(m, (int, np.integer)) or isinstance(m, bool) or m < 1:
        _fail(case, name, f"n_basis must be a positive integer; got {m!r}")
    try:
        copy = clone(case.family)
    except Exception as exc:  # sklearn raises if __init__ alters its parameters
        _fail(case, name, f"sklearn.base.clone failed: {type(exc).__name__}: {exc}")
    if not _same_params(copy, case.family):
        _fail(case, name, "clone() does not reproduce the parameters")


def _same_params(a: Any, b: Any) -> bool:
    """Equal constructor parameters, comparing nested estimators (clone copies them) by theirs."""
    if hasattr(a, "get_params") and not isinstance(a, type):
        if type(a) is not type(b):
            return False
        pa, pb = a.get_params(deep=False), b.get_params(deep=False)
        return pa.keys() == pb.keys() and all(_same_params(pa[k], pb[k]) for k in pa)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_params(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(a, b)
    return bool(a == b)


def check_family_fit(case: _FamilyCase) -> None:
    """fit returns self, sets n_features_in_ and leaves X unchanged."""
    name = "check_family_fit"
    for X in case.datasets:
        X_before = X.copy()
        fam = case.new()
        if fam.fit(X) is not fam:
            _fail(case, name, "fit(X) must return self")
        if getattr(fam, "n_features_in_", None) != X.shape[1]:
            _fail(case, name, f"n_features_in_ is {getattr(fam, 'n_features_in_', None)}; expected {X.shape[1]}")
        if not np.array_equal(X, X_before):
            _fail(case, name, "fit(X) modified its input X in place")


def check_family_design(case: _FamilyCase) -> None:
    """design: shape (n, n_basis), dtype follows X (float32 stays float32), finite, n = 0 and 1."""
    name = "check_family_design"
    for X in case.datasets:
        fam = case.fitted(X)
        m = fam.n_basis
        try:
            Phi = fam.design(X)
        except NonFiniteDesignError as exc:  # the base class's own check (issue 23 D13)
            _fail(case, name, f"design(X) contains NaN or inf on ordinary input: {exc}")
        if not isinstance(Phi, np.ndarray) or Phi.shape != (X.shape[0], m):
            _fail(
                case,
                name,
                f"design(X) of shape {X.shape} gave {getattr(Phi, 'shape', Phi)}; expected {(X.shape[0], m)}",
            )
        if Phi.dtype != np.float64:
            _fail(case, name, f"design of float64 X has dtype {Phi.dtype}")
        if not np.all(np.isfinite(Phi)):
            _fail(case, name, "design(X) contains NaN or inf on ordinary input")
        if np.all(Phi == 0):
            _fail(case, name, "design(X) is all zeros on ordinary input")
        Phi32 = fam.design(X.astype(np.float32))
        if Phi32.dtype != np.float32:
            _fail(case, name, f"design of float32 X has dtype {Phi32.dtype}; expected float32")
        if not _close(Phi32.astype(np.float64), Phi, np.dtype(np.float32)):
            _fail(case, name, "the float32 design differs from the float64 one beyond float32 precision")
        for n in (0, 1):
            out = fam.design(X[:n])
            if out.shape != (n, m):
                _fail(case, name, f"design of {n} row(s) has shape {out.shape}; expected {(n, m)}")
        if not np.array_equal(fam.transform(X), Phi):
            _fail(case, name, "transform(X) differs from design(X)")
        if not np.array_equal(case.new().fit_transform(X), Phi):
            _fail(case, name, "fit_transform(X) differs from fit(X).design(X)")
        names = fam.get_feature_names_out()
        if len(names) != m:
            _fail(case, name, f"get_feature_names_out() has {len(names)} names for {m} columns")


def check_family_rows_independent(case: _FamilyCase) -> None:
    """Row i of design(X) depends only on X[i] (the blocked weighted sums rely on it)."""
    name = "check_family_rows_independent"
    for X in case.datasets:
        fam = case.fitted(X)
        idx = case.rng.permutation(X.shape[0])[: max(1, X.shape[0] // 2)]
        if not _close(fam.design(X[idx]), fam.design(X)[idx], np.dtype(np.float64)):
            _fail(case, name, "design(X[rows]) differs from design(X)[rows]")
        F = np.asfortranarray(X)
        if not _close(fam.design(F), fam.design(X), np.dtype(np.float64)):
            _fail(case, name, "design of a Fortran-ordered X differs from the C-ordered one")


def check_family_weighted_sum(case: _FamilyCase) -> None:
    """weighted_sum(X, w) == design(X) @ w for w (m,) and (m, k), float32 and float64, n > ROW_BLOCK."""
    name = "check_family_weighted_sum"
    for X in case.datasets:
        fam = case.fitted(X)
        m = fam.n_basis
        big = X[case.rng.integers(0, X.shape[0], size=ROW_BLOCK + 7)]
        big = big + 1e-3 * case.rng.standard_normal(big.shape) * np.ptp(X, axis=0)
        for dtype in (np.float64, np.float32):
            Xd = big.astype(dtype)
            Phi = fam.design(Xd).astype(np.float64)
            for w in (case.rng.standard_normal(m), case.rng.standard_normal((m, 3))):
                out = fam.weighted_sum(Xd, w.astype(dtype))
                if out.shape != (Xd.shape[0],) + w.shape[1:] or out.dtype != dtype:
                    _fail(
                        case,
                        name,
                        f"weighted_sum gave {out.shape} {out.dtype}; expected {(Xd.shape[0],) + w.shape[1:]} {np.dtype(dtype)}",
                    )
                ref = Phi @ w.astype(dtype).astype(np.float64)
                if not _close(out.astype(np.float64), ref, np.dtype(dtype)):
                    _fail(case, name, f"weighted_sum(X, w) != design(X) @ w ({np.dtype(dtype)}, w {w.shape})")
        offsets = np.array([0, 3, 3, X.shape[0]], dtype=np.int64)
        W = case.rng.standard_normal((3, m))
        out = fam.weighted_sum_tasks(X, offsets, W)
        ref = np.concatenate([fam.design(X[a:b]) @ W[t] for t, (a, b) in enumerate(zip(offsets[:-1], offsets[1:]))])
        if not _close(out, ref, np.dtype(np.float64)):
            _fail(case, name, "weighted_sum_tasks differs from the per-task design @ W[t]")


def check_family_deterministic(case: _FamilyCase) -> None:
    """Two fits of the same family on the same data (same random_state) give the same design."""
    name = "check_family_deterministic"
    for X in case.datasets:
        a, b = case.fitted(X).design(X), case.fitted(X).design(X)
        if not np.array_equal(a, b):
            _fail(case, name, "two fits on the same data give different designs (set a seed / random_state)")


def check_family_pickle_clone(case: _FamilyCase) -> None:
    """A fitted family pickles to an identical one; clone() gives an unfitted copy that refits the same."""
    name = "check_family_pickle_clone"
    X = case.datasets[0]
    fam = case.fitted(X)
    try:
        back = pickle.loads(pickle.dumps(fam))
    except Exception as exc:
        _fail(case, name, f"a fitted family does not pickle: {type(exc).__name__}: {exc}")
    if not np.array_equal(back.design(X), fam.design(X)):
        _fail(case, name, "the unpickled family's design differs")
    fresh = clone(fam)
    try:
        fresh.design(X)
    except NotFittedError:
        pass
    else:
        _fail(case, name, "clone() of a fitted family is still fitted (fitted state must end in '_')")
    if not np.array_equal(fresh.fit(X).design(X), fam.design(X)):
        _fail(case, name, "clone().fit(X) gives a different design")


def _expect_error(case: _FamilyCase, name: str, what: str, fn: Callable, errors: tuple, mention: str | None) -> None:
    try:
        fn()
    except errors as exc:
        if mention is not None and mention not in str(exc):
            _fail(case, name, f"{what}: the error does not name the argument {mention!r}: {exc}")
        return
    except Exception as exc:
        _fail(
            case,
            name,
            f"{what}: raised {type(exc).__name__} ({exc}); expected {' or '.join(e.__name__ for e in errors)}",
        )
    _fail(case, name, f"{what}: no error was raised")


def check_family_bad_input(case: _FamilyCase) -> None:
    """Clear errors: not fitted, NaN/inf, wrong dimensions or feature count, text, wrong w shape."""
    name = "check_family_bad_input"
    X = case.datasets[0]
    d = X.shape[1]
    fam = case.new()
    _expect_error(case, name, "design before fit", lambda: fam.design(X), (NotFittedError,), None)
    bad = X.copy()
    bad[1, 0] = np.nan
    _expect_error(case, name, "fit on X with NaN", lambda: case.new().fit(bad), (ValueError,), "X")
    bad[1, 0] = np.inf
    fitted = case.fitted(X)
    _expect_error(case, name, "design of X with inf", lambda: fitted.design(bad), (ValueError,), "X")
    _expect_error(case, name, "design of 1-D X", lambda: fitted.design(X[:, 0]), (ValueError,), "X")
    _expect_error(case, name, "design of 3-D X", lambda: fitted.design(X[None]), (ValueError,), "X")
    _expect_error(
        case, name, "design with another feature count", lambda: fitted.design(np.zeros((3, d + 1))), (ValueError,), "X"
    )
    _expect_error(case, name, "fit on text", lambda: case.new().fit(np.full((3, d), "a")), (TypeError, ValueError), "X")
    _expect_error(
        case,
        name,
        "weighted_sum with a w of the wrong length",
        lambda: fitted.weighted_sum(X, np.ones(fitted.n_basis + 1)),
        (ValueError,),
        "w",
    )


def check_family_learnable_params(case: _FamilyCase) -> None:
    """If the family has learnable params: with_params round-trips and design_vjp matches finite differences."""
    name = "check_family_learnable_params"
    X = case.datasets[0]
    fam = case.fitted(X)
    params = fam.learnable_params()
    if not params:
        return
    for key, value in params.items():
        if not isinstance(value, np.ndarray) or value.dtype != np.float64:
            _fail(case, name, f"learnable_params()[{key!r}] must be a float64 array; got {type(value).__name__}")
    same = fam.with_params(**params)
    if not _close(same.design(X), fam.design(X), np.dtype(np.float64)):
        _fail(case, name, "with_params(**learnable_params()) changes the design")
    G = case.rng.standard_normal((X.shape[0], fam.n_basis))
    grads = fam.design_vjp(X, G)
    if set(grads) != set(params):
        _fail(case, name, f"design_vjp keys {sorted(grads)} differ from learnable_params keys {sorted(params)}")
    for key, value in params.items():
        g = np.asarray(grads[key])
        if g.shape != value.shape:
            _fail(case, name, f"design_vjp[{key!r}] has shape {g.shape}; expected {value.shape}")
        direction = case.rng.standard_normal(value.shape)
        eps = 1e-6 * max(1.0, float(np.max(np.abs(value), initial=0.0)))

        def objective(sign: float) -> float:
            # called right here, inside this iteration: the late binding B023 warns of cannot bite
            moved = fam.with_params(**{key: value + sign * eps * direction})  # noqa: B023
            return float(np.sum(G * moved.design(X)))

        numeric = (objective(1.0) - objective(-1.0)) / (2 * eps)
        analytic = float(np.sum(g * direction))
        if not np.isclose(numeric, analytic, rtol=1e-4, atol=1e-6 * max(1.0, abs(numeric))):
            _fail(case, name, f"design_vjp[{key!r}] disagrees with finite differences: {analytic} vs {numeric}")


_FAMILY_CHECKS: tuple[Callable[[_FamilyCase], None], ...] = (
    check_family_params,
    check_family_fit,
    check_family_design,
    check_family_rows_independent,
    check_family_weighted_sum,
    check_family_deterministic,
    check_family_pickle_clone,
    check_family_bad_input,
    check_family_learnable_params,
)


def basis_family_checks(
    family: BasisFamily | type, *, X: Any = None, n_features: Iterable[int] = (1, 3), seed: int = 0
) -> list[tuple[str, Callable[[], None]]]:
    """(check name, zero-argument check) pairs, e.g. for ``pytest.mark.parametrize``."""
    case = _FamilyCase(family, X, n_features, seed)
    return [(check.__name__, (lambda c=check: c(case))) for check in _FAMILY_CHECKS]


def check_basis_family(
    family: BasisFamily | type,
    *,
    X: Any = None,
    n_features: Iterable[int] = (1, 3),
    seed: int = 0,
    skip: Iterable[str] = (),
) -> None:
    """Run every basis-family conformance check; raise AssertionError at the first failure.

    Parameters
    ----------
    family : an unfitted, configured instance (or a class, built with its defaults).
    X : optional data (n, d) to check on, when the family needs a particular domain; by default
        uniform data on [-2, 2] with each number of features in ``n_features``.
    seed : seeds the data, the random weights and ``random_state`` if the family has one.
    skip : names of checks to leave out (say why in your test).
    """
    skip = set(skip)
    known = {c.__name__ for c in _FAMILY_CHECKS}
    if skip - known:
        raise ValueError(f"argument 'skip' names unknown checks {sorted(skip - known)}; known: {sorted(known)}")
    for check_name, check in basis_family_checks(family, X=X, n_features=n_features, seed=seed):
        if check_name not in skip:
            check()
