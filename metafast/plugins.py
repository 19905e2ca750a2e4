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

``plugin_report()`` / ``format_plugin_report()`` are what ``metafast plugins`` prints.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.metadata as metadata
import inspect
import os
import re
import sys
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

import pluggy

from metafast import hookspecs
from metafast.hookspecs import HOOK_KINDS

GROUP = "metafast"
DEFAULT_PLUGINS = ("metafast.basis._builtins", "metafast.tasks._builtins")
STRICT_ENV = "METAFAST_STRICT_PLUGINS"
DISABLE_ENV = "METAFAST_DISABLE_PLUGINS"
AUTOLOAD_ENV = "METAFAST_DISABLE_PLUGIN_AUTOLOAD"

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*\Z")


class MetafastPluginWarning(UserWarning):
    """A plugin was skipped because it is broken (see the message for which and why)."""


class PluginError(RuntimeError):
    """A plugin is broken and strict mode is on (or it was registered in-process)."""


class UnknownNameError(KeyError, ValueError):
    """No family / loader of that name; the message lists close matches and what exists."""

    def __str__(self) -> str:  # KeyError would show the message quoted
        return str(self.args[0]) if self.args else ""


class _RegistrationError(Exception):
    """A plugin's call to ``register`` broke a rule (bad name, taken name, bad object)."""


# ---------------------------------------------------------------------------------- records
@dataclass
class PluginRecord:
    """What is known about one plugin: where it comes from, what it provides, how it went."""

    name: str
    module: str | None = None
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False
    status: str = "pending"  # "loaded", "failed" or "disabled"
    error: str | None = None
    provides: dict[str, list[str]] = field(default_factory=dict)
    hooks: list[str] = field(default_factory=list)

    def origin(self) -> str:
        """``plugin 'x' (distribution metafast-x 1.0)``: used in every message about it."""
        if self.distribution is None:
            return f"plugin {self.name!r} (registered in-process)"
        version = f" {self.version}" if self.version else ""
        return f"plugin {self.name!r} (distribution {self.distribution}{version})"

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "module": self.module,
            "distribution": self.distribution,
            "version": self.version,
            "builtin": self.builtin,
            "status": self.status,
            "error": self.error,
            "provides": {k: list(v) for k, v in self.provides.items()},
            "hooks": list(self.hooks),
        }


@dataclass(frozen=True)
class _Entry:
    obj: Callable
    plugin: PluginRecord


# ---------------------------------------------------------------------------------- registries
def _check_callable(obj: Any) -> None:
    if not callable(obj):
        raise TypeError(f"got a {type(obj).__name__}, which is not callable")


# What a registered object of each kind must be.  The package that owns a kind supplies its
# validator (metafast.basis registers the basis-family check when it is imported), so this
# module imports none of the packages it serves and the import graph runs one way.
_VALIDATORS: dict[str, Callable[[Any], None]] = {}


def set_validator(kind: str, check: Callable[[Any], None]) -> None:
    """Make ``check(obj)`` (raising TypeError) the validator of registered objects of ``kind``."""
    if kind not in HOOK_KINDS.values():
        raise ValueError(f"unknown registry kind {kind!r}; the kinds are {sorted(HOOK_KINDS.values())}")
    _VALIDATORS[kind] = check


