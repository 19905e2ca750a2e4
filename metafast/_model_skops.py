"""scikit-learn objects inside a model file (a Pipeline basis, the estimators of ``task-models``)
go through ``skops.io``, the scikit-learn ecosystem's format that rebuilds only known types.

Loading trusts what skops trusts by default, plus metafast's own allow-listed classes (a
metafast family at the end of a Pipeline); any other type skops reports (for example
``sklearn.tree._tree.Tree`` of a random forest, or scipy's ``BSpline`` of a SplineTransformer)
is refused unless the user trusts the file (``trusted=True``) or names the type in ``trusted``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from metafast._model_state import StateError

EXTRA = "skops"
"""The optional-dependency extra that installs skops (``pip install 'metafast[skops]'``)."""


class UntrustedTypes(StateError):
    """A skops payload holds types nobody said are safe to rebuild."""

    def __init__(self, types: list[str]):
        super().__init__(", ".join(types))
        self.types = types


def _skops_io():
    try:
        import skops.io as sio
    except ImportError:
        raise StateError(
            f"scikit-learn objects in model files need the optional dependency skops: pip install 'metafast[{EXTRA}]'"
        ) from None
    return sio


class SkopsCodec:
    """``dump(obj, where) -> bytes`` and ``load(data, type_name) -> obj`` for ``_model_state``.

    ``trusted``: True trusts every type of the payload; a list of type names trusts those;
    ``own_types`` are metafast's allow-listed classes, always accepted.
    """

    def __init__(self, trusted: bool | Iterable[str] = False, own_types: Iterable[str] = ()):
        self.trust_all = trusted is True
        self.accepted = set(own_types) | (set() if isinstance(trusted, bool) else {str(t) for t in trusted})

    def dump(self, obj: Any, where: str) -> bytes:
        sio = _skops_io()
        try:
            return sio.dumps(obj)
        except Exception as exc:  # skops raises TypeError, ValueError, ... for what it cannot store
            kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
            raise StateError(
                f"{where}: a {kind} cannot be stored in a model file ({type(exc).__name__}: "
                f"{exc}); only arrays, plain values, metafast objects and objects skops "
                "can store are allowed"
            ) from None

    def load(self, data: bytes, type_name: str) -> Any:
        sio = _skops_io()
        try:
            found = sio.get_untrusted_types(data=data)
        except Exception as exc:
            raise StateError(f"the stored {type_name} is damaged ({type(exc).__name__}: {exc})") from None
        refused = [t for t in found if t not in self.accepted]
        if refused and not self.trust_all:
            raise UntrustedTypes(refused)
        try:
            return sio.loads(data, trusted=list(found))
        except Exception as exc:
            raise StateError(f"the stored {type_name} could not be rebuilt ({type(exc).__name__}: {exc})") from None
