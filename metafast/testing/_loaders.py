"""The conformance checks of a task loader (``check_task_loader``, ``task_loader_checks``):
one short check per clause of the loader contract, each failing with a message naming the
check, the loader and what is wrong."""

from __future__ import annotations

import inspect
import pickle
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from metafast.tasks._taskset import TaskSet


# ================================================================================== task loaders
class _LoaderCase:
    def __init__(self, loader: Callable | str, params: dict):
        if isinstance(loader, str):
            from metafast.plugins import loader_registry

            self.label = f"task loader {loader!r}"
            loader = loader_registry().get(loader)
        else:
            self.label = getattr(loader, "__qualname__", repr(loader))
        if not callable(loader):
            raise TypeError(f"check_task_loader needs a callable or a registered name; got {type(loader).__name__}")
        self.loader = loader
        self.params = params
        try:
            self.signature: inspect.Signature | None = inspect.signature(loader)
        except (TypeError, ValueError):
            self.signature = None

    def accepts(self, param: str) -> bool:
        if self.signature is None:
            return False
        p = self.signature.parameters
        return param in p or any(v.kind is v.VAR_KEYWORD for v in p.values())

    def strict_signature(self) -> bool:
        return self.signature is not None and not any(
            v.kind is v.VAR_KEYWORD for v in self.signature.parameters.values()
        )

    def call(self, **overrides: Any) -> list[TaskSet]:
        result = self.loader(**{**self.params, **overrides})
        if isinstance(result, TaskSet):
            return [result]
        if hasattr(result, "__next__"):
            chunks = list(result)
            for i, chunk in enumerate(chunks):
                if not isinstance(chunk, TaskSet):
                    _lfail(
                        self, "check_loader_returns_taskset", f"chunk {i} is a {type(chunk).__name__}, not a TaskSet"
                    )
            if not chunks:
                _lfail(self, "check_loader_returns_taskset", "the stream yielded no chunk")
            return chunks
        _lfail(self, "check_loader_returns_taskset", f"returned a {type(result).__name__}, not a TaskSet")
        raise AssertionError  # unreachable


def _lfail(case: _LoaderCase, check: str, problem: str) -> None:
    params = ", ".join(f"{k}={v!r}" for k, v in case.params.items())
    raise AssertionError(f"[{check}] {case.label}({params}): {problem}")


def _taskset_arrays(ts: TaskSet) -> tuple[np.ndarray, ...]:
    return (ts.X_support, ts.y_support, ts.support_offsets, ts.X_query, ts.y_query, ts.query_offsets)


def check_loader_returns_taskset(case: _LoaderCase) -> None:
    """Returns a TaskSet (or an iterator of them) whose arrays are consistent and finite."""
    name = "check_loader_returns_taskset"
    for ts in case.call():
        if len(ts) < 1:
            _lfail(case, name, "returned an empty TaskSet")
        for label, X in (("X_support", ts.X_support), ("X_query", ts.X_query)):
            if X.ndim != 2 or X.dtype not in (np.float32, np.float64) or not X.flags.c_contiguous:
                _lfail(case, name, f"{label} must be a C-contiguous 2-D float32/float64 array")
            if not np.all(np.isfinite(X)):
                _lfail(case, name, f"{label} contains NaN or inf")
        for label, y in (("y_support", ts.y_support), ("y_query", ts.y_query)):
            if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
                _lfail(case, name, f"{label} contains NaN or inf")
        if np.any(ts.support_sizes < 1):
            _lfail(case, name, f"task {int(np.argmin(ts.support_sizes))} has no support point")
        if len(ts.info) != len(ts):
            _lfail(case, name, f"info has {len(ts.info)} entries for {len(ts)} tasks")
        last = ts[len(ts) - 1]
        if not np.array_equal(last.X_support, ts.X_support[ts.support_offsets[-2] :]):
            _lfail(case, name, "tasks[-1] does not match the packed arrays")


