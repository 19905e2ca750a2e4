"""The plugin manager: loads plugins from the ``metafast`` entry-point group into registries.

One ``PluginHost`` owns one pluggy ``PluginManager`` and three registries (basis families, task
loaders, benchmark suites).  It loads lazily, once, on first use of a registry, never on
``import metafast``:

1. the built-in plugins (``DEFAULT_PLUGINS``), which register through the same hooks as
   third-party ones;
2. every entry point of the group ``metafast``, each on its own, in (distribution, name) order.

A plugin that fails to import, is not a valid pluggy plugin, implements an unknown
``metafast_*`` hook, raises in a hook, registers a name that is already taken or registers
something that is not a valid family or loader is skipped as a whole (none of its registrations
is kept) and reported in a ``MetafastPluginWarning`` naming its distribution, version and the
error; everything else keeps working.  Environment switches, read when plugins load:

- ``METAFAST_STRICT_PLUGINS=1``: raise ``PluginError`` instead of warning (use it in CI);
- ``METAFAST_DISABLE_PLUGINS=a,b``: skip the named plugins (entry-point or distribution names);
- ``METAFAST_DISABLE_PLUGIN_AUTOLOAD=1``: load no entry points at all (built-ins only).

``plugin_report()`` is what ``metafast plugins`` prints (formatted by the CLI).

Layout: ``registry`` (Registry, records, errors, validators), ``host`` (PluginHost, entry
points, switches); this module holds the current host and the functions the rest of metafast
uses.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from metafast.plugins.host import (
    AUTOLOAD_ENV,
    DEFAULT_PLUGINS,
    DISABLE_ENV,
    GROUP,
    STRICT_ENV,
    PluginHost,
    iter_entry_points,
    normalize_name,
)
from metafast.plugins.registry import (
    MetafastPluginWarning,
    PluginError,
    PluginRecord,
    Registry,
    UnknownNameError,
    set_validator,
)

# ---------------------------------------------------------------------------------- module API
_host_lock = threading.Lock()
_host: PluginHost | None = None


def get_host() -> PluginHost:
    """The plugin host that ``mf.basis`` / ``mf.tasks`` use (created on first call)."""
    global _host
    with _host_lock:
        if _host is None:
            _host = PluginHost()
        return _host


def set_host(host: PluginHost | None) -> PluginHost | None:
    """Make ``host`` the current plugin host (None: a fresh default one on next use)."""
    global _host
    with _host_lock:
        previous, _host = _host, host
    return previous


@contextlib.contextmanager
def using_host(host: PluginHost) -> Iterator[PluginHost]:
    """Use ``host`` inside the block, e.g. ``PluginHost(entry_points=False)`` in tests."""
    previous = set_host(host)
    try:
        yield host
    finally:
        set_host(previous)


def reload_plugins() -> PluginHost:
    """Forget the loaded plugins; the next registry use loads them again (after pip install)."""
    set_host(None)
    return get_host()


def register_plugin(plugin: object, name: str | None = None) -> dict:
    """Register an in-process plugin (module or object with hookimpls) on the current host."""
    return get_host().register_plugin(plugin, name).as_dict()


def basis_registry() -> Registry:
    return get_host().basis


def loader_registry() -> Registry:
    return get_host().loaders


def suite_registry() -> Registry:
    return get_host().suites


def plugin_report() -> list[dict]:
    """Every plugin, built-in first, as dicts with the keys

    ``name`` (entry-point or module name), ``module``, ``distribution``, ``version``,
    ``builtin`` (bool), ``status`` ("loaded" | "failed" | "disabled"), ``error`` (str or None),
    ``provides`` ({"basis family": [names], "task loader": [...], "benchmark suite": [...]},
    only kinds it provides) and ``hooks`` (hook names it implements).
    """
    return get_host().report()


# the public classes are documented (and shown in tracebacks) as metafast.plugins.X
for _cls in (MetafastPluginWarning, PluginError, PluginHost, PluginRecord, Registry, UnknownNameError):
    _cls.__module__ = __name__
del _cls

__all__ = [
    "AUTOLOAD_ENV",
    "DEFAULT_PLUGINS",
    "DISABLE_ENV",
    "GROUP",
    "STRICT_ENV",
    "MetafastPluginWarning",
    "PluginError",
    "PluginHost",
    "PluginRecord",
    "Registry",
    "UnknownNameError",
    "basis_registry",
    "get_host",
    "iter_entry_points",
    "loader_registry",
    "normalize_name",
    "plugin_report",
    "register_plugin",
    "reload_plugins",
    "set_host",
    "set_validator",
    "suite_registry",
    "using_host",
]
