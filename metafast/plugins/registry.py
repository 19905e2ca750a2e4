"""Registries of the plugin host: names -> families, loaders or suites, each remembering the
plugin that provided it, with the checks a registration must pass (validators are supplied by
the packages that own each kind: see ``set_validator``)."""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from metafast.hookspecs import HOOK_KINDS

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
        accepted = [n for n, p in sig.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
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