def check_loader_sizes(case: _LoaderCase) -> None:
    """n_tasks, n_support and n_query, when given, are honoured exactly."""
    name = "check_loader_sizes"
    chunks = case.call()
    total = sum(len(ts) for ts in chunks)
    n_tasks = case.params.get("n_tasks")
    if n_tasks is not None and total != n_tasks:
        _lfail(case, name, f"asked for n_tasks={n_tasks}, got {total} tasks")
    for key, sizes in (("n_support", "support_sizes"), ("n_query", "query_sizes")):
        want = case.params.get(key)
        if want is None:
            continue
        for ts in chunks:
            got = getattr(ts, sizes)
            if np.any(got != want):
                _lfail(case, name, f"asked for {key}={want}, got {sizes} {np.unique(got).tolist()}")


def check_loader_deterministic(case: _LoaderCase) -> None:
    """The same parameters (and seed) give identical tasks."""
    name = "check_loader_deterministic"
    a, b = case.call(), case.call()
    if len(a) != len(b) or not all(
        all(np.array_equal(x, y) for x, y in zip(_taskset_arrays(ta), _taskset_arrays(tb))) for ta, tb in zip(a, b)
    ):
        seeded = " (pass seed=... explicitly)" if case.accepts("seed") and "seed" not in case.params else ""
        _lfail(case, name, f"two calls with the same parameters gave different tasks{seeded}")


def check_loader_pickle(case: _LoaderCase) -> None:
    """The TaskSet pickles to identical arrays and info."""
    name = "check_loader_pickle"
    ts = case.call()[0]
    try:
        back = pickle.loads(pickle.dumps(ts))
    except Exception as exc:
        _lfail(case, name, f"the TaskSet does not pickle: {type(exc).__name__}: {exc}")
    if (
        not all(np.array_equal(x, y) for x, y in zip(_taskset_arrays(ts), _taskset_arrays(back)))
        or back.info != ts.info
    ):
        _lfail(case, name, "the unpickled TaskSet differs")


def check_loader_bad_input(case: _LoaderCase) -> None:
    """Bad counts and unknown parameters raise ValueError/TypeError naming the argument."""
    name = "check_loader_bad_input"
    trials = []
    for key in ("n_tasks", "n_support"):
        if case.accepts(key):
            trials += [(key, 0, (ValueError,)), (key, -3, (ValueError,)), (key, "ten", (TypeError, ValueError))]
    if case.accepts("n_query"):
        trials.append(("n_query", -1, (ValueError,)))
    for key, value, errors in trials:
        try:
            case.call(**{key: value})
        except errors as exc:
            if key not in str(exc):
                _lfail(case, name, f"{key}={value!r}: the error does not name {key!r}: {exc}")
            continue
        except Exception as exc:
            _lfail(case, name, f"{key}={value!r} raised {type(exc).__name__} ({exc}); expected ValueError/TypeError")
        _lfail(case, name, f"{key}={value!r} raised no error")
    if case.strict_signature():
        try:
            case.call(no_such_parameter_xyz=1)
        except TypeError:
            pass
        else:
            _lfail(case, name, "an unknown keyword parameter raised no TypeError")


_LOADER_CHECKS: tuple[Callable[[_LoaderCase], None], ...] = (
    check_loader_returns_taskset,
    check_loader_sizes,
    check_loader_deterministic,
    check_loader_pickle,
    check_loader_bad_input,
)


def task_loader_checks(loader: Callable | str, **params: Any) -> list[tuple[str, Callable[[], None]]]:
    """(check name, zero-argument check) pairs, e.g. for ``pytest.mark.parametrize``."""
    case = _LoaderCase(loader, params)
    return [(check.__name__, (lambda c=check: c(case))) for check in _LOADER_CHECKS]


def check_task_loader(loader: Callable | str, *, skip: Iterable[str] = (), **params: Any) -> None:
    """Run every task-loader conformance check with ``loader(**params)``.

    ``loader`` is the callable your plugin registers (or a registered name).  Pass small
    ``params`` (a few tasks): the loader is called about a dozen times.  Checks: returns a
    consistent, finite TaskSet (or iterator of TaskSet chunks); honours n_tasks / n_support /
    n_query when given; is deterministic for the same parameters; pickles; bad counts and
    unknown parameters raise clear errors.
    """
    skip = set(skip)
    known = {c.__name__ for c in _LOADER_CHECKS}
    if skip - known:
        raise ValueError(f"argument 'skip' names unknown checks {sorted(skip - known)}; known: {sorted(known)}")
    for check_name, check in task_loader_checks(loader, **params):
        if check_name not in skip:
            check()
