"""MetaBayes(learn_basis=True): partial EM between basis phases climbs the same objective."""

import warnings

import numpy as np
import pytest

import metafast as mf


@pytest.fixture(scope="module")
def tasks():
    return mf.tasks.load("sinusoid", n_tasks=120, n_support=8, n_query=4, seed=2)


def fit(tasks, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mf.MetaBayes(basis=mf.basis.make("rbf", n_basis=10), learn_basis=True, basis_rounds=4, **params).fit(
            tasks
        )


def test_partial_em_schedule_is_monotone_and_ends_converged(tasks):
    model = fit(tasks)
    trace = np.asarray(model.basis_log_evidence_)
    assert np.all(np.diff(trace) >= -1e-9 * np.abs(trace).max())
    assert model.converged_
    plain = mf.MetaBayes(basis=mf.basis.make("rbf", n_basis=10)).fit(tasks)
    assert model.log_evidence_[-1] > plain.log_evidence_[-1]


def test_old_schedule_still_available(tasks):
    model = fit(tasks, basis_em_iter=None)
    assert model.converged_ and len(model.basis_log_evidence_) >= 2


def test_bad_basis_em_iter_is_named(tasks):
    with pytest.raises(ValueError, match="basis_em_iter"):
        mf.MetaBayes(learn_basis=True, basis_em_iter=0).fit(tasks)
