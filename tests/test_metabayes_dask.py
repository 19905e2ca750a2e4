"""MetaBayes with backend="dask": the map-reduce fit matches the in-process fit."""

import warnings

import numpy as np
import pytest

import metafast as mf

distributed = pytest.importorskip("distributed")


def test_dask_fit_matches_in_process_fit():
    tasks = mf.tasks.load("sinusoid", n_tasks=120, n_support=5, n_query=5, seed=0)
    chunks = [tasks[0:50], tasks[50:90], tasks[90:120]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        local = mf.MetaBayes(basis=mf.basis.make("rbf", n_basis=12, length_scale=1.0), max_iter=8, tol=0).fit(chunks)
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                      dashboard_address=None) as cluster, distributed.Client(cluster):
            remote = mf.MetaBayes(basis=mf.basis.make("rbf", n_basis=12, length_scale=1.0), max_iter=8, tol=0,
                                  backend="dask").fit(chunks)
    np.testing.assert_allclose(remote.log_evidence_, local.log_evidence_, rtol=1e-12)
    np.testing.assert_allclose(remote.covariance_, local.covariance_, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(remote.noise_var_, local.noise_var_, rtol=1e-12)


def test_dask_backend_without_client_is_a_clear_error():
    tasks = mf.tasks.load("sinusoid", n_tasks=10, n_support=5, n_query=5, seed=0)
    with pytest.raises(ValueError, match="Client"):
        mf.MetaBayes(basis=mf.basis.make("rbf", n_basis=5), backend="dask", max_iter=2).fit(tasks)
    with pytest.raises(ValueError, match="backend"):
        mf.MetaBayes(backend="spark").fit(tasks)
