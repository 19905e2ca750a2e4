"""Task-models family: a basis of regressors, one fitted per chosen training task."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LinearRegression

import metafast as mf
from metafast.basis.task_models import TaskModels


@pytest.fixture
def tasks():
    return mf.tasks.load("sinusoid", n_tasks=12, n_support=5, n_query=10, seed=3)


def test_columns_are_predictions_of_models_fitted_on_chosen_tasks(tasks):
    B = TaskModels(n_basis=4, estimator=LinearRegression(), random_state=0).fit(tasks)
    assert len(set(B.task_indices_)) == 4
    X = np.linspace(-5, 5, 7)[:, None]
    Phi = B.design(X)
    assert Phi.shape == (7, 4)
    for col, t in enumerate(B.task_indices_):
        task = tasks[int(t)]
        Xt = np.concatenate([task.X_support, task.X_query])
        yt = np.concatenate([task.y_support, task.y_query])
        ref = LinearRegression().fit(Xt, yt).predict(X)
        np.testing.assert_allclose(Phi[:, col], ref, rtol=1e-10, atol=1e-10)


def test_default_random_forest_is_reproducible_and_fused_sums_work(tasks):
    B1 = mf.basis.make("task-models", n_basis=3, random_state=7).fit(tasks)
    B2 = clone(B1).fit_tasks(tasks)
    X = tasks.X_query[:20]
    assert np.array_equal(B1.design(X), B2.design(X))
    w = np.array([0.5, -1.0, 2.0])
    np.testing.assert_allclose(B1.weighted_sum(X, w), B1.design(X) @ w, rtol=1e-12)
    assert B1.design(X.astype(np.float32)).dtype == np.float32
    assert B1.design(np.zeros((0, 1))).shape == (0, 3)


def test_support_only_option(tasks):
    B = TaskModels(n_basis=2, estimator=LinearRegression(), use_query=False, random_state=1)
    B.fit(tasks)
    t = int(B.task_indices_[0])
    ref = LinearRegression().fit(tasks[t].X_support, tasks[t].y_support)
    np.testing.assert_allclose(B.design(tasks[t].X_query)[:, 0], ref.predict(tasks[t].X_query))


def test_errors(tasks):
    with pytest.raises(TypeError, match="TaskSet"):
        TaskModels().fit(tasks.X_support)
    with pytest.raises(ValueError, match="at least 20 training tasks"):
        TaskModels(n_basis=20).fit(tasks)
    with pytest.raises(NotFittedError):
        TaskModels().design(np.zeros((2, 1)))
    B = TaskModels(n_basis=2, estimator=LinearRegression(), random_state=0).fit(tasks)
    with pytest.raises(ValueError, match="'X'.*features"):
        B.design(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="'X'.*NaN"):
        B.design(np.array([[np.nan]]))


def test_classifiers_give_the_probability_of_the_positive_label():
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    import metafast as mf

    tasks = mf.tasks.load("logistic", n_tasks=20, n_classes=2, n_support=20, n_query=10, seed=0)
    B = TaskModels(n_basis=4, estimator=LogisticRegression(), random_state=0).fit(tasks)
    X = tasks[0].X_query
    Phi = B.design(X)
    for i, t in enumerate(B.task_indices_):
        task = tasks[int(t)]
        ref = LogisticRegression().fit(
            np.concatenate([task.X_support, task.X_query]), np.concatenate([task.y_support, task.y_query])
        )
        np.testing.assert_allclose(Phi[:, i], ref.predict_proba(X)[:, 1], rtol=1e-6)
    clf = mf.MetaClassifier(basis=B, head="logistic", max_iter=5).fit(tasks)
    assert 0.5 < clf.evaluate(tasks)["accuracy"] <= 1
    with pytest.raises(TypeError, match="integer class labels"):
        TaskModels(n_basis=2, estimator=LogisticRegression()).fit(mf.tasks.load("sinusoid", n_tasks=5))


def test_multiclass_classifiers_give_aligned_probabilities_without_the_first_label():
    """K labels: K - 1 columns per model, each model's predict_proba placed on the TaskSet's sorted
    labels (0 for labels its task never showed), the first label's column dropped."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    labels = np.array([3, 7, 9, 11])  # not 0..K-1: alignment must use classes_
    tasks_list = []
    for t in range(8):
        present = labels if t % 2 == 0 else labels[[0, 2, 3]]  # odd tasks never show label 7
        X = rng.normal(size=(24, 2))
        y = present[np.argmax(X @ rng.normal(size=(2, present.size)), axis=1)]
        y[: present.size] = present  # every present label occurs
        tasks_list.append(mf.tasks.Task(X[:12], y[:12], X[12:], y[12:]))
    tasks = mf.tasks.TaskSet.from_list(tasks_list, label_setting="shared")
    B = TaskModels(n_basis=6, estimator=LogisticRegression(), random_state=1).fit(tasks)
    assert B.n_models_ == 2 and B.classes_.tolist() == labels.tolist()
    assert (B.task_indices_ % 2 == 1).any()  # a model that never saw label 7: its column is 0
    odd = int(np.flatnonzero(B.task_indices_ % 2 == 1)[0])
    Xn = rng.normal(size=(5, 2))
    Phi = B.design(Xn)
    assert Phi.shape == (5, 6)
    for i, t in enumerate(B.task_indices_):
        task = tasks[int(t)]
        ref = LogisticRegression().fit(
            np.concatenate([task.X_support, task.X_query]), np.concatenate([task.y_support, task.y_query])
        )
        full = np.zeros((5, 4))
        for j, lab in enumerate(ref.classes_):
            full[:, labels.tolist().index(lab)] = ref.predict_proba(Xn)[:, j]
        np.testing.assert_allclose(Phi[:, 3 * i : 3 * i + 3], full[:, 1:], rtol=1e-6, atol=1e-12)
    assert np.all(Phi[:, 3 * odd] == 0)
    clf = mf.MetaClassifier(basis=B, head="logistic", max_iter=5, n_jobs=1).fit(tasks)
    proba = clf.adapt(tasks[0].X_support, tasks[0].y_support).predict_proba(Xn)
    assert proba.shape == (5, 4) and np.allclose(proba.sum(axis=1), 1)
    with pytest.raises(ValueError, match="multiple of 3"):
        TaskModels(n_basis=4, estimator=LogisticRegression()).fit(tasks)


def test_classifier_without_predict_proba_is_a_clear_error():
    from sklearn.svm import LinearSVC

    tasks = mf.tasks.load("logistic", n_tasks=6, n_classes=2, n_support=10, n_query=5, seed=0)
    with pytest.raises(TypeError, match="predict_proba"):
        TaskModels(n_basis=2, estimator=LinearSVC()).fit(tasks)
