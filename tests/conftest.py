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
