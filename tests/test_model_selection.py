"""Model selection over tasks: TaskKFold, cross_validate_tasks, TaskGridSearchCV."""

import warnings

import numpy as np
import pytest
from joblib import parallel_config
from sklearn.base import clone
from sklearn.exceptions import FitFailedWarning
from sklearn.model_selection import KFold, ShuffleSplit
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import metafast as mf
from metafast.model_selection import (
    TaskGridSearchCV,
    TaskKFold,
    TaskRandomizedSearchCV,
    cross_validate_tasks,
    get_scorer,
    task_splits,
)

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def rbf_tasks(n_tasks, n_support=8, n_query=8, n_basis=8, seed=0, noise=0.1):
    """Tasks drawn from the rbf family itself: f_t = sum_k w_tk g_k, w ~ N(0, I), n_basis
    grid centres on [-5, 5] with the family's default (spacing-based) length scale."""
    rng = np.random.default_rng(seed)
    gen = mf.basis.make("rbf", n_basis=n_basis).fit(np.linspace(-5, 5, 101)[:, None])
    out = []
    for i in range(n_tasks):
        w = rng.normal(size=n_basis)
        X = rng.uniform(-5, 5, size=(n_support + n_query, 1))
        y = gen.weighted_sum(X, w) + noise * rng.normal(size=len(X))
        out.append(
            mf.tasks.Task(X[:n_support], y[:n_support], X[n_support:], y[n_support:], info={"id": i, "customer": i % 6})
        )
    return mf.tasks.TaskSet.from_list(out)


@pytest.fixture(scope="module")
def tasks():
    return rbf_tasks(30)


def bayes(**params):
    return mf.MetaBayes(basis=mf.basis.make("rbf", n_basis=8), max_iter=30, n_jobs=1, **params)


# ---------------------------------------------------------------------------- TaskKFold
def test_taskkfold_partitions_the_tasks(tasks):
    splits = list(TaskKFold(4).split(tasks))
    assert len(splits) == 4 == TaskKFold(4).get_n_splits()
    tests = np.concatenate([test for _, test in splits])
    assert np.array_equal(np.sort(tests), np.arange(len(tasks)))
    for train, test in splits:
        assert np.intersect1d(train, test).size == 0 and train.size + test.size == len(tasks)
    kf = list(KFold(4).split(np.arange(len(tasks))))  # no shuffle: consecutive, as KFold
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(splits, kf))


def test_taskkfold_shuffle_is_reproducible_for_a_seed(tasks):
    def folds(seed):
        return [test.tolist() for _, test in TaskKFold(3, shuffle=True, random_state=seed).split(tasks)]

    assert folds(0) == folds(0)
    assert folds(0) != folds(1)
    assert folds(0) != [test.tolist() for _, test in TaskKFold(3).split(tasks)]


@pytest.mark.parametrize("groups", ["customer", np.arange(30) % 6])
def test_taskkfold_keeps_a_group_in_one_fold(tasks, groups):
    customer = np.array([d["customer"] for d in tasks.info])
    for train, test in TaskKFold(3, shuffle=True, random_state=0).split(tasks, groups=groups):
        assert np.intersect1d(customer[train], customer[test]).size == 0


def test_taskkfold_bad_input(tasks):
    with pytest.raises(ValueError, match=r"n_splits=31 is greater than the number of tasks \(30\)"):
        list(TaskKFold(31).split(tasks))
    with pytest.raises(ValueError, match=r"n_splits=7 is greater than the number of task groups \(6\)"):
        list(TaskKFold(7).split(tasks, groups="customer"))
    with pytest.raises(ValueError, match="'n_splits' must be an integer >= 2"):
        list(TaskKFold(1).split(tasks))
    with pytest.raises(ValueError, match="'groups'='region' is not a key of the info of task 0"):
        list(TaskKFold(3).split(tasks, groups="region"))
    with pytest.raises(ValueError, match=r"one label per task \(30\)"):
        list(TaskKFold(3).split(tasks, groups=np.arange(5)))
    with pytest.raises(TypeError, match="TaskSet"):
        list(TaskKFold(3).split(np.zeros((30, 1))))