class Registry:
    """Names -> classes or callables of one kind, each remembering the plugin that provided it."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, _Entry] = {}

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> Callable:
        """The registered object; an unknown name raises UnknownNameError with suggestions."""
        return self._entry(name).obj

    def plugin_of(self, name: str) -> PluginRecord:
        return self._entry(name).plugin

    def describe(self, name: str) -> str:
        """``basis family 'morlet' from plugin 'wavelets' (distribution ...)``, for messages."""
        return f"{self.kind} {name!r} {_provenance(self.plugin_of(name))}"

    def call(self, name: str, **params: Any) -> Any:
        """Look ``name`` up and call it with ``params``, checked against its signature first.

        Unknown or missing parameters give a TypeError that names the family or loader, its
        plugin and the parameters it accepts; errors raised by the object itself pass unchanged.
        """
        obj = self.get(name)
        _check_call_params(self.describe(name), obj, params)
        return obj(**params)

    def register(self, name: str, obj: Callable) -> None:
        """Register one object directly, as an anonymous in-process plugin would.

        Kept for code that fills a registry by hand; plugins use the hooks instead.  Breaking a
        rule raises PluginError and registers nothing.
        """
        try:
            self._check_new(name, obj, {})
        except _RegistrationError as exc:
            raise PluginError(f"cannot register: {exc}") from None
        self._add(name, obj, PluginRecord(name=f"<direct {self.kind} {name}>", status="loaded"))

    def _entry(self, name: str) -> _Entry:
        if not isinstance(name, str):
            raise TypeError(f"{self.kind} names are strings; got {type(name).__name__} {name!r}")
        try:
            return self._items[name]
        except KeyError:
            pass
        close = difflib.get_close_matches(name, list(self._items), n=3, cutoff=0.6)
        if not close:
            close = [n for n in self._items if n.lower() == name.lower()]
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        have = ", ".join(self.names()) or "none"
        raise UnknownNameError(
            f"unknown {self.kind} {name!r}.{hint} Available: {have}. "
            "(Installed plugins and their errors: metafast plugins)"
        )

    def _check_new(self, name: Any, obj: Any, staged: Mapping[str, Any]) -> None:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise _RegistrationError(
                f"registered the {self.kind} name {name!r}; names are non-empty strings of "
                "letters, digits, '-', '_' and '.'"
            )
        if name in self._items:
            raise _RegistrationError(
                f"registered the {self.kind} {name!r}, which is already taken (provided "
                f"{_provenance(self.plugin_of(name))})"
            )
        if name in staged:
            raise _RegistrationError(f"registered the {self.kind} {name!r} twice")
        try:
            _VALIDATORS.get(self.kind, _check_callable)(obj)
        except TypeError as exc:
            raise _RegistrationError(f"registered an invalid {self.kind} {name!r}: {exc}") from None

    def _add(self, name: str, obj: Callable, plugin: PluginRecord) -> None:
        self._items[name] = _Entry(obj, plugin)


def _provenance(plugin: PluginRecord) -> str:
    return "built into metafast" if plugin.builtin else f"from {plugin.origin()}"


def _check_call_params(what: str, obj: Callable, params: Mapping[str, Any]) -> None:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):  # builtins without a signature: let the call decide
        return
    kinds = {p.kind for p in sig.parameters.values()}
    if inspect.Parameter.VAR_KEYWORD not in kinds:
        accepted = [
            n for n, p in sig.parameters.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        unknown = [k for k in params if k not in accepted]
        if unknown:
            hints = []
            for k in unknown:
                close = difflib.get_close_matches(k, accepted, n=1, cutoff=0.6)
                hints.append(f"{k!r} (did you mean {close[0]!r}?)" if close else repr(k))
            raise TypeError(
                f"{what} got unknown parameter(s) {', '.join(hints)}; "
                f"it accepts: {', '.join(accepted) or 'no parameters'}"
            )
    try:
        sig.bind(**params)
    except TypeError as exc:
        raise TypeError(f"{what}: {exc}") from None


# ---------------------------------------------------------------------------------- entry points
def normalize_name(name: str) -> str:
    """Distribution / entry-point name as compared by the disable switch (PEP 503 style)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _env_flag(env: Mapping[str, str], key: str) -> bool:
    return env.get(key, "").strip().lower() not in ("", "0", "false", "no", "off")


def _env_names(env: Mapping[str, str], key: str) -> frozenset[str]:
    return frozenset(normalize_name(n.strip()) for n in env.get(key, "").split(",") if n.strip())


def iter_entry_points(group: str = GROUP) -> list[tuple[str, str | None, metadata.EntryPoint]]:
    """(distribution name, version, entry point) for every entry point of ``group``.

    Sorted by distribution then entry-point name; a distribution seen twice on ``sys.path``
    (for example an editable and a regular install) is listed once, first one wins.
    """
    found: dict[tuple[str, str], tuple[str, str | None, metadata.EntryPoint]] = {}
    for dist in metadata.distributions():
        eps = [ep for ep in dist.entry_points if ep.group == group]
        if not eps:
            continue
        dist_name = dist.metadata["Name"] or "<unnamed distribution>"
        for ep in eps:
            found.setdefault((normalize_name(dist_name), ep.name), (dist_name, dist.version, ep))
    return [found[k] for k in sorted(found)]


