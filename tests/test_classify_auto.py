"""MetaClassifier's basis="auto", standardisation and their bad-input rules."""

import warnings

import numpy as np
import pytest

import metafast as mf
from metafast.basis import BasisFamily
from metafast.basis.standardized import Standardized
from metafast.learners.classify import _auto_basis


def _episodes(n_tasks=60, seed=0, scale=(1.0, 1000.0)):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(600, 2)) * np.array(scale)
    y = (X[:, 0] > 0).astype(int) + 2 * (X[:, 1] > 0)
    return mf.tasks.episodes(X, y, n_way=2, k_shot=3, n_query=5, n_tasks=n_tasks, seed=seed)


def test_auto_records_its_choice_and_scores():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = mf.MetaClassifier(max_iter=10, metric="none", normalize="none").fit(_episodes())
    res = clf.cv_results_
    assert clf.basis_choice_ in res["candidate"]
    ok = [n for n, s in zip(res["nll"], res["status"]) if s == "ok"]
    assert clf.basis_choice_ == res["candidate"][int(np.nanargmin(res["nll"]))] and len(ok) >= 1
    assert isinstance(clf.basis_, Standardized)
    assert clf.evaluate(_episodes(20, seed=1))["accuracy"] > 0.7


def test_too_few_tasks_fall_back_to_linear_with_a_warning():
    with pytest.warns(UserWarning, match="too few"):
        clf = mf.MetaClassifier(max_iter=5).fit(_episodes(4))
    assert clf.basis_choice_ == "linear"


class Broken(BasisFamily):
    n_basis = 3

    def design(self, X):
        raise RuntimeError("broken plugin family")


def test_a_failing_candidate_is_skipped_by_name_and_all_failing_is_an_error():
    tasks = _episodes()
    good = {"linear": Standardized(mf.basis.make("linear")), "broken": Broken()}
    clf = mf.MetaClassifier(max_iter=5)
    with pytest.warns(UserWarning, match="'broken' failed"):
        name, _, res = _auto_basis.choose_basis(clf, tasks, 60.0, good)
    assert name == "linear" and res["status"][1].startswith("RuntimeError")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="every candidate basis failed"):
        _auto_basis.choose_basis(clf, tasks, 60.0, {"broken": Broken()})


def test_explicit_basis_is_never_changed_and_standardize_is_optional():
    tasks = _episodes()
    B = mf.basis.make("polynomial", n_basis=6)
    clf = mf.MetaClassifier(basis=B, metric="none", normalize="none", max_iter=5).fit(tasks)
    assert isinstance(clf.basis_, Standardized) and type(clf.basis_.inner_) is type(B)
    assert not hasattr(clf, "basis_choice_")
    raw = mf.MetaClassifier(basis=B, standardize=False, metric="none", normalize="none", max_iter=5).fit(tasks)
    assert type(raw.basis_) is type(B)
    fitted = mf.basis.make("polynomial", n_basis=6).fit(tasks.X_support)
    assert type(mf.MetaClassifier(basis=fitted, metric="none", normalize="none", max_iter=5).fit(tasks).basis_) is type(
        B
    )
    with pytest.raises(TypeError, match="standardize"):
        mf.MetaClassifier(standardize="yes").fit(tasks)


def test_standardisation_makes_the_fit_scale_free():
    a = _episodes(scale=(1.0, 1.0))
    b = _episodes(scale=(1e-3, 1e4))
    kw = {"basis": mf.basis.make("polynomial", n_basis=6), "max_iter": 10}
    pa = mf.MetaClassifier(**kw).fit(a).predict_tasks_proba(a[:5])
    pb = mf.MetaClassifier(**kw).fit(b).predict_tasks_proba(b[:5])
    np.testing.assert_allclose(pa, pb, atol=1e-6)
