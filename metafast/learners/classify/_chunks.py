"""MetaClassifier's training chunks and the passes over them, in process or on Dask workers.

A head's fit is a sequence of passes over the training tasks; each pass is a sum over chunks of a
per-chunk function ``fn(chunk, spec, *args, n_threads)`` returning a float64 vector.  In process
the training tasks are one chunk and ``LocalChunks.map_sum`` (``learners._chunks``) calls ``fn`` on it; with
backend="dask" the chunks live on the workers (``metafast.distributed.DaskChunks``) and the
workers add their vectors in a fixed tree.  Both routes run the same per-chunk code, so only the
order of the additions differs.

Chunks are kept with their support/query split (the logistic head calibrates the scale of its
prior on it); the training rows (``train_rows``) are taken on the chunk's side.  What a chunk needs
across passes -- its designs with the bias column, its label codes, the logistic head's warm
start, the ridge head's last E-step, the prototype head's loss -- is a ``ChunkData`` tied to the
chunk object (held while the chunk lives, rebuilt when ``Spec.key`` changes: a new fit or basis).
"""

from __future__ import annotations

import threading
import uuid
import weakref

import numpy as np

from metafast.learners._base import training_view
from metafast.learners._chunks import LocalChunks as InProcessChunks
from metafast.learners.classify._labels import (
    check_classification_tasks,
    check_n_classes,
    encode_episodic,
    encode_query_episodic,
    encode_shared,
)
from metafast.tasks._taskset import TaskSet


def design_with_bias(basis, X: np.ndarray) -> np.ndarray:
    """The basis design with a constant column appended (the class biases)."""
    Phi = np.asarray(basis.design(X))
    return np.ascontiguousarray(np.hstack([Phi, np.ones((Phi.shape[0], 1), dtype=Phi.dtype)]))


def encode(setting: str, classes, y: np.ndarray, offsets: np.ndarray):
    """(codes, n_classes per task) of packed labels in a label setting."""
    if setting == "shared":
        return encode_shared(y, classes, offsets), np.full(offsets.shape[0] - 1, classes.shape[0], dtype=np.int64)
    codes, n_classes, _, _ = encode_episodic(y, offsets)
    return codes, n_classes


def split_codes(setting: str, classes, ts: TaskSet, max_classes: int):
    """(support codes, classes per task, query codes) of a TaskSet's support/query split."""
    if setting == "shared":
        codes_s, ncls = encode(setting, classes, ts.y_support, ts.support_offsets)
        codes_q = encode_shared(ts.y_query, classes, ts.query_offsets)
    else:
        codes_s, ncls, labels, loff = encode_episodic(ts.y_support, ts.support_offsets)
        codes_q = encode_query_episodic(ts.y_query, ts.query_offsets, labels, loff)
    check_n_classes(ncls, max_classes)
    return codes_s, ncls, codes_q


class Spec:
    """What every pass needs to turn a chunk into a head's arrays: the basis, the label setting
    and classes, ``train_rows``, ``max_classes``, the head's name; ``key`` is unique to this Spec (one per fit
    and basis: a chunk's cached arrays are only reused under the same key)."""

    def __init__(self, basis, setting: str, classes, train_rows: str, max_classes: int, head: str):
        self.basis, self.setting, self.classes = basis, setting, classes
        self.train_rows, self.max_classes, self.head = train_rows, max_classes, head
        self.key = uuid.uuid4().hex


class ChunkData:
    """A chunk's training arrays (``Phi``, ``codes``, ``offsets``, ``n_classes``), its calibration
    split for the logistic head (``calib``: support design, codes, offsets, classes per task,
    query design, codes, offsets; None without query rows) and the heads' state between passes."""

    def __init__(self, chunk: TaskSet, spec: Spec):
        check_classification_tasks(chunk)
        train = training_view(chunk, spec.train_rows)
        self.Phi = design_with_bias(spec.basis, train.X_support)
        self.offsets = train.support_offsets
        self.codes, self.n_classes = encode(spec.setting, spec.classes, train.y_support, self.offsets)
        check_n_classes(self.n_classes, spec.max_classes)
        self.calib = None
        if spec.head == "logistic" and chunk.X_query.shape[0]:
            codes_s, ncls, codes_q = split_codes(spec.setting, spec.classes, chunk, spec.max_classes)
            self.calib = (
                design_with_bias(spec.basis, chunk.X_support),
                codes_s,
                chunk.support_offsets,
                ncls,
                design_with_bias(spec.basis, chunk.X_query),
                codes_q,
                chunk.query_offsets,
            )
        self.n_query = chunk.X_query.shape[0]
        self.state: dict = {}


