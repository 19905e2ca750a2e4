"""MetaRidge basis learning: the objective's gradient (basis params through design_vjp, log alpha,
h) against central finite differences, in both modes (query split, LOO), and on `harmonic` the
learned basis beats the fixed one (slow)."""

import numpy as np
import pytest
from ridge_helpers import LearnableFourier, LearnableRBF

import metafast as mf
from metafast.learners.ridge.estimator import _TaskSource


def objective_of(model, tasks, basis, s=None):
    model._n_threads = 2
    model.n_jitter_ = 0
    source = _TaskSource(tasks)
    m = basis.n_basis
    return model._basis_objective(source, basis, np.ones(m) if s is None else s)


@pytest.mark.parametrize("with_query", [True, False])
def test_basis_objective_gradient_finite_differences(rng, with_query):
    tasks = mf.tasks.load("sinusoid", n_tasks=12, n_support=5, n_query=4, seed=4)
    if not with_query:  # support sets only: the objective is the LOO error
        tasks = mf.tasks.TaskSet(
            tasks.X_support,
            tasks.y_support,
            tasks.support_offsets,
            np.empty((0, 1)),
            np.empty(0),
            np.zeros(len(tasks) + 1, dtype=np.int64),
        )
    basis = LearnableRBF(n_basis=6, length_scale=1.5).fit(tasks.X_support)
    model = mf.MetaRidge(basis=basis)
    s = rng.uniform(0.5, 1.5, size=6)
    f, pack, unpack = objective_of(model, tasks, basis, s)
    x = pack(basis.learnable_params(), np.log(0.3), rng.normal(size=6))
    x = x + 0.05 * rng.normal(size=x.size)
    val, grad = f(x)
    eps = 1e-6
    fd = np.array([(f(x + eps * e)[0] - f(x - eps * e)[0]) / (2 * eps) for e in np.eye(x.size)])
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-8)
    # the value is the mean held-out MSE of the biased ridge fit, by numpy
    theta, log_lam, h = unpack(x)
    B = basis.with_params(**theta)
    lam, D = np.exp(log_lam), np.diag(s**2)
    per_task = []
    for t in range(len(tasks)):
        task = tasks[t]
        P, y = B.design(task.X_support), task.y_support
        solve = lambda P_, y_: h + D @ P_.T @ np.linalg.solve(P_ @ D @ P_.T + lam * np.eye(len(y_)), y_ - P_ @ h)
        if with_query:
            per_task.append(np.mean((B.design(task.X_query) @ solve(P, y) - task.y_query) ** 2))
        else:
            e = [y[i] - P[i] @ solve(np.delete(P, i, 0), np.delete(y, i)) for i in range(len(y))]
            per_task.append(np.mean(np.square(e)))
    assert val == pytest.approx(np.mean(per_task), rel=1e-10)


def test_learn_basis_lowers_held_out_loss_and_keeps_param():
    tasks = mf.tasks.load("sinusoid", n_tasks=60, n_support=6, n_query=6, seed=5)
    basis = LearnableRBF(n_basis=8, length_scale=3.0)
    model = mf.MetaRidge(basis=basis, learn_basis=True, max_iter=15).fit(tasks)
    assert model.basis_loss_[-1] < model.basis_loss_[0]
    assert not basis.__sklearn_is_fitted__()
    assert model.basis_.log_length_scale_[0] != pytest.approx(np.log(3.0))
    fixed = mf.MetaRidge(basis=basis).fit(tasks)
    assert model.evaluate(tasks)["mse"] < fixed.evaluate(tasks)["mse"]


@pytest.mark.slow
def test_learned_basis_beats_fixed_on_harmonic():
    train = mf.tasks.load("harmonic", n_tasks=200, n_support=10, n_query=10, seed=0)
    test = mf.tasks.load("harmonic", n_tasks=300, n_support=10, n_query=10, seed=1)
    basis = LearnableFourier(n_basis=16, max_frequency=9.0)  # frequencies 0.2..9: mis-specified
    fixed = mf.MetaRidge(basis=basis).fit(train)
    learned = mf.MetaRidge(basis=basis, learn_basis=True, max_iter=40).fit(train)
    fixed_mse, learned_mse = fixed.evaluate(test)["mse"], learned.evaluate(test)["mse"]
    assert learned_mse < 0.9 * fixed_mse
    freq = np.sort(learned.basis_.frequencies_)
    assert np.any((freq > 4.5) & (freq < 7.5))  # moved to the harmonic band [5, 7]


def test_learn_basis_without_learnable_params_tunes_alpha_and_mean():
    from ridge_helpers import Identity, linear_hierarchy

    tasks, h = linear_hierarchy(n_tasks=150, n_support=3, d=3, seed=8)
    model = mf.MetaRidge(basis=Identity(3), alphas=50.0, learn_basis=True, max_iter=30).fit(tasks)
    assert model.alpha_ != 50.0
    assert model.basis_loss_[-1] < model.basis_loss_[0]
    np.testing.assert_allclose(model.prior_mean_, h, atol=0.15)