def test_task_splits_accepts_sklearn_splitters_and_index_pairs_and_refuses_leaks(tasks):
    pairs = task_splits(ShuffleSplit(3, test_size=0.25, random_state=0), tasks)
    assert len(pairs) == 3 and all(len(test) == 8 for _, test in pairs)
    assert len(task_splits([(np.arange(20), np.arange(20, 30))], tasks)) == 1
    with pytest.raises(ValueError, match=r"split 0 puts task\(s\) \[19\] in both train and test"):
        task_splits([(np.arange(20), np.arange(19, 30))], tasks)
    with pytest.raises(ValueError, match="not task indices"):
        task_splits([(np.arange(20), np.array([30]))], tasks)
    with pytest.raises(ValueError, match="empty test set"):
        task_splits([(np.arange(30), np.array([], dtype=int))], tasks)
    with pytest.raises(ValueError, match="greater than the number of tasks"):
        task_splits(50, tasks)


# ---------------------------------------------------------------------------- no leakage
class SpyRidge(mf.MetaRidge):
    """MetaRidge recording the task ids each fit and evaluate sees (module-level: clones share it)."""

    log: list = []

    def fit(self, tasks, y=None):
        SpyRidge.log.append(("fit", frozenset(d["id"] for d in tasks.info), self.alphas))
        return super().fit(tasks, y)

    def evaluate(self, tasks):
        SpyRidge.log.append(("evaluate", frozenset(d["id"] for d in tasks.info), self.alphas))
        return super().evaluate(tasks)


def test_no_held_out_task_reaches_training(tasks):
    SpyRidge.log.clear()
    cv = TaskKFold(3, shuffle=True, random_state=0)
    TaskGridSearchCV(SpyRidge(basis=mf.basis.make("rbf", n_basis=8)), {"alphas": [0.1, 1.0]}, cv=cv).fit(tasks)
    log = SpyRidge.log
    assert len(log) == 2 * 3 * 2 + 1  # (fit, evaluate) per candidate x fold + refit
    all_ids = frozenset(range(len(tasks)))
    for (kind_f, train, a_f), (kind_e, test, a_e) in zip(log[:-1:2], log[1:-1:2]):
        assert (kind_f, kind_e) == ("fit", "evaluate") and a_f == a_e
        assert not train & test and train | test == all_ids
    held_out = sorted(sorted(test) for kind, test, a in log[:-1] if kind == "evaluate" and a == 0.1)
    assert held_out == sorted(sorted(t.tolist()) for _, t in cv.split(tasks))
    assert log[-1][0] == "fit" and log[-1][1] == all_ids  # the refit sees every task


# ---------------------------------------------------------------------------- cross_validate_tasks
def test_cross_validate_matches_fitting_each_fold_by_hand(tasks):
    cv = TaskKFold(3, shuffle=True, random_state=1)
    out = cross_validate_tasks(bayes(), tasks, cv=cv, scoring=["mse", "nll", "coverage90"], return_train_score=True)
    for k, (train, test) in enumerate(cv.split(tasks)):
        metrics = clone(bayes()).fit(tasks.subset(train)).evaluate(tasks.subset(test))
        assert out["test_mse"][k] == pytest.approx(-metrics["mse"])
        assert out["test_nll"][k] == pytest.approx(-metrics["nll"])
        assert out["test_coverage90"][k] == pytest.approx(-abs(metrics["coverage90"] - 0.9))
        assert out["n_test_tasks"][k] == len(test)
    assert out["fit_time"].shape == (3,) and np.all(out["fit_time"] > 0)
    assert np.all(out["train_mse"] > out["test_mse"] - 1.0)


def test_cross_validate_default_scoring_is_negative_mse_and_is_reproducible(tasks):
    a = cross_validate_tasks(bayes(), tasks, cv=3)
    b = cross_validate_tasks(bayes(), tasks, cv=3, scoring="neg_mse", return_estimator=True)
    assert np.array_equal(a["test_score"], b["test_score"]) and np.all(a["test_score"] < 0)
    assert len(b["estimator"]) == 3 and all(hasattr(e, "mean_") for e in b["estimator"])


def test_scoring_rules():
    metrics = {"mse": 2.0, "nll": 1.5, "accuracy": 0.75, "coverage90": 0.8, "ece": 0.1, "custom": 3.0}
    sign = {name: get_scorer(name).from_metrics(metrics, None) for name in metrics}
    assert sign == {
        "mse": -2.0,
        "nll": -1.5,
        "accuracy": 0.75,
        "coverage90": pytest.approx(-0.1),
        "ece": -0.1,
        "custom": 3.0,
    }
    assert get_scorer("neg_custom").from_metrics(metrics, None) == -3.0
    with pytest.raises(ValueError, match=r"scoring 'r2' is not a metric of .*returns \['accuracy'"):
        get_scorer("r2").from_metrics(metrics, object())
    with pytest.raises(ValueError, match="not a score"):
        get_scorer("mse_ci95")


