"""``metafast fit`` / ``predict`` / ``info``: from a user's table to predictions for new groups.

    metafast fit TABLE.csv --group COL --target COL [--features COL ...] [--learner bayes]
                 [--basis NAME[:key=value,...]] [--param key=value ...] -o MODEL
    metafast predict MODEL TABLE.csv -o OUT.csv
    metafast info MODEL

``fit`` makes one training task per group from every labelled row (whole groups; rows with an
empty target are not training data and are counted in a note).  ``predict`` treats, group by
group, the rows whose target is present as the group's support and predicts the rows whose
target is empty (a group with no labelled row is predicted from the meta-learned prior alone,
with a note); OUT is the input table plus ``<target>_mean`` and, for Bayesian learners,
``<target>_std`` and the central 90% interval ``<target>_lower90`` / ``<target>_upper90``; for a
classifier ``<target>_pred`` (the label) and ``<target>_proba`` (its probability).
Mistakes in the table (a missing column, a non-numeric feature, NaN in a feature, a group with
no labelled row in ``fit``, an empty file) exit with status 2 and a message naming the column,
the group and the row.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import time
from datetime import datetime, timezone

import numpy as np

from metafast.tasks._frames import CSV_MISSING_MARKERS, is_real_numeric

LEARNERS = {
    "bayes": ("MetaBayes", {}),
    "mixture": ("MetaBayes", {"n_components": "auto"}),
    "ridge": ("MetaRidge", {}),
    "classifier": ("MetaClassifier", {}),
}


class TableError(ValueError):
    """A problem with the user's table or arguments: reported in one line, exit status 2."""


