"""How ``metafast predict`` and ``metafast info`` open a model file.

``predict`` needs the table description that ``metafast fit`` writes into the header (group
columns, features, target) and a fitted meta-learner; a file without them, or with them in an
unexpected shape, is one ValueError (one line, exit status 2), never a traceback.  ``info``
reads the header only: it never unpickles or rebuilds anything, whatever the format.
"""

from __future__ import annotations

from typing import Any

from metafast.model_file import FORMAT, LEGACY_FORMAT, load_model, read_header

_TABLE_KEYS = ("group", "features", "target")


def table_metadata(path: str, header: dict) -> dict:
    """The header's table description, checked: group and features non-empty lists of column
    names, target a column name; ValueError naming the file and what is missing otherwise."""
    meta = header["metadata"]
    missing = [key for key in _TABLE_KEYS if key not in meta]
    if missing:
        raise ValueError(
            f"model file {path!r} does not say which columns it reads (no {', '.join(missing)} in its "
            "metadata): it was written by save_model() without the table description that 'metafast "
            "fit' stores.  Write it with 'metafast fit', or pass metadata={'group': [...], 'features': "
            "[...], 'target': ...} to save_model, or predict from Python with load_model(path)"
        )
    for key in ("group", "features"):
        value = meta[key]
        if not isinstance(value, list) or not value or not all(isinstance(c, str) for c in value):
            raise ValueError(
                f"model file {path!r}: metadata {key!r} must be a non-empty list of column names; it is {value!r:.80}"
            )
    if not isinstance(meta["target"], str):
        raise ValueError(f"model file {path!r}: metadata 'target' must be a column name; it is {meta['target']!r:.80}")
    learner = meta.get("learner", header.get("class"))
    return dict(meta, learner=learner if isinstance(learner, str) else "the model")


def load_for_predict(path: str, trusted: bool = False) -> tuple[Any, dict]:
    """(fitted meta-learner, checked table metadata) of a model file, for ``metafast predict``."""
    from metafast.learners._base import MetaLearner

    meta = table_metadata(path, read_header(path))
    model = load_model(path, trusted=trusted)
    if not isinstance(model, MetaLearner):
        raise ValueError(
            f"model file {path!r} holds a {type(model).__name__}, not a meta-learner that "
            "'metafast predict' can use (MetaBayes, MetaRidge, MetaClassifier, MetaGrad)"
        )
    if not getattr(model, "_mf_fitted", False):
        raise ValueError(f"model file {path!r} holds an unfitted {type(model).__name__}: fit it before saving")
    n_in = getattr(getattr(model, "basis_", None), "n_features_in_", None)
    if isinstance(n_in, int) and n_in != len(meta["features"]):
        raise ValueError(
            f"model file {path!r}: the model reads {n_in} features but its metadata names "
            f"{len(meta['features'])} ({', '.join(meta['features'])})"
        )
    return model, meta


_INFO_FIELDS = (
    ("basis", "basis"),
    ("n_basis", "basis functions"),
    ("group", "group column(s)"),
    ("features", "features"),
    ("target", "target"),
    ("n_groups", "training groups"),
    ("n_rows", "training rows"),
    ("fit_seconds", "fit seconds"),
    ("table", "trained on"),
    ("created", "created"),
)


def info_lines(path: str) -> tuple[list[str], list[str]]:
    """(lines for stdout, warnings for stderr) describing a model file, from its header alone."""
    header = read_header(path)
    meta, versions = header["metadata"], header["versions"]
    lines = [f"model file: {path}", f"learner: {meta.get('learner', header.get('class'))}"]
    for key, label in _INFO_FIELDS:
        if key in meta:
            value = meta[key]
            lines.append(f"{label}: {', '.join(map(str, value)) if isinstance(value, list) else value}")
    params = meta.get("params")
    if isinstance(params, dict) and params:
        lines.append(
            "parameters: " + ", ".join(f"{k}={v}" for k, v in sorted(params.items()) if k not in ("basis", "verbose"))
        )
    lines.append("written by: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    lines.append(f"format: {header['format']}")
    notes = []
    if header["format"] == LEGACY_FORMAT:
        notes.append(
            f"warning: {path!r} is a format-1 model file, which holds a pickle: loading it can run "
            "any code its author put in it.  Load only files you wrote, with 'metafast predict "
            f"--trust-model', and save them again to get format {FORMAT} (no code)"
        )
    return lines, notes