def test_unknown_metric_is_a_clear_error(tasks):
    with pytest.raises(ValueError, match=r"scoring 'accuracy' is not a metric of MetaRidge.evaluate"):
        cross_validate_tasks(
            mf.MetaRidge(basis=mf.basis.make("rbf", n_basis=8)), tasks, cv=2, scoring="accuracy", error_score="raise"
        )


# ---------------------------------------------------------------------------- TaskGridSearchCV
@pytest.mark.parametrize("scoring", ["nll", "mse"])
def test_grid_search_finds_the_generating_number_of_rbfs(scoring):
    """Tasks come from 8 grid RBFs with the family's own length-scale rule: 4 RBFs cannot express
    them, 24 narrower ones need a 24x24 prior covariance from 40 tasks; 8 is the known best.
    (While writing the test, 8 won for generator seeds 0-5 with both scorings, by 2 or more
    standard errors over folds.)"""
    ts = rbf_tasks(60, seed=3)
    search = TaskGridSearchCV(
        bayes(), {"basis__n_basis": [4, 8, 24]}, scoring=scoring, cv=TaskKFold(3, shuffle=True, random_state=0)
    ).fit(ts)
    assert search.best_params_ == {"basis__n_basis": 8}
    res = search.cv_results_
    assert res["rank_test_score"].tolist()[1] == 1
    assert (
        search.best_score_
        == res["mean_test_score"][1]
        == pytest.approx(np.mean([res[f"split{k}_test_score"][1] for k in range(3)]))
    )
    refit = bayes().set_params(basis__n_basis=8).fit(ts)
    assert np.allclose(search.best_estimator_.mean_, refit.mean_)  # refitted on every task
    assert search.best_estimator_.n_tasks_seen_ == len(ts)
    test = rbf_tasks(20, seed=99)
    assert search.evaluate(test) == refit.evaluate(test)
    assert search.score(test) == pytest.approx(-refit.evaluate(test)[scoring])


def test_cv_results_is_a_dataframe_with_sklearn_keys(tasks):
    pd = pytest.importorskip("pandas")
    search = TaskGridSearchCV(
        bayes(),
        {"basis__n_basis": [5, 8], "covariance": ["full", "diag"]},
        cv=2,
        scoring="nll",
        return_train_score=True,
    ).fit(tasks)
    df = pd.DataFrame(search.cv_results_)
    assert len(df) == 4
    for col in (
        "params",
        "param_basis__n_basis",
        "param_covariance",
        "mean_test_score",
        "std_test_score",
        "rank_test_score",
        "split0_test_score",
        "split1_train_score",
        "mean_fit_time",
        "std_fit_time",
        "mean_score_time",
        "std_score_time",
    ):
        assert col in df.columns
    assert df["params"].tolist() == [{"basis__n_basis": n, "covariance": c} for n in (5, 8) for c in ("full", "diag")]
    means = df["mean_test_score"].to_numpy()
    assert df["rank_test_score"].tolist() == [1 + int(np.sum(means > m)) for m in means]
    assert search.best_index_ == int(np.argmax(means)) and search.best_score_ == means.max()
    assert search.n_splits_ == 2 and search.refit_time_ > 0


def test_grid_over_a_pipeline_basis_and_multimetric_refit(tasks):
    pipe = Pipeline([("scale", StandardScaler()), ("rbf", mf.basis.make("rbf"))])
    search = TaskGridSearchCV(
        mf.MetaBayes(basis=pipe, max_iter=20, n_jobs=1),
        {"basis__rbf__n_basis": [4, 8]},
        scoring=["mse", "nll"],
        refit="nll",
        cv=2,
    ).fit(tasks)
    assert "mean_test_mse" in search.cv_results_ and "rank_test_nll" in search.cv_results_
    assert search.best_estimator_.basis_.n_basis == search.best_params_["basis__rbf__n_basis"]
    with pytest.raises(ValueError, match="'refit' must name one of the scorers"):
        TaskGridSearchCV(bayes(), {"covariance": ["iso"]}, scoring=["mse", "nll"], cv=2).fit(tasks)


def test_unknown_grid_key_fails_before_any_fit_in_sklearn_words(tasks):
    SpyRidge.log.clear()
    with pytest.raises(ValueError, match=r"Invalid parameter 'n_basis' for estimator SpyRidge.*Valid parameters are"):
        TaskGridSearchCV(SpyRidge(), {"alphas": [1.0], "n_basis": [4, 8]}, cv=2).fit(tasks)
    assert SpyRidge.log == []
    with pytest.raises(ValueError, match="Invalid parameter 'nope' for estimator RBF"):
        TaskGridSearchCV(bayes(), {"basis__nope": [1]}, cv=2).fit(tasks)


