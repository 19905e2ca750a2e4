"""MetaClassifier: the three heads in both label settings, against brute-force references."""

import pickle

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import logsumexp
from sklearn.base import ClassifierMixin, clone

import metafast as mf
from metafast.learners.classify._prototype import LooLoss
from metafast.learners.classify.estimator import expected_calibration_error

HEADS = ("logistic", "ridge", "prototype")


@pytest.fixture(scope="module")
def shared_tasks():
    train = mf.tasks.load("logistic", n_tasks=150, n_support=8, n_query=8, seed=0)
    test = mf.tasks.load("logistic", n_tasks=60, n_support=8, n_query=20, seed=1)
    return train, test


@pytest.fixture(scope="module")
def episodic_tasks():
    kw = dict(n_way=3, n_features=8, n_total_classes=20, k_shot=2, n_query=5)
    return (
        mf.tasks.load("class-mixtures", n_tasks=80, seed=0, **kw),
        mf.tasks.load("class-mixtures", n_tasks=40, seed=1, split="test", **kw),
    )


def basis(n=3):
    return mf.basis.make("polynomial", n_basis=n)


@pytest.fixture(scope="module")
def fitted(shared_tasks, episodic_tasks):
    out = {}
    for head in HEADS:
        out["shared", head] = mf.MetaClassifier(basis=basis(), head=head, max_iter=15, n_jobs=1).fit(shared_tasks[0])
        out["episodic", head] = mf.MetaClassifier(basis=basis(9), head=head, max_iter=15, n_jobs=1).fit(
            episodic_tasks[0]
        )
    return out


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("setting", ["shared", "episodic"])
def test_heads_learn_and_report_metrics(fitted, shared_tasks, episodic_tasks, head, setting):
    clf = fitted[setting, head]
    assert clf.setting_ == setting
    test = shared_tasks[1] if setting == "shared" else episodic_tasks[1]
    scores = clf.evaluate(test)
    assert set(scores) == {"accuracy", "accuracy_ci95", "nll", "nll_ci95", "ece", "n_tasks"}
    assert scores["n_tasks"] == len(test)
    chance = 1 / 3
    assert scores["accuracy"] > chance + 0.15
    assert scores["nll"] < np.log(3)
    assert 0 <= scores["ece"] < 0.15


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("setting", ["shared", "episodic"])
def test_adapt_matches_the_batched_path(fitted, shared_tasks, episodic_tasks, head, setting):
    clf = fitted[setting, head]
    test = (shared_tasks[1] if setting == "shared" else episodic_tasks[1]).subset(slice(0, 4))
    batched = clf.predict_tasks_proba(test)
    for t in range(4):
        task = test[t]
        model = clf.adapt(task.X_support, task.y_support)
        assert isinstance(model, ClassifierMixin)
        P = model.predict_proba(task.X_query)
        q = slice(test.query_offsets[t], test.query_offsets[t + 1])
        np.testing.assert_allclose(P, batched[q, : P.shape[1]], atol=1e-6)
        np.testing.assert_allclose(P.sum(axis=1), 1.0)
        assert np.array_equal(model.predict(task.X_query), model.classes_[P.argmax(axis=1)])
        assert np.array_equal(
            clf.adapt_predict(task.X_support, task.y_support, task.X_query), model.predict(task.X_query)
        )
        np.testing.assert_allclose(clf.adapt_predict_proba(task.X_support, task.y_support, task.X_query), P, atol=1e-12)


def test_logistic_adapt_is_the_map_under_the_learned_prior(fitted, shared_tasks):
    clf = fitted["shared", "logistic"]
    task = shared_tasks[1][3]
    model = clf.adapt(task.X_support, task.y_support)
    Phi = clf._design(task.X_support)
    prior = clf.head_.prior_
    Sinv = np.linalg.inv(prior.cov)
    K, m = prior.means.shape
    y = np.searchsorted(clf.classes_, task.y_support)

    def f(w):
        W = w.reshape(m, K)
        Z = Phi @ W
        lse = logsumexp(Z, axis=1)
        D = W - prior.means.T
        R = np.exp(Z - lse[:, None])
        R[np.arange(len(y)), y] -= 1
        return (lse - Z[np.arange(len(y)), y]).sum() + 0.5 * np.einsum("ik,ij,jk->", D, Sinv, D), (
            Phi.T @ R + Sinv @ D
        ).ravel()

    res = minimize(f, prior.means.T.ravel(), jac=True, method="L-BFGS-B", options=dict(gtol=1e-10, maxiter=5000))
    W = res.x.reshape(m, K)
    np.testing.assert_allclose(np.vstack([model.coef_, model.intercept_]), W, atol=1e-4)


