import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _builtin_plugins_only():
    """metafast's own tests see the built-in families and loaders only, never the plugins
    installed on the developer's machine (tests that need entry points build their own host)."""
    from metafast.plugins import PluginHost, using_host

    with using_host(PluginHost(entry_points=False)):
        yield


def _local_cluster(processes: bool):
    """A two-worker LocalCluster with one thread per worker and its Client (skips without Dask)."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=processes, dashboard_address=None)
    return cluster, distributed.Client(cluster)


@pytest.fixture(scope="module")
def client():
    """A Dask Client on two in-process workers, shared by the tests of a module."""
    cluster, c = _local_cluster(processes=False)
    with cluster, c:
        yield c


@pytest.fixture
def process_client():
    """A Dask Client on two worker processes (a worker can be killed), for one test."""
    cluster, c = _local_cluster(processes=True)
    with cluster, c:
        yield c
