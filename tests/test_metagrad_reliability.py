"""MetaGrad under hostile use (issue 23): refits while other threads predict (D8), an interrupted
fit (D15), absurd ``inner_steps`` (D17), targets near 1e-300 and 1e300 (D19)."""

import threading

import numpy as np
import pytest

import metafast as mf
from metafast.learners.grad import _training
from metafast.learners.grad.estimator import GradTaskRegressor


def _tasks(n_tasks=40, seed=0, scale=1.0):
    ts = mf.tasks.load("sinusoid", n_tasks=n_tasks, n_support=5, n_query=5, seed=seed)
    return mf.tasks.TaskSet(
        ts.X_support, ts.y_support * scale, ts.support_offsets, ts.X_query, ts.y_query * scale, ts.query_offsets
    )


def _model(**kw):
    params = dict(basis=mf.basis.make("rbf", n_basis=8), n_iter=40, validation_fraction=None, random_state=0, n_jobs=1)
    return mf.MetaGrad(**{**params, **kw})


# ----------------------------------------------------------------------- D8: refit while others predict
@pytest.mark.parametrize("learn_basis", [False, True])
def test_refit_while_other_threads_predict_sees_one_model_or_the_other(learn_basis):
    A, B = _tasks(seed=1), _tasks(seed=2, scale=7.0)
    X, y, Xq = A[0].X_support, A[0].y_support, np.linspace(-5, 5, 7)[:, None]
    expected = [_model(learn_basis=learn_basis).fit(ts).adapt_predict(X, y, Xq) for ts in (A, B)]
    assert not np.allclose(expected[0], expected[1])
    model = _model(learn_basis=learn_basis).fit(A)
    seen, errors, stop = [], [], threading.Event()

    def reader():
        while not stop.is_set():
            try:
                seen.append(model.adapt_predict(X, y, Xq))
                model.evaluate(A)
            except Exception as exc:  # noqa: BLE001 - any failure of a reader is the defect
                errors.append(repr(exc))

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for r in range(6):
            model.fit([B, A][r % 2])
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    assert seen
    mixed = [p for p in seen if not any(np.allclose(p, e, rtol=1e-9, atol=1e-12) for e in expected)]
    assert not mixed, f"{len(mixed)} of {len(seen)} predictions matched neither model"


# ----------------------------------------------------------------------- D15: interrupted fit
class _Interrupt:
    """Raises KeyboardInterrupt at the n-th meta-gradient (as Ctrl-C would mid-fit)."""

    def __init__(self, real, at):
        self.real, self.at, self.calls = real, at, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return self.real(*args, **kwargs)


@pytest.mark.parametrize("call", ["fit", "partial_fit"])
def test_interrupted_fit_keeps_the_previous_model(monkeypatch, call):
    A, B = _tasks(seed=1), _tasks(seed=2, scale=7.0)
    model = _model().fit(A)
    state = {k: np.copy(v) for k, v in (("w0", model.init_coef_), ("rates", model.inner_lr_))}
    before = model.evaluate(B)
    n_iter, curve = model.n_iter_, list(model.loss_curve_)
    monkeypatch.setattr(_training, "batch_meta_grad", _Interrupt(_training.batch_meta_grad, at=2))
    with pytest.raises(KeyboardInterrupt):
        getattr(model, call)(B)
    np.testing.assert_array_equal(model.init_coef_, state["w0"])
    np.testing.assert_array_equal(model.inner_lr_, state["rates"])
    assert model.n_iter_ == n_iter and model.loss_curve_ == curve
    assert model.evaluate(B) == before


def test_interrupted_first_fit_stays_unfitted(monkeypatch):
    from sklearn.exceptions import NotFittedError

    monkeypatch.setattr(_training, "batch_meta_grad", _Interrupt(_training.batch_meta_grad, at=5))
    model = _model()
    with pytest.raises(KeyboardInterrupt):
        model.fit(_tasks())
    with pytest.raises(NotFittedError):
        model.evaluate(_tasks())


# ----------------------------------------------------------------------- D17: inner_steps bound
@pytest.mark.parametrize("steps", [10**7, 1001])
def test_absurd_inner_steps_are_refused_before_any_work(steps):
    with pytest.raises(ValueError, match=r"inner_steps.*at most 1000"):
        _model(inner_steps=steps).fit(_tasks())
    with pytest.raises(ValueError, match="inner_steps"):
        GradTaskRegressor(basis=mf.basis.make("rbf", n_basis=4).fit(np.zeros((3, 1))), inner_steps=steps).fit(
            np.zeros((3, 1)), np.zeros(3)
        )


def test_inner_steps_at_the_bound_still_fit():
    assert _model(inner_steps=1000, n_iter=2).fit(_tasks(n_tasks=8)).n_iter_ == 2


# ----------------------------------------------------------------------- D19: tiny and huge targets
@pytest.mark.parametrize("scale", [1e-300, 1e300])
@pytest.mark.parametrize("method", ["maml", "imaml"])
def test_tiny_and_huge_targets_give_the_same_model_in_their_units(scale, method):
    ref_tasks, tasks = _tasks(), _tasks(scale=scale)
    X, y, Xq = ref_tasks[0].X_support, ref_tasks[0].y_support, np.linspace(-5, 5, 9)[:, None]
    ref = _model(method=method).fit(ref_tasks).adapt_predict(X, y, Xq)
    got = _model(method=method).fit(tasks).adapt_predict(X, y * scale, Xq)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got / scale, ref, rtol=1e-6, atol=1e-9 * np.abs(ref).max())
    W = _model(method=method).fit(tasks).adapt_tasks(tasks)
    assert np.isfinite(W).all() and np.abs(W).max() < 1e3 * scale