def test_ridge_adapt_is_the_closed_form_posterior_mean(fitted, shared_tasks):
    clf = fitted["shared", "ridge"]
    task = shared_tasks[1][5]
    model = clf.adapt(task.X_support, task.y_support)
    head = clf.head_
    Phi = clf._design(task.X_support)
    mu, S, s2 = head.prior_.means.T, head.prior_.cov, head.noise_var_
    Y = np.eye(len(clf.classes_))[np.searchsorted(clf.classes_, task.y_support)]
    W = mu + S @ Phi.T @ np.linalg.solve(Phi @ S @ Phi.T + s2 * np.eye(len(Y)), Y - Phi @ mu)
    np.testing.assert_allclose(np.vstack([model.coef_, model.intercept_]), head.temperature_ * W, atol=1e-8)


@pytest.mark.parametrize("setting", ["shared", "episodic"])
def test_prototype_loo_gradient_by_finite_differences(fitted, shared_tasks, episodic_tasks, setting):
    clf = fitted[setting, "prototype"]
    train = (shared_tasks[0] if setting == "shared" else episodic_tasks[0]).subset(slice(0, 20))
    codes, ncls = clf._encode(train.y_support, train.support_offsets)
    loss = LooLoss(clf._design(train.X_support), codes, train.support_offsets, ncls, clf.head_.global_means_, 1)
    theta = np.log(clf.head_.metric_) + 0.1 * np.random.default_rng(0).normal(size=clf.head_.metric_.size)
    f0, g0 = loss(theta)
    for k in range(theta.size - 1):  # the last column is the constant: zero gradient
        e = np.zeros_like(theta)
        e[k] = 1e-6
        fd = (loss(theta + e)[0] - loss(theta - e)[0]) / 2e-6
        assert fd == pytest.approx(g0[k], rel=1e-4, abs=1e-8)


def test_prototype_scores_are_negative_distances(fitted, episodic_tasks):
    clf = fitted["episodic", "prototype"]
    task = episodic_tasks[1][0]
    model = clf.adapt(task.X_support, task.y_support)
    Phi = clf._design(task.X_support)
    Pq = clf._design(task.X_query)
    protos = np.stack([Phi[task.y_support == c].mean(axis=0) for c in model.classes_])
    D = (((Pq[:, None, :] - protos[None]) ** 2) * clf.head_.metric_).sum(-1)
    Z = model.scores(task.X_query)
    np.testing.assert_allclose(Z - Z[:, :1], -(D - D[:, :1]), rtol=1e-6, atol=1e-6)


def test_em_improves_the_evidence(fitted):
    for setting in ("shared", "episodic"):
        for head in ("logistic", "ridge"):
            ev = np.asarray(fitted[setting, head].log_evidence_)
            assert ev[-1] > ev[0]
            assert np.sum(np.diff(ev) < -1e-6 * np.abs(ev[:-1])) <= len(ev) // 4


def test_labels_of_any_type_and_binary_decision_function(fitted, episodic_tasks):
    clf = fitted["episodic", "logistic"]
    task = episodic_tasks[1][1]
    names = np.array(["cat", "dog", "emu"])[task.y_support]
    model = clf.adapt(task.X_support, names)
    assert list(model.classes_) == ["cat", "dog", "emu"]
    assert set(model.predict(task.X_query)) <= {"cat", "dog", "emu"}
    keep = task.y_support < 2
    binary = clf.adapt(task.X_support[keep], names[keep])
    assert binary.decision_function(task.X_query).shape == (task.X_query.shape[0],)
    one = clf.adapt(task.X_support[:1], names[:1])  # one class: predicts it
    assert np.all(one.predict(task.X_query) == names[0])
    np.testing.assert_allclose(one.predict_proba(task.X_query), 1.0)


@pytest.mark.parametrize("head", HEADS)
def test_shared_setting_predicts_missing_classes_from_the_prior(fitted, shared_tasks, head):
    clf = fitted["shared", head]
    task = shared_tasks[1][0]
    only = task.y_support == task.y_support[0]
    model = clf.adapt(task.X_support[only], task.y_support[only])
    P = model.predict_proba(task.X_query)
    assert P.shape[1] == len(clf.classes_) and np.isfinite(P).all()
    assert np.all(P[:, np.searchsorted(clf.classes_, task.y_support[0])] < 1)
    empty = clf.adapt(task.X_support[:0], task.y_support[:0])  # no support at all: the prior
    assert np.isfinite(empty.predict_proba(task.X_query)).all()


def test_setting_override_and_float32(shared_tasks):
    train = shared_tasks[0].astype(np.float32)
    clf = mf.MetaClassifier(basis=basis(), head="prototype", setting="episodic", max_iter=5).fit(train)
    assert clf.setting_ == "episodic" and not hasattr(clf, "classes_")
    task = train[0]
    model = clf.adapt(task.X_support, task.y_support)  # episodic: the support's own classes
    assert np.array_equal(model.classes_, np.unique(task.y_support))
    assert model.predict_proba(task.X_query).dtype == np.float64


