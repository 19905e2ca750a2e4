"""One-task paths of MetaBayes: the adapt_one / adapt_predict / predict_one kernels against the
joint-Gaussian conditional, and MetaBayes.adapt / adapt_predict / BayesTaskRegressor.predict
(equal to each other and to the explicit posterior, input handling, shared basis, threads)."""

import pickle
import threading
import warnings

import numpy as np
import pytest
from test_metabayes_kernels import numpy_task_posterior

import metafast as mf
from metafast._kernels import _bayes
from metafast.learners import MetaBayes
from metafast.learners.bayes._em import GaussianPrior
from metafast.tasks import Task, TaskSet


class Identity(mf.basis.BasisFamily):
    """Phi = X: the weights are the inputs' coefficients."""

    def __init__(self, n_basis=3):
        self.n_basis = n_basis

    def fit(self, X, y=None):
        return self

    def design(self, X):
        return X.copy()


def fitted_model(rng, m=5, sizes=(2, 4, 7), T=40, s2=0.1, **params):
    W = rng.multivariate_normal(rng.normal(size=m), np.eye(m), size=T)
    tasks = []
    for t in range(T):
        n = sizes[t % len(sizes)]
        X = rng.normal(size=(n + 3, m))
        y = X @ W[t] + np.sqrt(s2) * rng.normal(size=n + 3)
        tasks.append(Task(X[:n], y[:n], X[n:], y[n:]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MetaBayes(basis=Identity(m).fit(np.zeros((1, m))), max_iter=15, **params).fit(TaskSet.from_list(tasks))


def explicit_posterior(model, X, y):
    """The posterior in the units of y, from the model's public prior attributes (X is the design)."""
    return numpy_task_posterior(X, y, model.mean_, model.covariance_, model.noise_var_)


def prior_problem(rng, m, kind="full"):
    M = rng.normal(size=(m, m))
    Sigma = M @ M.T / m + 0.5 * np.eye(m)
    if kind == "diag":
        Sigma = np.diag(np.diag(Sigma))
    return GaussianPrior(rng.normal(size=m), Sigma, 0.2, kind)


# ------------------------------------------------------------------ kernels
@pytest.mark.parametrize("kind", ["full", "diag"])
@pytest.mark.parametrize("n", [0, 1, 3, 6, 7, 12])  # m = 7: dual, n = m and primal forms
def test_one_task_kernels_match_the_joint_gaussian(n, kind, rng):
    m, c = 7, 2.5  # c: the target scale the prior is in
    prior = prior_problem(rng, m, kind)
    mu, Sigma, Sinv, h, _, s2, diag = prior.kernel_args(np.float64)
    Phi = rng.normal(size=(n, m))
    y = c * rng.normal(size=n)
    Phi_q = rng.normal(size=(5, m))
    ref_mean, ref_cov = numpy_task_posterior(Phi, y, c * prior.mean, c**2 * prior.cov, c**2 * s2)
    ref_pm = Phi_q @ ref_mean
    ref_ps = np.sqrt(np.einsum("ij,jk,ik->i", Phi_q, ref_cov, Phi_q) + c**2 * s2)

    kprior = _bayes.OneTaskPrior(mu, Sigma, Sinv, h, s2, diag, c)
    coef, cov = np.empty(m), np.empty((m, m))
    assert _bayes.adapt_one(kprior, Phi, y, coef, cov) == 0
    np.testing.assert_allclose(coef, ref_mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(cov, ref_cov, rtol=1e-8, atol=1e-12)
    np.testing.assert_array_equal(cov, cov.T)

    coef2, pm, ps = np.empty(m), np.empty(5), np.empty(5)
    assert _bayes.adapt_predict(kprior, Phi, y, Phi_q, True, coef2, pm, ps) == 0
    np.testing.assert_allclose(coef2, ref_mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(pm, ref_pm, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ps, ref_ps, rtol=1e-9)

    pm1, ps1 = np.empty(5), np.empty(5)
    _bayes.predict_one(Phi_q, coef, cov, c**2 * s2, True, pm1, ps1)
    np.testing.assert_allclose(pm1, ref_pm, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ps1, ref_ps, rtol=1e-9)


def test_one_task_kernels_query_blocks_and_empty_query(rng):
    m = 4
    prior = prior_problem(rng, m)
    args = prior.kernel_args(np.float64)
    mu, Sigma, Sinv, h, _, s2, diag = args
    kprior = _bayes.OneTaskPrior(mu, Sigma, Sinv, h, s2, diag, 1.0)
    Phi, y = rng.normal(size=(3, m)), rng.normal(size=3)
    ref_mean, ref_cov = numpy_task_posterior(Phi, y, prior.mean, prior.cov, s2)
    for nq in (0, 1, 255, 256, 257, 601):  # around and across QUERY_BLOCK = 256
        Phi_q = rng.normal(size=(nq, m))
        coef, pm, ps = np.empty(m), np.full(nq, np.nan), np.full(nq, np.nan)
        _bayes.adapt_predict(kprior, Phi, y, Phi_q, True, coef, pm, ps)
        np.testing.assert_allclose(pm, Phi_q @ ref_mean, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(ps, np.sqrt(np.einsum("ij,jk,ik->i", Phi_q, ref_cov, Phi_q) + s2), rtol=1e-9)
        pm2, ps2 = np.full(nq, np.nan), np.full(nq, np.nan)
        _bayes.predict_one(Phi_q, ref_mean, ref_cov, s2, True, pm2, ps2)
        np.testing.assert_allclose(ps2, ps, rtol=1e-9)
        # without the std: the std buffer may be empty and is never written
        pm3 = np.empty(nq)
        _bayes.adapt_predict(kprior, Phi, y, Phi_q, False, coef, pm3, np.empty(0))
        np.testing.assert_allclose(pm3, pm, rtol=1e-12, atol=1e-14)


def test_a_singular_posterior_or_bad_target_is_reported_not_returned(rng):
    m = 3
    mu, Sigma, Sinv, h, _, _, diag = GaussianPrior(np.zeros(m), np.eye(m), 0.1, "full").kernel_args(np.float64)
    with pytest.raises(ValueError, match="> 0"):
        _bayes.OneTaskPrior(mu, Sigma, Sinv, h, -1.0, diag, 1.0)
    with pytest.raises(ValueError, match="shapes"):
        _bayes.OneTaskPrior(mu, Sigma[:2], Sinv, h, 0.1, diag, 1.0)
    kprior = _bayes.OneTaskPrior(mu, Sigma, Sinv, h, 0.1, diag, 1.0)
    Phi, out = np.zeros((2, m)), (np.empty(m), np.empty((m, m)))
    with pytest.raises(ValueError, match="columns"):
        _bayes.adapt_one(kprior, np.zeros((2, m + 1)), np.zeros(2), *out)
    with pytest.raises(ValueError, match="values"):
        _bayes.adapt_one(kprior, Phi, np.zeros(3), *out)
    for bad in (np.nan, np.inf, -np.inf):
        assert _bayes.adapt_one(kprior, Phi, np.array([0.0, bad]), *out) == -2
        assert (
            _bayes.adapt_predict(kprior, Phi, np.array([bad, 0.0]), Phi, True, np.empty(m), np.empty(2), np.empty(2))
            == -2
        )
    # how MetaBayes turns the statuses into errors (a factorisation failure cannot be provoked
    # through a valid prior: noise_var > 0 keeps every C positive definite)
    from metafast.learners.bayes._predict import _check_status

    _check_status(0, np.zeros(2))
    _check_status(3, np.zeros(2))  # jitter rounds are not errors
    with pytest.raises(FloatingPointError, match="singular"):
        _check_status(-1, np.zeros(2))
    with pytest.raises(ValueError, match=r"argument 'y' contains inf \(first at index \[1\]"):
        _check_status(-2, np.array([0.0, np.inf]))
    with pytest.raises(ValueError, match=r"argument 'y' contains NaN \(first at index \[0\]"):
        fitted_model(rng, m=m).adapt(Phi, np.array([np.nan, 0.0]))


# ------------------------------------------------------------------ MetaBayes.adapt / adapt_predict
@pytest.mark.parametrize("covariance", ["full", "diag", "iso"])
@pytest.mark.parametrize("n", [0, 1, 3, 5, 9])  # m = 5: empty, dual, n = m and primal
def test_adapt_and_adapt_predict_are_the_exact_posterior(n, covariance, rng):
    model = fitted_model(rng, covariance=covariance)
    X, y, Xq = rng.normal(size=(n, 5)), rng.normal(size=n), rng.normal(size=(11, 5))
    mean, cov = explicit_posterior(model, X, y)
    ref_pm = Xq @ mean
    ref_ps = np.sqrt(np.einsum("ij,jk,ik->i", Xq, cov, Xq) + model.noise_var_)

    reg = model.adapt(X, y)
    np.testing.assert_allclose(reg.coef_, mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(reg.covariance_, cov, rtol=1e-8, atol=1e-12)
    assert reg.n_samples_seen_ == n and reg.n_features_in_ == 5 and reg.noise_var_ == model.noise_var_
    pm, ps = reg.predict(Xq, return_std=True)
    np.testing.assert_allclose(pm, ref_pm, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ps, ref_ps, rtol=1e-9)
    np.testing.assert_allclose(reg.predict(Xq), ref_pm, rtol=1e-9, atol=1e-12)

    pm2, ps2 = model.adapt_predict(X, y, Xq, return_std=True)
    np.testing.assert_allclose(pm2, pm, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ps2, ps, rtol=1e-9)
    only_mean = model.adapt_predict(X, y, Xq)
    assert isinstance(only_mean, np.ndarray) and only_mean.dtype == np.float64
    np.testing.assert_allclose(only_mean, pm, rtol=1e-9, atol=1e-12)


def test_adapt_predict_matches_predict_tasks_on_sinusoid():
    train = mf.tasks.load("sinusoid", n_tasks=200, n_support=10, n_query=5, seed=0)
    test = mf.tasks.load("sinusoid", n_tasks=3, n_support=10, n_query=40, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MetaBayes(basis=mf.basis.make("rbf", n_basis=20, length_scale=1.0), max_iter=10).fit(train)
    km, ks = model.predict_tasks(test)
    for t in range(len(test)):
        task, q = test[t], slice(test.query_offsets[t], test.query_offsets[t + 1])
        pm, ps = model.adapt_predict(task.X_support, task.y_support, task.X_query, return_std=True)
        np.testing.assert_allclose(pm, km[q], rtol=1e-9, atol=1e-12)
        # 1e-5: the whitened EM reaches a nearly singular Sigma (noise-free tasks, rank ~2) in
        # 10 iterations, where the two paths' different factorisations differ by ~1e-6 in the std
        np.testing.assert_allclose(ps, ks[q], rtol=1e-5)
        rm, rs = model.adapt(task.X_support, task.y_support).predict(task.X_query, return_std=True)
        np.testing.assert_allclose(rm, pm, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(rs, ps, rtol=1e-5)


def test_inputs_of_any_layout_and_dtype_give_the_same_answer(rng):
    model = fitted_model(rng)
    X, y, Xq = rng.normal(size=(3, 5)), rng.normal(size=3), rng.normal(size=(6, 5))
    ref = model.adapt_predict(X, y, Xq, return_std=True)
    wide, ywide = np.zeros((3, 10)), np.repeat(y, 2)
    wide[:, ::2] = X
    for Xa, ya, Xqa, tol in [
        (np.asfortranarray(X), y, np.asfortranarray(Xq), 1e-12),
        (wide[:, ::2], ywide[::2], Xq, 1e-12),
        (X.tolist(), y.tolist(), Xq.tolist(), 1e-12),
        (X.astype(np.float32), y.astype(np.float32), Xq.astype(np.float32), 1e-5),
        (X, y[:, None], Xq, 1e-12),
    ]:
        for got in (
            model.adapt_predict(Xa, ya, Xqa, return_std=True),
            model.adapt(Xa, ya).predict(Xqa, return_std=True),
        ):
            np.testing.assert_allclose(got[0], ref[0], rtol=tol, atol=tol)
            np.testing.assert_allclose(got[1], ref[1], rtol=tol, atol=tol)
            assert got[0].dtype == got[1].dtype == np.float64


def test_adapt_predict_bad_input(rng):
    model = fitted_model(rng)
    X, y, Xq = np.zeros((2, 5)), np.zeros(2), np.zeros((3, 5))
    with pytest.raises(Exception, match="not fitted"):
        MetaBayes().adapt_predict(X, y, Xq)
    bad_q = Xq.copy()
    bad_q[1, 2] = np.nan
    bad_x = X.copy()
    bad_x[0, 0] = np.inf
    cases = [
        ((np.zeros((2, 4)), y, Xq), "features"),
        ((X, y, np.zeros((3, 4))), "features"),
        ((X, np.array([0.0, np.nan]), Xq), "NaN"),
        ((X, np.zeros(3), Xq), "rows"),
        ((X, y, bad_q), r"NaN \(first at index \[1, 2\]"),
        ((bad_x, y, Xq), r"inf \(first at index \[0, 0\]"),
        ((X, y, np.zeros(5)), "2-D"),
        ((X, np.zeros((2, 2)), Xq), "1-D"),
    ]
    for args, match in cases:
        with pytest.raises(ValueError, match=match):
            model.adapt_predict(*args, return_std=True)
        with pytest.raises(ValueError, match=match):
            model.adapt(*args[:2]).predict(args[2], return_std=True)


def test_mixture_models_adapt_predict_like_adapt():
    pytest.importorskip("metafast.learners.bayes.mixture.prior")
    tasks = mf.tasks.load("sinusoid", n_tasks=80, n_support=5, n_query=10, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MetaBayes(
            basis=mf.basis.make("rbf", n_basis=10, length_scale=1.0), n_components=2, max_iter=10, random_state=0
        ).fit(tasks)
    t = tasks[0]
    ref = model.adapt(t.X_support, t.y_support).predict(t.X_query, return_std=True)
    got = model.adapt_predict(t.X_support, t.y_support, t.X_query, return_std=True)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-12)
    np.testing.assert_allclose(got[1], ref[1], rtol=1e-12)


# ------------------------------------------------------------------ state: shared basis, refit, pickle, threads
def test_adapted_regressors_share_the_unmodified_basis(rng):
    model = fitted_model(rng)
    before = pickle.dumps(model.basis_)
    reg = model.adapt(rng.normal(size=(3, 5)), rng.normal(size=3))
    assert reg.basis is model.basis_  # a reference, not a copy per adapt
    reg.predict(rng.normal(size=(4, 5)), return_std=True)
    reg.update(rng.normal(size=(2, 5)), rng.normal(size=2))
    model.adapt_predict(rng.normal(size=(3, 5)), rng.normal(size=3), rng.normal(size=(4, 5)))
    assert pickle.dumps(model.basis_) == before
    assert reg.get_params()["prior_mean"] is model.mean_
    again = pickle.loads(pickle.dumps(reg))
    Xq = rng.normal(size=(4, 5))
    np.testing.assert_array_equal(again.predict(Xq, return_std=True)[1], reg.predict(Xq, return_std=True)[1])


def test_refit_and_partial_fit_use_the_new_prior(rng):
    model = fitted_model(rng)
    X, y = rng.normal(size=(3, 5)), rng.normal(size=3)
    model.adapt(X, y)  # fills the per-prior cache
    other = fitted_model(np.random.default_rng(7), s2=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tasks = TaskSet.from_list(
            [
                Task(rng.normal(size=(4, 5)), 3.0 + rng.normal(size=4), rng.normal(size=(1, 5)), rng.normal(size=1))
                for _ in range(30)
            ]
        )
        model.partial_fit(tasks)
    np.testing.assert_allclose(model.adapt(X, y).coef_, explicit_posterior(model, X, y)[0], rtol=1e-9)
    model.set_params(max_iter=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(tasks)
    np.testing.assert_allclose(model.adapt(X, y).coef_, explicit_posterior(model, X, y)[0], rtol=1e-9)
    assert not np.allclose(other.adapt(X, y).coef_, model.adapt(X, y).coef_)


def test_pickle_drops_the_derived_cache_and_adapts_the_same(rng):
    model = fitted_model(rng)
    X, y, Xq = rng.normal(size=(3, 5)), rng.normal(size=3), rng.normal(size=(4, 5))
    ref = model.adapt_predict(X, y, Xq, return_std=True)
    assert "_one_task_cache" not in model.__getstate__()
    again = pickle.loads(pickle.dumps(model))
    got = again.adapt_predict(X, y, Xq, return_std=True)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])


def test_concurrent_adapts_give_the_serial_answers(rng):
    model = fitted_model(rng)
    problems = [(rng.normal(size=(n, 5)), rng.normal(size=n), rng.normal(size=(7, 5))) for n in (1, 3, 6, 9) * 3]
    serial = [model.adapt_predict(*p, return_std=True) for p in problems]
    serial_reg = [model.adapt(X, y).predict(Xq, return_std=True) for X, y, Xq in problems]
    fresh = pickle.loads(pickle.dumps(model))  # cold cache: threads race to fill it
    results, errors = {}, []

    def work(i):
        try:
            for _ in range(20):
                X, y, Xq = problems[i]
                results[i] = (
                    fresh.adapt_predict(X, y, Xq, return_std=True),
                    fresh.adapt(X, y).predict(Xq, return_std=True),
                )
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(problems))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    for i in range(len(problems)):
        for got, ref in zip(results[i], (serial[i], serial_reg[i])):
            np.testing.assert_array_equal(got[0], ref[0])
            np.testing.assert_array_equal(got[1], ref[1])