_DATA: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def chunk_data(chunk: TaskSet, spec: Spec) -> ChunkData:
    """The chunk's ``ChunkData`` under ``spec`` (built on first use, then kept with the chunk)."""
    with _LOCK:
        held = _DATA.get(chunk)
    if held is not None and held[0] == spec.key:
        return held[1]
    data = ChunkData(chunk, spec)
    with _LOCK:
        _DATA[chunk] = (spec.key, data)
    return data


# ---------------------------------------------------------------------------- the first passes
def chunk_labels(chunk: TaskSet, train_rows: str, n_features: int, n_threads: int):
    """The sorted labels of a chunk's training rows (the shared setting's classes are their union
    over the chunks), or the exception that makes the chunk unusable."""
    try:
        check_classification_tasks(chunk)
        if chunk.n_features != n_features:
            raise ValueError(
                f"argument 'tasks' has {chunk.n_features} features, but the basis was fitted on {n_features}"
            )
        train = training_view(chunk, train_rows)
        return np.unique(np.concatenate([train.y_support, train.y_query]))
    except (TypeError, ValueError) as exc:
        return exc


def chunk_summary(chunk: TaskSet, spec: Spec, n_threads: int):
    """The chunk's sums every head starts from (builds its ``ChunkData``), or the exception that
    makes it unusable: n_tasks, rows, sum ||phi||^2, column sums of the design, sum_t C_t,
    (task, class) pairs and tasks with >= 2 classes, sum_t n_t C_t, query rows."""
    try:
        d = chunk_data(chunk, spec)
    except (TypeError, ValueError) as exc:
        return exc
    Phi = d.Phi.astype(np.float64, copy=False)
    active = d.n_classes >= 2
    return {
        "n_tasks": float(d.n_classes.shape[0]),
        "n_rows": float(Phi.shape[0]),
        "phi2": float(np.einsum("ij,ij->", Phi, Phi)),
        "col_sum": Phi.sum(axis=0),
        "tc": float(d.n_classes.sum()),
        "tc_active": float(d.n_classes[active].sum()),
        "n_active": float(active.sum()),
        "n_points": float((np.diff(d.offsets) * d.n_classes).sum()),
        "n_query": float(d.n_query),
    }


def gather_checked(source, fn, *args) -> list:
    """``source.map_list(fn, *args)`` without empty partitions; a chunk's exception is raised
    here, naming the chunk when there are several."""
    out = []
    for label, item in zip(source.labels, source.map_list(fn, *args)):
        if isinstance(item, Exception):
            if len(source.labels) > 1:
                raise type(item)(f"training chunk {label}: {item}") from item
            raise item
        if item is not None:
            out.append(item)
    if not out:
        raise ValueError("argument 'tasks' holds no tasks")
    return out


def summarise(source, spec: Spec) -> dict:
    """``chunk_summary`` added over the chunks (in chunk order)."""
    parts = gather_checked(source, chunk_summary, spec)
    total = dict(parts[0])
    for part in parts[1:]:
        for k in total:
            total[k] = total[k] + part[k]
    return total


class LocalChunks(InProcessChunks):
    """The in-process source of one training TaskSet (``learners._chunks.LocalChunks``, the
    same interface as ``DaskChunks``); ``release`` drops the chunk's ``ChunkData``."""

    def __init__(self, ts: TaskSet, n_threads: int):
        super().__init__(ts, n_threads, on_release=_forget)


def _forget(chunk: TaskSet) -> None:
    with _LOCK:
        _DATA.pop(chunk, None)