def test_pickle_and_clone(fitted, shared_tasks):
    clf = fitted["shared", "logistic"]
    back = pickle.loads(pickle.dumps(clf))
    test = shared_tasks[1].subset(slice(0, 5))
    assert back.evaluate(test) == clf.evaluate(test)
    state = clf.__getstate__()
    state["_metafast_version"] = "0.0.1"
    with pytest.raises(ValueError, match="not compatible"):
        mf.MetaClassifier().__setstate__(state)
    assert clone(clf).get_params()["head"] == "logistic"


def test_ece_reference():
    conf = np.array([0.95, 0.95, 0.55, 0.55])
    correct = np.array([1.0, 1.0, 1.0, 0.0])
    # bins: 0.95 -> |1 - 0.95| * 2/4, 0.55 -> |0.5 - 0.55| * 2/4
    assert expected_calibration_error(conf, correct) == pytest.approx(0.05)


# ---------------------------------------------------------------------------- bad input


def test_bad_inputs(fitted, shared_tasks, episodic_tasks):
    ep = fitted["episodic", "logistic"]
    sh = fitted["shared", "logistic"]
    task = episodic_tasks[1][0]
    with pytest.raises(ValueError, match="not whole numbers"):
        ep.adapt(task.X_support, task.y_support + 0.5)
    with pytest.raises(ValueError, match="argument 'y'.*nan"):
        ep.adapt(task.X_support, np.where(np.arange(len(task.y_support)) == 1, np.nan, task.y_support))
    X = task.X_support.copy()
    X[0, 1] = np.inf
    with pytest.raises(ValueError, match="argument 'X' contains inf"):
        ep.adapt(X, task.y_support)
    with pytest.raises(ValueError, match="never seen in meta-training"):
        sh.adapt(shared_tasks[1][0].X_support, shared_tasks[1][0].y_support + 7)
    with pytest.raises(ValueError, match="more than max_classes=2"):
        mf.MetaClassifier(basis=basis(9), max_classes=2, max_iter=2).fit(episodic_tasks[0])
    bad = episodic_tasks[1].subset(slice(0, 3))
    bad.y_query[bad.query_offsets[2]] = 7
    with pytest.raises(ValueError, match="task 2 has query label 7 that is absent from its support"):
        ep.evaluate(bad)
    bad_shared = shared_tasks[1].subset(slice(0, 3))
    bad_shared.y_support[bad_shared.support_offsets[1]] = 9
    with pytest.raises(ValueError, match="task 1 of argument 'tasks' has label 9"):
        sh.evaluate(bad_shared)
    with pytest.raises(TypeError, match="regression.*MetaBayes"):
        mf.MetaClassifier(max_iter=2).fit(mf.tasks.load("sinusoid", n_tasks=5))
    with pytest.raises(TypeError, match="MetaClassifier"):
        mf.MetaBayes(max_iter=2).fit(shared_tasks[0])
    with pytest.raises(TypeError, match="MetaClassifier"):
        mf.MetaRidge().fit(shared_tasks[0])
    with pytest.raises(ValueError, match="parameter 'head'"):
        mf.MetaClassifier(head="svm").fit(shared_tasks[0])
    with pytest.raises(ValueError, match="parameter 'setting'"):
        mf.MetaClassifier(setting="relabelled").fit(shared_tasks[0])


def test_fit_from_a_stream_of_chunks_equals_fit_from_the_taskset(shared_tasks):
    train, test = shared_tasks[0].subset(slice(0, 60)), shared_tasks[1].subset(slice(0, 10))
    whole = mf.MetaClassifier(basis=basis(), head="ridge", max_iter=5).fit(train)
    chunks = mf.MetaClassifier(basis=basis(), head="ridge", max_iter=5).fit([train[:20], train[20:]])
    assert whole.evaluate(test) == pytest.approx(chunks.evaluate(test))


def test_thread_count_and_train_rows(shared_tasks):
    train, test = shared_tasks[0].subset(slice(0, 60)), shared_tasks[1].subset(slice(0, 10))
    one = mf.MetaClassifier(basis=basis(), max_iter=5, n_jobs=1).fit(train)
    two = mf.MetaClassifier(basis=basis(), max_iter=5, n_jobs=2).fit(train)
    np.testing.assert_allclose(one.predict_tasks_proba(test), two.predict_tasks_proba(test), atol=1e-10)
    support_only = mf.MetaClassifier(basis=basis(), max_iter=5, train_rows="support").fit(train)
    assert not np.allclose(support_only.head_.prior_.cov, one.head_.prior_.cov)
    with pytest.raises(ValueError, match="train_rows"):
        mf.MetaClassifier(train_rows="query").fit(train)
