"""Objects to a JSON description plus arrays, and back, without pickle.

``encode(obj)`` walks an object tree and returns ``(description, arrays)``: a JSON-ready tree
and a dict of plain numpy arrays (stored in an npz archive and read with
``allow_pickle=False``).  ``decode(description, arrays)`` rebuilds the tree.  Rebuilding creates
objects only of

- JSON values, tuples, dicts (any keys), sets, complex numbers, bytes, slices;
- numpy arrays, numpy scalars and dtypes, and the scalar types of numpy and Python (as values,
  e.g. a ``dtype=np.float32`` parameter);
- classes on the allow-list (``allowed``: name -> class, see ``metafast._model_types``), rebuilt
  as pickle would rebuild them but from the decoded state: ``cls.__new__(cls)``, then
  ``__setstate__(state)`` or an update of ``__dict__`` (no constructor or ``__reduce__`` runs);
- foreign objects (scikit-learn estimators inside a basis) through ``foreign``, a codec object
  with ``dump(obj) -> bytes`` and ``load(data) -> obj`` (``metafast._model_skops``).

Node forms (every JSON object is a tagged node, so plain dicts never collide with tags):
strings, bools, null, ints, finite floats and lists are themselves; everything else is
``{"$": kind, ...}``.  Objects, arrays and foreign objects carry an ``id``; a second reference
to the same one is ``{"$": "ref", "id": n}``, so shared objects stay shared and cycles through
objects survive.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

MAX_DEPTH = 200
"""Deeper trees are refused (a forged description must not exhaust the stack)."""

_PLAIN_TYPES = {t.__name__: t for t in (bool, int, float, complex, str, bytes, object, type(None))}


class StateError(ValueError):
    """The description cannot be written or rebuilt; the message says where and why."""


class RefusedClass(StateError):
    """The description names a class that is not on the allow-list."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def _scalar_types() -> dict[str, type]:
    out = {f"builtins.{k}": v for k, v in _PLAIN_TYPES.items()}
    for t in set(np.sctypeDict.values()):
        out[f"numpy.{t.__name__}"] = t
    return out


_SCALAR_TYPES = _scalar_types()
_SCALAR_NAMES = {v: k for k, v in _SCALAR_TYPES.items()}