# ---------------------------------------------------------------------------------- the host
class PluginHost:
    """One plugin manager with its registries; loads lazily, once, on first use.

    Parameters
    ----------
    builtins : module names registered first, as plugins of the ``metafast`` distribution.
    entry_points : load the ``metafast`` entry-point group (unless
        ``METAFAST_DISABLE_PLUGIN_AUTOLOAD`` is set).
    plugins : extra ``(name, plugin_object)`` pairs registered after the built-ins (in-process
        plugins, mostly for tests), under the same rules as installed ones.
    strict, disabled : override ``METAFAST_STRICT_PLUGINS`` / ``METAFAST_DISABLE_PLUGINS``.
    env : where to read the switches (default ``os.environ`` at load time).
    """

    def __init__(
        self,
        *,
        builtins: tuple[str, ...] = DEFAULT_PLUGINS,
        entry_points: bool = True,
        plugins: tuple[tuple[str, object], ...] = (),
        strict: bool | None = None,
        disabled: tuple[str, ...] | None = None,
        env: Mapping[str, str] | None = None,
    ):
        self.builtins = tuple(builtins)
        self.entry_points = entry_points
        self.plugins = tuple(plugins)
        self._strict = strict
        self._disabled = disabled
        self._env = env
        self._lock = threading.RLock()
        self._loaded = False
        self.pm: pluggy.PluginManager | None = None
        self._registries: dict[str, Registry] = {}
        self._records: list[PluginRecord] = []

    # ------------------------------------------------------------------ public
    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self) -> "PluginHost":
        """Load every plugin now (idempotent and thread-safe)."""
        if self._loaded:
            return self
        with self._lock:
            if not self._loaded:
                self._load()
                self._loaded = True
        return self

    def registry(self, kind: str) -> Registry:
        return self.load()._registries[kind]

    @property
    def basis(self) -> Registry:
        return self.registry("basis family")

    @property
    def loaders(self) -> Registry:
        return self.registry("task loader")

    @property
    def suites(self) -> Registry:
        return self.registry("benchmark suite")

    def records(self) -> list[PluginRecord]:
        return list(self.load()._records)

    def report(self) -> list[dict]:
        """One dict per plugin (loaded, failed or disabled); see ``plugin_report``."""
        return [r.as_dict() for r in self.records()]

    def register_plugin(self, plugin: object, name: str | None = None) -> PluginRecord:
        """Register an in-process plugin (a module or object with hookimpls) now.

        Same rules as installed plugins, but a broken one raises ``PluginError`` (the caller is
        right here to fix it) and leaves the registries unchanged.
        """
        self.load()
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        with self._lock:
            record = PluginRecord(name=name, module=getattr(plugin, "__name__", None))
            self._add_plugin(record, lambda: plugin, strict=True)
        return record

    # ------------------------------------------------------------------ loading
    def _switches(self) -> tuple[bool, frozenset[str], bool]:
        env = os.environ if self._env is None else self._env
        strict = _env_flag(env, STRICT_ENV) if self._strict is None else bool(self._strict)
        if self._disabled is None:
            disabled = _env_names(env, DISABLE_ENV)
        else:
            disabled = frozenset(normalize_name(n) for n in self._disabled)
        autoload = self.entry_points and not _env_flag(env, AUTOLOAD_ENV)
        return strict, disabled, autoload

    def _load(self) -> None:
        from metafast._version import __version__

        strict, disabled, autoload = self._switches()
        self.pm = pluggy.PluginManager(GROUP)
        self.pm.add_hookspecs(hookspecs)
        self._registries = {kind: Registry(kind) for kind in HOOK_KINDS.values()}
        self._records = []
        for modname in self.builtins:
            record = PluginRecord(modname, modname, "metafast", __version__, builtin=True)
            self._add_plugin(record, lambda m=modname: importlib.import_module(m), strict)
        for name, obj in self.plugins:
            record = PluginRecord(name, getattr(obj, "__name__", None))
            self._add_plugin(record, lambda o=obj: o, strict)
        if not autoload:
            return
        for dist_name, version, ep in iter_entry_points():
            record = PluginRecord(ep.name, ep.value, dist_name, version)
            if {normalize_name(ep.name), normalize_name(dist_name)} & disabled:
                record.status = "disabled"
                self._records.append(record)
                continue
            self._add_plugin(record, ep.load, strict)

    def _add_plugin(self, record: PluginRecord, load: Callable[[], object], strict: bool) -> None:
        """Import, register and run one plugin's hooks; keep all its registrations or none."""
        assert self.pm is not None
        self._records.append(record)
        try:
            plugin = load()
        except Exception as exc:  # ImportError, SyntaxError, anything raised at import
            return self._fail(record, "failed to import", exc, strict)
        try:
            self.pm.register(plugin, name=record.name)
        except Exception as exc:  # PluginValidationError, name or object already registered
            return self._fail(record, "is not a valid metafast plugin", exc, strict)
        try:
            staged = self._run_hooks(plugin, record)
        except Exception as exc:
            self.pm.unregister(plugin)
            if isinstance(exc, _RegistrationError):
                return self._fail(record, str(exc), None, strict)
            if isinstance(exc, _HookError):
                hook, cause = exc.args
                return self._fail(record, f"raised in {hook}", cause, strict)
            return self._fail(record, "is not a valid metafast plugin", exc, strict)
        for kind, items in staged.items():
            for name, obj in items.items():
                self._registries[kind]._add(name, obj, record)
            if items:
                record.provides[kind] = sorted(items)
        record.status = "loaded"

    def _run_hooks(self, plugin: object, record: PluginRecord) -> dict[str, dict[str, Any]]:
        assert self.pm is not None
        callers = self.pm.get_hookcallers(plugin) or []
        record.hooks = sorted(c.name for c in callers)
        unknown = [c.name for c in callers if c.spec is None]
        if unknown:
            raise _RegistrationError(
                f"implements unknown hook(s) {', '.join(unknown)} (this metafast has "
                f"{', '.join(HOOK_KINDS)}; is the plugin written for another version?)"
            )
        staged: dict[str, dict[str, Any]] = {kind: {} for kind in HOOK_KINDS.values()}
        for caller in callers:
            kind = HOOK_KINDS[caller.name]
            for impl in caller.get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                if impl.hookwrapper or getattr(impl, "wrapper", False):
                    raise _RegistrationError(f"implements {caller.name} as a wrapper; write a plain hook")
                self._call_hook(caller.name, impl, self._registries[kind], staged[kind])
        return staged

    @staticmethod
    def _call_hook(hook: str, impl: Any, registry: Registry, staged: dict[str, Any]) -> None:
        errors: list[_RegistrationError] = []
        open_ = [True]

        def register(name: str, obj: Callable) -> None:
            if not open_[0]:
                raise RuntimeError(f"register() of {hook} was called after the hook returned")
            try:
                registry._check_new(name, obj, staged)
            except _RegistrationError as exc:
                errors.append(exc)
                raise
            staged[name] = obj

        try:
            impl.function(**{arg: register for arg in impl.argnames})
        except _RegistrationError:
            pass
        except Exception as exc:
            raise _HookError(hook, exc) from exc
        finally:
            open_[0] = False
        if errors:  # raised even if the plugin swallowed the exception
            raise errors[0]

    def _fail(self, record: PluginRecord, what: str, exc: BaseException | None, strict: bool) -> None:
        record.status = "failed"
        detail = f"{type(exc).__name__}: {exc}" if exc is not None else ""
        record.error = f"{what}: {detail}" if detail else what
        verb = "cannot load" if strict else "skipped"
        message = f"metafast {verb} {record.origin()}: it {record.error}"
        if record.distribution is not None and not record.builtin:
            message += f". Set {DISABLE_ENV}={record.name} to skip it quietly"
            if not strict:
                message += f", or {STRICT_ENV}=1 to make this an error"
        if strict:
            raise PluginError(message) from exc
        warnings.warn(message, MetafastPluginWarning, stacklevel=_outside_metafast())


