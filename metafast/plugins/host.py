"""The plugin host: loads the built-in plugins and the ``metafast`` entry points into its
registries, once, on first use, with the environment switches described in ``metafast.plugins``."""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import os
import re
import sys
import threading
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import pluggy

from metafast import hookspecs
from metafast.hookspecs import HOOK_KINDS
from metafast.plugins.registry import MetafastPluginWarning, PluginError, PluginRecord, Registry, _RegistrationError

GROUP = "metafast"
DEFAULT_PLUGINS = ("metafast.basis._builtins", "metafast.tasks._builtins", "metafast._model_types")
STRICT_ENV = "METAFAST_STRICT_PLUGINS"
DISABLE_ENV = "METAFAST_DISABLE_PLUGINS"
AUTOLOAD_ENV = "METAFAST_DISABLE_PLUGIN_AUTOLOAD"


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

    def load(self) -> PluginHost:
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

    def lenient_copy(self) -> PluginHost:
        """A new host loading the same plugins with the same switches, except that a broken
        plugin is reported instead of raised (``metafast plugins`` lists them even when strict)."""
        return PluginHost(
            builtins=self.builtins,
            entry_points=self.entry_points,
            plugins=self.plugins,
            strict=False,
            disabled=self._disabled,
            env=self._env,
        )

    def strict(self) -> bool:
        """Whether a broken plugin raises (``METAFAST_STRICT_PLUGINS`` or the ``strict`` argument)."""
        return self._switches()[0]

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
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # metafast/
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    return level


class _HookError(Exception):
    """A plugin's hook raised: carries (hook name, the exception)."""