# ---------------------------------------------------------------------------------- parsing
def parse_value(text: str):
    """A command-line value: a Python literal (number, bool, None, list, quoted string) or a bare string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def parse_assignments(items, what: str) -> dict:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise TableError(f"{what} {item!r} is not of the form key=value")
        out[key.strip()] = parse_value(value.strip())
    return out


def parse_basis(spec: str | None):
    """``NAME[:key=value,...]`` -> an unfitted basis family (None: the learner's default)."""
    if not spec:
        return None
    import metafast as mf

    name, _, rest = spec.partition(":")
    params = parse_assignments([p for p in rest.split(",") if p.strip()], "--basis parameter")
    try:
        return mf.basis.make(name.strip(), **params)
    except (KeyError, TypeError, ValueError) as exc:
        raise TableError(f"--basis {spec!r}: {exc}") from None


def read_table(path: str, group: list[str] | tuple[str, ...] = ()):
    """The CSV as a DataFrame; the ``group`` columns keep texts such as 'NA' or 'None' as keys."""
    try:
        import pandas as pd
    except ImportError:
        raise TableError("reading tables needs pandas: pip install pandas (or metafast[frames])") from None
    try:
        columns = list(pd.read_csv(path, nrows=0).columns)
        na_values = {c: ([""] if c in group else list(CSV_MISSING_MARKERS)) for c in columns}
        df = pd.read_csv(path, keep_default_na=False, na_values=na_values)
    except FileNotFoundError:
        raise TableError(f"table {path!r} does not exist") from None
    except pd.errors.EmptyDataError:
        raise TableError(f"table {path!r} is empty: it needs a header row and data rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise TableError(f"table {path!r} could not be read as CSV: {exc}") from None
    if len(df) == 0:
        raise TableError(f"table {path!r} has a header but no data rows")
    return df


def _check_columns(df, path: str, columns: list[str]) -> None:
    missing = [c for c in dict.fromkeys(columns) if c not in df.columns]
    if missing:
        raise TableError(
            f"table {path!r} has no column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(map(repr, missing))}; its columns are {', '.join(map(repr, df.columns))}"
        )


def _features(df, args, path: str) -> list[str]:
    if args.features:
        return list(args.features)
    skip = set(args.group) | {args.target}
    others = [c for c in df.columns if c not in skip]
    feats = [c for c in others if is_real_numeric(df[c])]
    if not feats:
        raise TableError(
            f"table {path!r} has no numeric column besides the group and target columns: "
            "name the features with --features"
        )
    ignored = [c for c in others if c not in feats]
    if ignored:
        print(
            f"note: column(s) {', '.join(map(repr, ignored))} are not numeric and are not features "
            "(name the features with --features to choose them)",
            file=sys.stderr,
        )
    return feats


def _group_label(key) -> str:
    return repr(key if not isinstance(key, tuple) or len(key) > 1 else key[0])


# ---------------------------------------------------------------------------------- fit
def cmd_fit(args: argparse.Namespace, parser) -> int:
    import metafast as mf
    from metafast._output import check_output
    from metafast.model_file import save_model

    output = check_output(args.output, [args.table])  # before the work: a refused output costs nothing
    df = read_table(args.table, args.group)
    _check_columns(df, args.table, list(args.group) + [args.target] + list(args.features or []))
    feats = _features(df, args, args.table)
    labelled = df[args.target].notna().to_numpy()
    n_unlabelled = int((~labelled).sum())
    _no_label_groups(df, args, labelled)
    if n_unlabelled:
        print(
            f"note: {n_unlabelled} row(s) with an empty {args.target!r} are not training data and were not used",
            file=sys.stderr,
        )
    tasks = _table_tasks(mf, df[labelled], args, feats)
    learner = _make_learner(mf, args, tasks)
    _say(
        args,
        f"metafast fit: {type(learner).__name__} on {len(tasks)} groups "
        f"({tasks.X_support.shape[0]} labelled rows, features {', '.join(feats)})",
    )
    start = time.perf_counter()
    try:
        learner.fit(tasks)
    except (TypeError, ValueError) as exc:
        raise TableError(f"fitting {type(learner).__name__} failed: {exc}") from None
    seconds = time.perf_counter() - start
    metadata = {
        "learner": type(learner).__name__,
        "learner_choice": args.learner,
        "params": {k: repr(v) for k, v in learner.get_params(deep=False).items()},
        "basis": repr(learner.basis_),
        "n_basis": int(learner.basis_.n_basis),
        "group": list(args.group),
        "features": feats,
        "target": args.target,
        "n_groups": len(tasks),
        "n_rows": int(tasks.X_support.shape[0]),
        "fit_seconds": round(seconds, 4),
        "table": os.path.abspath(args.table),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        save_model(learner, output, metadata)  # the resolved path: a symlink is written through
    except OSError as exc:
        raise TableError(f"cannot write the model to {args.output!r}: {exc.strerror or exc}") from None
    print(
        f"fitted {type(learner).__name__} on {len(tasks)} groups, {metadata['n_rows']} rows, "
        f"{metadata['n_basis']} basis functions in {seconds:.3g} s; wrote {args.output}"
    )
    return 0


def _no_label_groups(df, args, labelled) -> None:
    keys = df[args.group].astype(object).apply(tuple, axis=1)
    has_label = labelled.astype(bool)
    seen = set(keys[has_label])
    lacking = list(dict.fromkeys(k for k in keys[~has_label] if k not in seen))
    if lacking:
        listed = ", ".join(_group_label(k) for k in lacking[:5])
        raise TableError(
            f"{len(lacking)} group(s) have no labelled row (empty {args.target!r} everywhere): "
            f"{listed}{' ...' if len(lacking) > 5 else ''}; give them target values or "
            "leave them out of the training table"
        )


def _table_tasks(mf, df, args, feats):
    group = args.group[0] if len(args.group) == 1 else list(args.group)
    try:
        return mf.tasks.from_frame(df, group=group, features=feats, target=args.target, n_support=None)
    except (TypeError, ValueError) as exc:
        raise TableError(f"table {args.table!r}: {exc}") from None


def _make_learner(mf, args, tasks):
    if args.learner is None:
        args.learner = "classifier" if tasks.is_classification and hasattr(mf, "MetaClassifier") else "bayes"
    class_name, defaults = LEARNERS[args.learner]
    cls = getattr(mf, class_name, None)
    if cls is None:
        raise TableError(f"--learner {args.learner!r} needs metafast.{class_name}, which this install lacks")
    params = {**defaults, **parse_assignments(args.param, "--param")}
    basis = parse_basis(args.basis)
    if basis is not None:
        params["basis"] = basis
    if "verbose" in cls().get_params():
        params.setdefault("verbose", 1 if args.verbose and sys.stderr.isatty() else 0)
    try:
        return cls(**params)
    except TypeError as exc:
        raise TableError(f"--param: {exc}") from None


# ---------------------------------------------------------------------------------- predict
def cmd_predict(args: argparse.Namespace, parser) -> int:
    from metafast._output import check_output, write_file
    from metafast.cli_model import load_for_predict
    from metafast.tasks import TaskSet

    output = check_output(args.output, [args.model, args.table])
    model, meta = load_for_predict(args.model, trusted=args.trust_model)
    df = read_table(args.table, meta["group"])
    group, feats, target = meta["group"], meta["features"], meta["target"]
    _check_columns(df, args.table, group + feats)
    labelled = df[target].notna().to_numpy() if target in df.columns else np.zeros(len(df), dtype=bool)
    codes, keys = _group_codes(df, group)
    X = _numeric_features(df, feats, codes, keys, args.table)
    y = np.zeros(len(df))
    if labelled.any() and not hasattr(model, "predict_tasks_proba"):  # a classifier's labels stay as given
        y = _numeric_target(df, target, labelled, codes, keys, args.table)
    todo = ~labelled
    if not todo.any():
        print(f"note: every row of {args.table!r} has a {target!r}: nothing to predict", file=sys.stderr)
    # tasks: the groups with rows to predict; support = their labelled rows, query = the rest
    wanted = np.unique(codes[todo])
    remap = np.full(len(keys), -1)
    remap[wanted] = np.arange(wanted.size)
    sup = np.flatnonzero(labelled & (remap[codes] >= 0))
    sup = sup[np.argsort(remap[codes[sup]], kind="stable")]
    qry = np.flatnonzero(todo)
    qry = qry[np.argsort(remap[codes[qry]], kind="stable")]
    n_sup = np.bincount(remap[codes[sup]], minlength=wanted.size)
    n_qry = np.bincount(remap[codes[qry]], minlength=wanted.size)
    no_support = wanted[n_sup == 0]
    if no_support.size:
        print(
            f"note: {no_support.size} group(s) have no labelled row and are predicted from the "
            f"meta-learned prior alone: {', '.join(_group_label(keys[g]) for g in no_support[:5])}"
            f"{' ...' if no_support.size > 5 else ''}",
            file=sys.stderr,
        )
    out = df.copy()
    if qry.size and hasattr(model, "predict_tasks_proba"):
        _add_columns(out, args.table, _classify_groups(model, df, target, X, labelled, codes, keys, wanted, sup, qry))
    elif qry.size:

        def offsets(n):
            return np.concatenate([[0], np.cumsum(n)])

        ts = TaskSet(X[sup], y[sup], offsets(n_sup), X[qry], np.zeros(qry.size), offsets(n_qry))
        mean, std = model._predict_tasks(ts)
        columns = {f"{target}_mean": mean}
        if std is not None:
            from metafast.learners._base import _Z90

            columns.update(
                {f"{target}_std": std, f"{target}_lower90": mean - _Z90 * std, f"{target}_upper90": mean + _Z90 * std}
            )
        _add_columns(out, args.table, {name: (qry, values) for name, values in columns.items()})
    write_file(output, lambda fh: out.to_csv(fh, index=False), what="the predictions")
    print(f"predicted {qry.size} row(s) of {wanted.size} group(s) with {meta['learner']}; wrote {args.output}")
    return 0


def _add_columns(out, path: str, columns: dict) -> None:
    """Add each ``name: (rows, values)`` as a column, empty outside ``rows``."""
    for name, (rows, values) in columns.items():
        if name in out.columns:
            raise TableError(f"table {path!r} already has a column {name!r}, which predict writes")
        values = np.asarray(values)
        col = np.full(len(out), np.nan, dtype=np.float64 if values.dtype.kind in "fiub" else object)
        col[rows] = values
        out[name] = col


def _classify_groups(model, df, target, X, labelled, codes, keys, wanted, sup, qry) -> dict:
    """Per group: adapt the classifier on its labelled rows, label and top probability of the rest."""
    labels = df[target].to_numpy()
    pred = np.empty(qry.size, dtype=object)
    proba = np.empty(qry.size)
    for g in wanted:
        s_rows, q_pos = sup[codes[sup] == g], np.flatnonzero(codes[qry] == g)
        y_s = labels[s_rows]
        if y_s.size and all(float(v).is_integer() for v in y_s):
            y_s = y_s.astype(np.int64)  # CSV reads an integer column with blanks as float
        try:
            clf = model.adapt(X[s_rows], y_s)
        except ValueError as exc:
            raise TableError(f"group {_group_label(keys[g])}: {exc}") from None
        p = clf.predict_proba(X[qry[q_pos]])
        pred[q_pos] = clf.classes_[np.argmax(p, axis=1)]
        proba[q_pos] = p.max(axis=1)
    return {f"{target}_pred": (qry, pred), f"{target}_proba": (qry, proba)}


def _group_codes(df, group: list[str]):
    import pandas as pd

    if df[group].isna().any(axis=None):
        row = int(np.flatnonzero(df[group].isna().any(axis=1).to_numpy())[0])
        raise TableError(f"row {row} has an empty group key (column(s) {', '.join(map(repr, group))})")
    codes, uniques = (
        pd.factorize(df[group[0]], sort=False) if len(group) == 1 else pd.MultiIndex.from_frame(df[group]).factorize()
    )
    keys = [u if len(group) == 1 else tuple(u) for u in uniques]
    return np.asarray(codes, dtype=np.int64), keys


def _numeric_features(df, feats, codes, keys, path) -> np.ndarray:
    cols = []
    for col in feats:
        values = _as_numbers(df[col], col, "feature", codes, keys, path)
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise TableError(
                f"table {path!r}: feature column {col!r} has {df[col].iloc[row]!r} at row {row} "
                f"(group {_group_label(keys[codes[row]])}); every row needs finite features"
            )
        cols.append(values)
    return np.column_stack(cols)


def _numeric_target(df, target, labelled, codes, keys, path) -> np.ndarray:
    values = _as_numbers(df[target], target, "target", codes, keys, path)
    bad = labelled & ~np.isfinite(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise TableError(f"table {path!r}: target column {target!r} has {df[target].iloc[row]!r} at row {row}")
    return np.where(labelled, values, 0.0)


def _as_numbers(series, col, what, codes, keys, path) -> np.ndarray:
    import pandas as pd

    if pd.api.types.is_complex_dtype(series):
        raise TableError(f"table {path!r}: {what} column {col!r} is complex; give real numbers")
    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return series.to_numpy(dtype=np.float64)
    num = pd.to_numeric(series, errors="coerce")
    bad = (num.isna() & series.notna()).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise TableError(
            f"table {path!r}: {what} column {col!r} is not numeric: {series.iloc[row]!r} at row "
            f"{row} (group {_group_label(keys[codes[row]])})"
        )
    return num.to_numpy(dtype=np.float64)


# ---------------------------------------------------------------------------------- info
def cmd_info(args: argparse.Namespace, parser) -> int:
    from metafast.cli_model import info_lines

    lines, notes = info_lines(args.model)  # the header only: never unpickles or rebuilds
    print("\n".join(lines))
    for note in notes:
        print(note, file=sys.stderr)
    return 0


def _say(args, text: str) -> None:
    if args.verbose:
        print(text, flush=True)


# ---------------------------------------------------------------------------------- parser
def add_table_commands(sub, common) -> None:
    """Register fit / predict / info on the ``metafast`` sub-command parser."""
    p = sub.add_parser(
        "fit",
        parents=[common],
        help="meta-train on a table, one task per group",
        description="Meta-train on a CSV table: one training task per group, every labelled "
        "row used. Writes a model file for 'metafast predict'.",
    )
    p.add_argument("table", metavar="TABLE.csv")
    p.add_argument("--group", nargs="+", required=True, metavar="COL", help="group column(s): one task per group")
    p.add_argument("--target", required=True, metavar="COL", help="the column to predict")
    p.add_argument("--features", nargs="+", metavar="COL", help="feature columns (default: every other numeric column)")
    p.add_argument(
        "--learner",
        choices=sorted(LEARNERS),
        default=None,
        help="bayes (MetaBayes, default for numeric targets), mixture (MetaBayes with a mixture "
        "prior, C chosen on held-out groups), ridge (MetaRidge), classifier (MetaClassifier, "
        "default for integer targets)",
    )
    p.add_argument(
        "--basis",
        metavar="NAME[:key=value,...]",
        help="basis family and parameters, e.g. polynomial:degree=3 (see 'metafast basis')",
    )
    p.add_argument("--param", action="append", metavar="key=value", help="a learner parameter (repeatable)")
    p.add_argument("-o", "--output", required=True, metavar="MODEL", help="where to write the model file")
    p.set_defaults(func=_guarded(cmd_fit), parser=p)

    p = sub.add_parser(
        "predict",
        parents=[common],
        help="predict a table's empty targets with a fitted model",
        description="Rows whose target is present are their group's support; rows whose "
        "target is empty are predicted. Writes the table with prediction columns.",
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument("table", metavar="TABLE.csv")
    p.add_argument("-o", "--output", required=True, metavar="OUT.csv")
    p.add_argument(
        "--trust-model",
        action="store_true",
        help="trust the model file's author: read a format-1 (pickle) file, or scikit-learn types "
        "skops does not trust by default (see docs/reliability.md)",
    )
    p.set_defaults(func=_guarded(cmd_predict), parser=p)

    p = sub.add_parser("info", help="what a model file holds (learner, basis, data, versions)")
    p.add_argument("model", metavar="MODEL")
    p.set_defaults(func=_guarded(cmd_info), parser=p)


def _guarded(command):
    """Run a table command; a TableError or a bad model file is one line on stderr, status 2."""

    def run(args, parser):
        try:
            return command(args, parser)
        except ValueError as exc:  # TableError and the model file's checks
            print(f"metafast {args.command}: error: {exc}", file=sys.stderr)
            return 2

    run.__name__ = command.__name__
    return run