def _outside_metafast() -> int:
    """Stack level of the first caller outside the metafast package (where a warning points)."""
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    return level


class _HookError(Exception):
    """A plugin's hook raised: carries (hook name, the exception)."""


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


def format_plugin_report(report: list[dict] | None = None) -> str:
    """The text ``metafast plugins`` prints: loaded plugins, then failed and disabled ones."""
    from metafast._version import __version__

    report = plugin_report() if report is None else report
    lines = [f"metafast {__version__}: plugins of the entry-point group {GROUP!r}"]

    def title(r: dict) -> str:
        dist = r["distribution"] or "in-process"
        version = f" {r['version']}" if r["version"] else ""
        kind = "built-in " if r["builtin"] else ""
        return f"  {kind}{r['name']}  [{dist}{version}]"

    for r in report:
        if r["status"] == "loaded":
            lines.append(title(r))
            for kind, names in r["provides"].items():
                plural = {"basis family": "basis families"}.get(kind, kind + "s")
                lines.append(f"      {plural}: {', '.join(names)}")
            if not r["provides"]:
                lines.append("      (provides nothing)")
    failed = [r for r in report if r["status"] == "failed"]
    if failed:
        lines.append("Failed to load (skipped):")
        lines += [f"{title(r)}\n      {r['error']}" for r in failed]
    disabled = [r for r in report if r["status"] == "disabled"]
    if disabled:
        lines.append(f"Disabled by {DISABLE_ENV}:")
        lines += [title(r) for r in disabled]
    return "\n".join(lines)
