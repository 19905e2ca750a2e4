"""Behaviour shared by the kernel families: pickling, concurrent calls, dtype tags."""

import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import metafast as mf

FAMILIES = [
    ("fourier", {"n_basis": 15}),
    ("fourier", {"n_basis": 15, "multivariate": "lattice"}),
    ("polynomial", {"n_basis": 10}),
    ("bspline", {"n_basis": 12}),
]


@pytest.mark.parametrize("name, params", FAMILIES)
def test_pickle_round_trip_keeps_results_and_learned_params(rng, name, params):
    X = rng.uniform(-2, 2, size=(50, 2))
    B = mf.basis.make(name, **params).fit(X)
    lp = B.learnable_params()
    if lp:
        B = B.with_params(**{k: v + 0.1 for k, v in lp.items()})
    C = pickle.loads(pickle.dumps(B))
    assert np.array_equal(B.design(X), C.design(X))
    w = rng.normal(size=B.n_basis)
    assert np.array_equal(B.weighted_sum(X, w), C.weighted_sum(X, w))


@pytest.mark.parametrize("name, params", FAMILIES)
def test_concurrent_calls_from_threads_agree(rng, name, params):
    X = rng.uniform(-2, 2, size=(400, 3))
    B = mf.basis.make(name, n_jobs=1, **params).fit(X)
    w = rng.normal(size=B.n_basis)
    expected = B.weighted_sum(X, w)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: B.weighted_sum(X, w), range(8)))
    assert all(np.array_equal(r, expected) for r in results)


@pytest.mark.parametrize("name, params", FAMILIES)
def test_float32_is_preserved_and_declared(rng, name, params):
    B = mf.basis.make(name, **params)
    assert "float32" in B.__sklearn_tags__().transformer_tags.preserves_dtype
    X = rng.uniform(size=(5, 1)).astype(np.float32)
    assert B.fit_transform(X).dtype == np.float32


@pytest.mark.parametrize("name, params", FAMILIES)
def test_bad_n_jobs_is_reported(rng, name, params):
    B = mf.basis.make(name, n_jobs=0, **params).fit(rng.uniform(size=(5, 1)))
    with pytest.raises(ValueError, match="n_jobs"):
        B.design(rng.uniform(size=(3, 1)))


@pytest.mark.parametrize(
    "name, params, ones",
    [
        ("fourier", {"n_basis": 1}, True),
        ("fourier", {"n_basis": 1, "include_constant": False}, False),
        ("polynomial", {"n_basis": 1}, True),
        ("bspline", {"n_basis": 1, "degree": 0}, True),
    ],
)
def test_smallest_bases(rng, name, params, ones):
    X = rng.uniform(-1, 1, size=(6, 1))
    B = mf.basis.make(name, **params).fit(X)
    Phi = B.design(X)
    assert Phi.shape == (6, 1) and np.isfinite(Phi).all()
    if ones:
        np.testing.assert_allclose(Phi, 1.0)
    grads = B.design_vjp(X, np.ones((6, 1)))
    assert set(grads) == set(B.learnable_params())
    assert all(np.all(np.isfinite(v)) for v in grads.values())