def test_more_folds_than_tasks_is_refused(tasks):
    with pytest.raises(ValueError, match=r"n_splits=40 is greater than the number of tasks \(30\)"):
        TaskGridSearchCV(bayes(), {"covariance": ["iso"]}, cv=40).fit(tasks)


def test_failed_candidates_rank_last_with_a_warning(tasks):
    grid = {"covariance": ["iso", "bogus"]}
    with pytest.warns(FitFailedWarning, match="2 of the 4 fits failed.*covariance"):
        search = TaskGridSearchCV(bayes(), grid, cv=2).fit(tasks)
    assert np.isnan(search.cv_results_["mean_test_score"][1])
    assert search.cv_results_["rank_test_score"].tolist() == [1, 2] and search.best_params_ == {"covariance": "iso"}
    with pytest.raises(ValueError, match="covariance"):
        TaskGridSearchCV(bayes(), grid, cv=2, error_score="raise").fit(tasks)
    with pytest.raises(ValueError, match="all 2 fits failed"):
        TaskGridSearchCV(bayes(), {"covariance": ["bogus"]}, cv=2).fit(tasks)


def test_parallel_search_gives_the_same_results(tasks):
    grid = {"basis__n_basis": [5, 8], "covariance": ["full", "iso"]}
    serial = TaskGridSearchCV(bayes(), grid, cv=3, scoring="nll").fit(tasks)
    with parallel_config(backend="threading"):
        threaded = TaskGridSearchCV(bayes(), grid, cv=3, scoring="nll", n_jobs=2).fit(tasks)
    assert np.array_equal(serial.cv_results_["mean_test_score"], threaded.cv_results_["mean_test_score"])
    assert serial.best_params_ == threaded.best_params_


def test_progress_bar_counts_every_fit(tasks, monkeypatch):
    seen = {}

    class Bar:
        def __init__(self, total, desc):
            seen["total"], seen["n"] = total, 0

        def update(self, k):
            seen["n"] += k

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr("metafast.model_selection._validation.progress_bar", Bar)
    TaskGridSearchCV(bayes(), {"covariance": ["iso", "diag"]}, cv=3, verbose=1).fit(tasks)
    assert seen == {"total": 6, "n": 6}


def test_randomized_search_is_reproducible(tasks):
    dist = {"basis__n_basis": [4, 5, 6, 7, 8], "covariance": ["full", "diag", "iso"]}
    a = TaskRandomizedSearchCV(bayes(), dist, n_iter=3, cv=2, random_state=0, refit=False).fit(tasks)
    b = TaskRandomizedSearchCV(bayes(), dist, n_iter=3, cv=2, random_state=0, refit=False).fit(tasks)
    assert a.cv_results_["params"] == b.cv_results_["params"] and len(a.cv_results_["params"]) == 3
    assert not hasattr(a, "best_estimator_")
    with pytest.raises(Exception, match="no refitted best_estimator_"):
        a.evaluate(tasks)


def test_search_with_groups_keeps_customers_together(tasks):
    SpyRidge.log.clear()
    TaskGridSearchCV(SpyRidge(basis=mf.basis.make("rbf", n_basis=8)), {"alphas": [1.0]}, cv=3, refit=False).fit(
        tasks, groups="customer"
    )
    customer = {d["id"]: d["customer"] for d in tasks.info}
    for (_, train, _), (_, test, _) in zip(SpyRidge.log[::2], SpyRidge.log[1::2]):
        assert not {customer[i] for i in train} & {customer[i] for i in test}


def test_search_is_exported_at_top_level():
    assert mf.TaskGridSearchCV is TaskGridSearchCV
    assert mf.model_selection.TaskKFold is TaskKFold
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "TaskGridSearchCV" in repr(TaskGridSearchCV(bayes(), {"covariance": ["iso"]}))


def test_default_scoring_is_accuracy_for_classification_tasks(rng):
    from metafast.model_selection._scoring import check_scoring

    labels = mf.tasks.TaskSet.from_list(
        [mf.tasks.Task(rng.normal(size=(4, 2)), np.array([0, 1, 0, 1]), rng.normal(size=(2, 2)), np.array([1, 0]))]
    )
    scorers, multi = check_scoring(None, labels)
    assert not multi and scorers["score"].metric == "accuracy" and scorers["score"].sign == 1.0
    assert check_scoring(None, rbf_tasks(2))[0]["score"].metric == "mse"