# ---------------------------------------------------------------------------------- encoding
class Encoder:
    """One pass of ``encode``: the memo of shared objects and the arrays written so far."""

    def __init__(self, names: Mapping[type, str], foreign: Any):
        self.names = names  # allowed class -> its registered name
        self.foreign = foreign
        self.arrays: dict[str, np.ndarray] = {}
        self.memo: dict[int, int] = {}
        self.keep: list[Any] = []  # keeps memoised objects alive, so their ids stay unique

    def _remember(self, obj: Any) -> int:
        n = len(self.keep)
        self.memo[id(obj)] = n
        self.keep.append(obj)
        return n

    def encode(self, obj: Any, where: str, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise StateError(f"{where}: nested more than {MAX_DEPTH} levels deep")
        if obj is None or isinstance(obj, (bool, str)) or type(obj) is int:
            return obj
        if type(obj) is float:
            return obj if math.isfinite(obj) else {"$": "float", "v": repr(obj)}
        if id(obj) in self.memo:
            return {"$": "ref", "id": self.memo[id(obj)]}
        t = type(obj)
        if t in (list, tuple, set, frozenset):
            items = [self.encode(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(obj)]
            return items if t is list else {"$": t.__name__, "v": items}
        if t is dict:
            return self._dict(obj, where, depth)
        if isinstance(obj, np.ndarray) and t in (np.ndarray, np.memmap):
            return self._array(np.asarray(obj), where, depth)
        if isinstance(obj, np.generic):
            return {"$": "scalar", "d": _dtype_str(obj.dtype, where), "h": obj.tobytes().hex()}
        if isinstance(obj, np.dtype):
            return {"$": "dtype", "d": _dtype_str(obj, where)}
        if t is complex:
            return {"$": "complex", "v": [repr(obj.real), repr(obj.imag)]}
        if t is bytes:
            return {"$": "bytes", "h": obj.hex()}
        if t is slice:
            return {"$": "slice", "v": [self.encode(v, where, depth + 1) for v in (obj.start, obj.stop, obj.step)]}
        if isinstance(obj, type) and obj in _SCALAR_NAMES:
            return {"$": "type", "v": _SCALAR_NAMES[obj]}
        if isinstance(obj, type) and obj in self.names:
            return {"$": "class", "c": self.names[obj]}
        if t in self.names:
            return self._object(obj, where, depth)
        return self._foreign(obj, where)

    def _dict(self, obj: dict, where: str, depth: int) -> dict:
        if all(type(k) is str for k in obj):
            return {"$": "dict", "v": {k: self.encode(v, f"{where}.{k}", depth + 1) for k, v in obj.items()}}
        items = [
            [self.encode(k, f"{where} key {k!r}", depth + 1), self.encode(v, f"{where}[{k!r}]", depth + 1)]
            for k, v in obj.items()
        ]
        return {"$": "dict", "items": items}

    def _array(self, arr: np.ndarray, where: str, depth: int) -> dict:
        n = self._remember(arr)
        if arr.dtype.hasobject:
            order = "F" if arr.flags.f_contiguous and not arr.flags.c_contiguous else "C"
            items = [self.encode(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(arr.ravel(order=order))]
            return {"$": "objects", "id": n, "shape": list(arr.shape), "order": order, "v": items}
        key = f"a{len(self.arrays)}"
        self.arrays[key] = arr
        return {"$": "array", "id": n, "k": key}

    def _object(self, obj: Any, where: str, depth: int) -> dict:
        n = self._remember(obj)
        name = self.names[type(obj)]
        if isinstance(obj, tuple):  # a NamedTuple: rebuilt from its items
            return {"$": "object", "id": n, "c": name, "t": self.encode(tuple(obj), where, depth + 1)}
        getstate = getattr(obj, "__getstate__", None)
        state = getstate() if getstate is not None else obj.__dict__
        return {"$": "object", "id": n, "c": name, "s": self.encode(state, where, depth + 1)}

    def _foreign(self, obj: Any, where: str) -> dict:
        module = getattr(type(obj), "__module__", "") or ""
        what = f"{module}.{type(obj).__qualname__}"
        if module.split(".")[0] == "metafast":
            raise StateError(
                f"{where}: {what} is a metafast class missing from the model-file allow-list "
                "(metafast._model_types): a bug, please report it"
            )
        if self.foreign is None:
            raise StateError(
                f"{where}: a {what} cannot be stored in a model file (only arrays, plain "
                "values, metafast objects and scikit-learn estimators can)"
            )
        n = self._remember(obj)
        key = f"s{n}"
        self.arrays[key] = np.frombuffer(self.foreign.dump(obj, where), dtype=np.uint8)
        return {"$": "foreign", "id": n, "k": key, "type": what}


def _dtype_str(dtype: np.dtype, where: str) -> str:
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise StateError(f"{where}: numpy values of dtype {dtype} cannot be stored in a model file")
    return dtype.str


def encode(obj: Any, names: Mapping[type, str], foreign: Any = None) -> tuple[Any, dict[str, np.ndarray]]:
    """(description, arrays) of ``obj``; ``names`` maps each allowed class to its registered name."""
    enc = Encoder(names, foreign)
    return enc.encode(obj, type(obj).__name__), enc.arrays


# ---------------------------------------------------------------------------------- decoding
class Decoder:
    """One pass of ``decode``: the allow-list, the archive's arrays and the memo of shared objects."""

    def __init__(self, allowed: Mapping[str, type], get_array: Callable[[str], Any], foreign: Any):
        self.allowed = allowed
        self.get_array = get_array
        self.foreign = foreign
        self.memo: dict[int, Any] = {}

    def decode(self, node: Any, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise StateError(f"the description is nested more than {MAX_DEPTH} levels deep")
        if node is None or isinstance(node, (bool, str, int, float)):
            return node
        if isinstance(node, list):
            return [self.decode(v, depth + 1) for v in node]
        if not isinstance(node, dict) or not isinstance(node.get("$"), str):
            raise StateError(f"the description holds a node of unknown form: {_short(node)}")
        kind = node["$"]
        handler = getattr(self, f"_node_{kind}", None)
        if handler is None:
            raise StateError(f"the description holds a node of unknown kind {kind!r}")
        return handler(node, depth + 1)

    def _field(self, node: dict, key: str, kind: type | tuple) -> Any:
        value = node.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
            raise StateError(f"the description's {node['$']!r} node has a bad {key!r}: {_short(value)}")
        return value

    def _id(self, node: dict, value: Any) -> Any:
        n = self._field(node, "id", int)
        if n in self.memo:
            raise StateError(f"the description defines object id {n} twice")
        self.memo[n] = value
        return value

    def _node_ref(self, node, depth):
        n = self._field(node, "id", int)
        if n not in self.memo:
            raise StateError(f"the description refers to object id {n} before defining it")
        return self.memo[n]

    def _node_float(self, node, depth):
        text = self._field(node, "v", str)
        if text not in ("nan", "inf", "-inf"):
            raise StateError(f"the description holds a bad float {text!r}")
        return float(text)

    def _node_tuple(self, node, depth):
        return tuple(self.decode(v, depth) for v in self._field(node, "v", list))

    def _node_set(self, node, depth):
        return {self.decode(v, depth) for v in self._field(node, "v", list)}

    def _node_frozenset(self, node, depth):
        return frozenset(self.decode(v, depth) for v in self._field(node, "v", list))

    def _node_dict(self, node, depth):
        if "v" in node:
            return {k: self.decode(v, depth) for k, v in self._field(node, "v", dict).items()}
        out = {}
        for pair in self._field(node, "items", list):
            if not isinstance(pair, list) or len(pair) != 2:
                raise StateError(f"the description holds a bad dict item: {_short(pair)}")
            out[self.decode(pair[0], depth)] = self.decode(pair[1], depth)
        return out

    def _node_complex(self, node, depth):
        parts = self._field(node, "v", list)
        if len(parts) != 2 or not all(isinstance(p, str) for p in parts):
            raise StateError(f"the description holds a bad complex number: {_short(parts)}")
        return complex(float(parts[0]), float(parts[1]))

    def _node_bytes(self, node, depth):
        return bytes.fromhex(self._field(node, "h", str))

    def _node_slice(self, node, depth):
        parts = [self.decode(v, depth) for v in self._field(node, "v", list)]
        if len(parts) != 3:
            raise StateError("the description holds a bad slice")
        return slice(*parts)

    def _node_scalar(self, node, depth):
        dtype = _dtype(self._field(node, "d", str))
        data = bytes.fromhex(self._field(node, "h", str))
        if len(data) != dtype.itemsize:
            raise StateError(f"the description holds a {dtype} scalar of {len(data)} bytes")
        return np.frombuffer(data, dtype=dtype)[0]

    def _node_dtype(self, node, depth):
        return _dtype(self._field(node, "d", str))

    def _node_type(self, node, depth):
        name = self._field(node, "v", str)
        if name not in _SCALAR_TYPES:
            raise RefusedClass(name)
        return _SCALAR_TYPES[name]

    def _node_class(self, node, depth):
        return self._allowed_class(self._field(node, "c", str))

    def _allowed_class(self, name: str) -> type:
        cls = self.allowed.get(name)
        if cls is None:
            raise RefusedClass(name)
        return cls

    def _node_array(self, node, depth):
        arr = self.get_array(self._field(node, "k", str))
        if not isinstance(arr, np.ndarray) or arr.dtype.hasobject:
            raise StateError(f"the archive member {node['k']!r} is not a numeric array")
        return self._id(node, arr)

    def _node_objects(self, node, depth):
        shape = self._field(node, "shape", list)
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
            raise StateError(f"the description holds a bad array shape {_short(shape)}")
        items = self._field(node, "v", list)
        if math.prod(shape) != len(items):
            raise StateError(f"the description holds {len(items)} values for an array of shape {tuple(shape)}")
        arr = np.empty(len(items), dtype=object)
        self._id(node, arr)
        for i, v in enumerate(items):
            arr[i] = self.decode(v, depth)
        order = "F" if node.get("order") == "F" else "C"
        out = arr.reshape(shape, order=order)
        self.memo[node["id"]] = out
        return out

    def _node_object(self, node, depth):
        cls = self._allowed_class(self._field(node, "c", str))
        if issubclass(cls, tuple):
            items = self.decode(node.get("t"), depth)
            if not isinstance(items, tuple):
                raise StateError(f"the description holds a {cls.__name__} without its items")
            return self._id(node, tuple.__new__(cls, items))
        obj = cls.__new__(cls)
        self._id(node, obj)
        state = self.decode(node.get("s"), depth)
        _set_state(obj, state)
        return obj

    def _node_foreign(self, node, depth):
        if self.foreign is None:
            raise StateError("the description holds a scikit-learn object, which this reader does not accept")
        data = self.get_array(self._field(node, "k", str))
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 1:
            raise StateError(f"the archive member {node['k']!r} is not a byte string")
        return self._id(node, self.foreign.load(data.tobytes(), str(node.get("type", "?"))))


def _set_state(obj: Any, state: Any) -> None:
    """What unpickling does with a state, without calling anything but ``__setstate__``."""
    setstate = getattr(obj, "__setstate__", None)
    if setstate is not None:
        setstate(state)
        return
    slots = None
    if isinstance(state, tuple) and len(state) == 2:
        state, slots = state
    if state is not None:
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise StateError(f"the state of a {type(obj).__name__} is not a dict of attributes")
        obj.__dict__.update(state)
    if slots is not None:
        if not isinstance(slots, dict):
            raise StateError(f"the slots of a {type(obj).__name__} are not a dict")
        for key, value in slots.items():
            object.__setattr__(obj, key, value)


def _dtype(text: str) -> np.dtype:
    try:
        dtype = np.dtype(text)
    except TypeError:
        raise StateError(f"the description holds a bad dtype {text!r}") from None
    if dtype.hasobject or dtype.fields is not None:
        raise StateError(f"the description holds the dtype {text!r}, which is not a plain numeric or text dtype")
    return dtype


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def decode(description: Any, allowed: Mapping[str, type], get_array: Callable[[str], Any], foreign: Any = None) -> Any:
    """The object tree of ``description``; ``get_array(key)`` reads an array of the archive."""
    return Decoder(allowed, get_array, foreign).decode(description)


__all__ = ["MAX_DEPTH", "RefusedClass", "StateError", "decode", "encode"]
