"""Regression tests of the hardening issue: each defect found by a hostile user, fixed."""

import threading
import time

import numpy as np
import pytest

import metafast as mf
from metafast.learners import MetaBayes, MetaRidge
from metafast.parallel import OVERSUBSCRIBE_LIMIT, available_cores, effective_n_threads


def _sinusoid(n_tasks=30, seed=0, **kw):
    return mf.tasks.load("sinusoid", n_tasks=n_tasks, n_support=5, n_query=5, seed=seed, **kw)


def _basis():
    return mf.basis.make("rbf", n_basis=8).fit(np.linspace(-5, 5, 50)[:, None])


# ----------------------------------------------------------------------- 1. absurd n_jobs
def test_absurd_n_jobs_is_clamped():
    cap = OVERSUBSCRIBE_LIMIT * available_cores()
    assert 1 <= effective_n_threads(100_000) <= cap
    assert effective_n_threads(100_000) == effective_n_threads(None)
    assert effective_n_threads(-100_000) == 1


@pytest.mark.parametrize("learner", [MetaBayes, MetaRidge])
def test_absurd_n_jobs_fits_and_evaluates(learner):
    tasks = _sinusoid()
    model = learner(basis=_basis(), n_jobs=100_000).fit(tasks)
    ref = learner(basis=_basis(), n_jobs=1).fit(tasks)
    np.testing.assert_allclose(model.evaluate(tasks)["mse"], ref.evaluate(tasks)["mse"], rtol=1e-10)


# ----------------------------------------------------------------------- 2. fit while others predict
def _concurrent_predictions(model, fits, X, y, Xq, n_readers=2, rounds=4):
    """Refit ``model`` alternately on ``fits`` while readers call adapt_predict; the readers'
    results."""
    seen, stop, errors = [], threading.Event(), []

    def reader():
        try:
            while not stop.is_set():
                seen.append(np.asarray(model.adapt_predict(X, y, Xq)))
                time.sleep(1e-4)   # let the writer run too
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(n_readers)]
    for t in threads:
        t.start()
    try:
        for r in range(rounds):
            model.fit(fits[r % len(fits)])
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    return seen


@pytest.mark.parametrize("make", [
    lambda: MetaBayes(basis=_basis(), max_iter=15, tol=0.0, n_jobs=1),
    lambda: MetaBayes(basis=_basis(), n_components=2, max_iter=5, random_state=0, n_jobs=1),
    lambda: MetaRidge(basis=mf.basis.make("rbf", n_basis=8), n_jobs=1),   # basis_ set early in fit
], ids=["metabayes", "mixture", "metaridge"])
def test_fit_swaps_the_model_in_atomically(make):
    import warnings

    warnings.simplefilter("ignore")
    A, B = _sinusoid(40, seed=1), _sinusoid(40, seed=2, amplitude=(5.0, 9.0))
    X, y, Xq = A[0].X_support, A[0].y_support, np.linspace(-5, 5, 7)[:, None]
    expected = [np.asarray(make().fit(ts).adapt_predict(X, y, Xq)) for ts in (A, B)]
    assert not np.allclose(expected[0], expected[1])
    model = make().fit(A)
    seen = _concurrent_predictions(model, [B, A], X, y, Xq)
    assert len(seen) > 0
    mixed = [p for p in seen if not any(np.allclose(p, e, rtol=1e-9, atol=1e-12) for e in expected)]
    assert not mixed, f"{len(mixed)} of {len(seen)} predictions matched neither model"


def test_failed_fit_keeps_the_old_model():
    tasks = _sinusoid()
    model = MetaRidge(basis=_basis()).fit(tasks)
    before = model.prior_mean_.copy()
    model.set_params(alphas=[-1.0])
    with pytest.raises(ValueError, match="alphas"):
        model.fit(tasks)
    np.testing.assert_array_equal(model.prior_mean_, before)
