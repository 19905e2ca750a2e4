"""Synthetic classification task families: ``logistic`` (known prior, oracle) and
``class-mixtures`` (many classes, for 20-way episodes).

Both draw tasks in reproducible blocks like every built-in loader (``_sampling``): task i is a
pure function of (seed, i), the same for any chunking or stream.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metafast._validation import check_positive_float, check_positive_int
from metafast.tasks._sampling import BlockSampler
from metafast.tasks._seeds import resolve_seed
from metafast.tasks._taskset import TaskSet, _check_label_setting

# ---------------------------------------------------------------------------- logistic


def logistic_features(X: np.ndarray) -> np.ndarray:
    """The fixed basis of the ``logistic`` family: phi(x) = (1, x_1, ..., x_d)."""
    X = np.asarray(X, dtype=np.float64)
    return np.hstack([np.ones((X.shape[0], 1)), X])


def logistic_prior(
    n_classes: int = 3,
    n_features: int = 2,
    mean_scale: float = 2.0,
    prior_scale: float = 1.0,
    setting: str = "shared",
    prior_seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The family's true prior: class means (C, d+1) and covariance (d+1, d+1) of w_tc.

    Shared setting: mu_c ~ N(0, mean_scale^2 I), drawn once from ``prior_seed``; episodic: mu_c = 0
    (labels carry no meaning across tasks).  Sigma = prior_scale^2 I.
    """
    p = n_features + 1
    if setting == "episodic":
        mu = np.zeros((n_classes, p))
    else:
        mu = mean_scale * np.random.default_rng(np.random.SeedSequence(prior_seed, spawn_key=(7,))).standard_normal(
            (n_classes, p)
        )
    return mu, prior_scale**2 * np.eye(p)


def _prepare_logistic(
    n_support=10,
    n_query=10,
    n_classes=3,
    n_features=2,
    mean_scale=2.0,
    prior_scale=1.0,
    setting="shared",
    prior_seed=0,
    dtype=np.float64,
):
    n_support = check_positive_int(n_support, "n_support")
    n_query = check_positive_int(n_query, "n_query")
    n_classes = check_positive_int(n_classes, "n_classes", minimum=2)
    n_features = check_positive_int(n_features, "n_features")
    mean_scale = check_positive_float(mean_scale, "mean_scale", allow_zero=True)
    prior_scale = check_positive_float(prior_scale, "prior_scale")
    _check_label_setting(setting, True)
    mu, cov = logistic_prior(n_classes, n_features, mean_scale, prior_scale, setting, prior_seed)
    return dict(n_support=n_support, n_query=n_query, mu=mu, scale=prior_scale, setting=setting, dtype=np.dtype(dtype))


def _sample_logistic(task_rng, point_rng, n, *, n_support, n_query, mu, scale, setting, dtype):
    C, p = mu.shape
    W = mu[None] + scale * task_rng.standard_normal((n, C, p))
    k = n_support + n_query
    X = point_rng.uniform(-1.0, 1.0, (n, k, p - 1))
    Z = np.einsum("tkp,tcp->tkc", X, W[:, :, 1:]) + W[:, None, :, 0]
    P = np.exp(Z - Z.max(axis=2, keepdims=True))
    P /= P.sum(axis=2, keepdims=True)
    u = point_rng.random((n, k, 1))
    y = np.minimum((u > np.cumsum(P, axis=2)).sum(axis=2), C - 1).astype(np.int64)
    d = p - 1
    info = [{"family": "logistic", "weights": W[t]} for t in range(n)]
    return TaskSet(
        X[:, :n_support].reshape(-1, d).astype(dtype),
        y[:, :n_support].reshape(-1),
        np.arange(n + 1, dtype=np.int64) * n_support,
        X[:, n_support:].reshape(-1, d).astype(dtype),
        y[:, n_support:].reshape(-1),
        np.arange(n + 1, dtype=np.int64) * n_query,
        info=info,
        label_setting=setting,
        _copy_info=False,
    )


LOGISTIC = BlockSampler("logistic", _prepare_logistic, _sample_logistic)


def load_logistic(
    n_tasks: int = 1000,
    n_support: int = 10,
    n_query: int = 10,
    seed: Any = 0,
    n_classes: int = 3,
    n_features: int = 2,
    mean_scale: float = 2.0,
    prior_scale: float = 1.0,
    setting: str = "shared",
    prior_seed: int = 0,
    dtype=np.float64,
    k_shot: int | None = None,
) -> TaskSet:
    """Hierarchical multinomial logistic tasks with a known prior (metafast's protocol).

    Basis phi(x) = (1, x) (``logistic_features``), x ~ U[-1, 1]^d (d = ``n_features`` = 2).
    Each task draws w_tc ~ N(mu_c, prior_scale^2 I) for c = 0..C-1 (C = ``n_classes`` = 3), then
    labels y ~ softmax_c(phi(x)^T w_tc); ``n_support`` / ``n_query`` points per task (not per
    class: a task may lack a class); ``k_shot`` sets n_support = k_shot x n_classes and n_query =
    n_query x n_classes (as many points as a K-shot episode, for the benchmark harness).  Shared setting (default): mu_c ~ N(0, mean_scale^2 I) fixed
    by ``prior_seed`` (``logistic_prior``); ``setting="episodic"``: mu_c = 0.
    info: family, weights (C, d+1).  :func:`oracle_proba` gives the true class probabilities, the
    Bayes-optimal log loss of a model that knew each task's weights.
    """
    n_tasks = check_positive_int(n_tasks, "n_tasks")
    if k_shot is not None:
        n_classes = check_positive_int(n_classes, "n_classes", minimum=2)
        n_support = check_positive_int(k_shot, "k_shot") * n_classes
        n_query = check_positive_int(n_query, "n_query") * n_classes
    prepared = LOGISTIC.prepare(
        n_support=n_support,
        n_query=n_query,
        n_classes=n_classes,
        n_features=n_features,
        mean_scale=mean_scale,
        prior_scale=prior_scale,
        setting=setting,
        prior_seed=prior_seed,
        dtype=dtype,
    )
    return LOGISTIC.generate(0, n_tasks, resolve_seed(seed), 0, **prepared)


load_logistic.sampler = LOGISTIC


def oracle_proba(tasks: TaskSet, which: str = "query") -> np.ndarray:
    """True class probabilities (N, C) of every ``which`` ("query" or "support") row of tasks made
    by the ``logistic`` loader (from each task's ``info["weights"]``)."""
    if which not in ("query", "support"):
        raise ValueError(f"parameter 'which' must be 'query' or 'support'; got {which!r}")
    X = getattr(tasks, f"X_{which}")
    off = getattr(tasks, f"{which}_offsets")
    out = None
    for t, d in enumerate(tasks.info):
        if not isinstance(d, dict) or d.get("family") != "logistic" or "weights" not in d:
            raise ValueError(f"info of task {t} was not made by the 'logistic' loader: no true probabilities")
        W = np.asarray(d["weights"], dtype=np.float64)
        if out is None:
            out = np.empty((X.shape[0], W.shape[0]))
        Z = logistic_features(X[off[t] : off[t + 1]]) @ W.T
        Z -= Z.max(axis=1, keepdims=True)
        P = np.exp(Z)
        out[off[t] : off[t + 1]] = P / P.sum(axis=1, keepdims=True)
    return out


# ---------------------------------------------------------------------------- class mixtures


def _mixture_world(n_features, n_total_classes, n_components, latent_dim, world_seed):
    """The fixed generative world: class centres in a latent space and a random tanh network."""
    rng = np.random.default_rng(np.random.SeedSequence(world_seed, spawn_key=(11,)))
    centres = 2.0 * rng.standard_normal((n_total_classes, 1, latent_dim)) + 0.7 * rng.standard_normal(
        (n_total_classes, n_components, latent_dim)
    )
    hidden = 4 * n_features
    W1 = rng.standard_normal((latent_dim, hidden)) / np.sqrt(latent_dim)
    b1 = 0.5 * rng.standard_normal(hidden)
    W2 = rng.standard_normal((hidden, n_features)) / np.sqrt(hidden) * 2.0
    return centres, W1, b1, W2


def _prepare_mixtures(
    n_support=None,
    n_query=15,
    n_way=20,
    n_features=16,
    n_total_classes=100,
    n_components=2,
    latent_dim=4,
    noise=0.3,
    split="train",
    train_fraction=0.64,
    world_seed=0,
    dtype=np.float64,
    k_shot=None,
):
    from metafast.tasks._episodes import _shots

    k = _shots(n_support, k_shot)
    n_features = check_positive_int(n_features, "n_features")
    n_total_classes = check_positive_int(n_total_classes, "n_total_classes", minimum=2)
    n_way = check_positive_int(n_way, "n_way", minimum=2)
    if split not in ("train", "test", "all"):
        raise ValueError(f"parameter 'split' must be 'train', 'test' or 'all'; got {split!r}")
    n_train = int(round(train_fraction * n_total_classes))
    if not 0 < n_train < n_total_classes:
        raise ValueError(
            f"parameter 'train_fraction' leaves no meta-train or no meta-test class; got {train_fraction!r}"
        )
    classes = {
        "train": np.arange(n_train),
        "test": np.arange(n_train, n_total_classes),
        "all": np.arange(n_total_classes),
    }[split]
    if n_way > classes.size:
        raise ValueError(f"n_way={n_way} is larger than the {classes.size} classes of split {split!r}")
    world = _mixture_world(
        n_features,
        n_total_classes,
        check_positive_int(n_components, "n_components"),
        check_positive_int(latent_dim, "latent_dim"),
        world_seed,
    )
    return dict(
        classes=classes,
        n_way=n_way,
        k_shot=check_positive_int(k, "k_shot"),
        n_query=check_positive_int(n_query, "n_query"),
        world=world,
        noise=check_positive_float(noise, "noise", allow_zero=True),
        dtype=np.dtype(dtype),
    )


def _sample_mixtures(task_rng, point_rng, n, *, classes, n_way, k_shot, n_query, world, noise, dtype):
    centres, W1, b1, W2 = world
    chosen = classes[np.argsort(task_rng.random((n, classes.size)), axis=1)[:, :n_way]]  # (n, n_way)
    per = k_shot + n_query
    cls = np.repeat(chosen[:, :, None], per, axis=2)  # (n, n_way, per)
    comp = point_rng.integers(0, centres.shape[1], cls.shape)
    z = centres[cls, comp] + 0.5 * point_rng.standard_normal((*cls.shape, centres.shape[2]))
    X = np.tanh(z @ W1 + b1) @ W2 + noise * point_rng.standard_normal((*cls.shape, W2.shape[1]))
    labels = np.broadcast_to(np.arange(n_way)[None, :, None], cls.shape)
    d = X.shape[-1]
    Xs, Xq = X[:, :, :k_shot].reshape(-1, d), X[:, :, k_shot:].reshape(-1, d)
    ys, yq = labels[:, :, :k_shot].reshape(-1), labels[:, :, k_shot:].reshape(-1)
    info = [{"classes": c} for c in chosen.tolist()]
    return TaskSet(
        Xs.astype(dtype),
        ys.astype(np.int64),
        np.arange(n + 1, dtype=np.int64) * (n_way * k_shot),
        Xq.astype(dtype),
        yq.astype(np.int64),
        np.arange(n + 1, dtype=np.int64) * (n_way * n_query),
        info=info,
        label_setting="episodic",
        _copy_info=False,
    )


MIXTURES = BlockSampler("class-mixtures", _prepare_mixtures, _sample_mixtures)


def load_class_mixtures(
    n_tasks: int = 600,
    n_support: int | None = None,
    n_query: int = 15,
    seed: Any = 0,
    n_way: int = 20,
    n_features: int = 16,
    n_total_classes: int = 100,
    n_components: int = 2,
    latent_dim: int = 4,
    noise: float = 0.3,
    split: str = "train",
    train_fraction: float = 0.64,
    world_seed: int = 0,
    dtype=np.float64,
    k_shot: int | None = None,
) -> TaskSet:
    """Many-class episodes: class-conditional mixtures sharing one nonlinear structure (metafast's).

    A fixed world (``world_seed``) has ``n_total_classes`` = 100 classes; class c is a mixture of
    ``n_components`` = 2 Gaussian blobs (std 0.5) in a ``latent_dim`` = 4 latent space, and every
    class is mapped to d = ``n_features`` (8-32) by the same random tanh network, plus N(0, noise^2)
    noise.  Classes 0-63 are meta-train (``split="train"``), 64-99 meta-test (``train_fraction``).
    Episodes: ``n_way`` = 20 classes, ``k_shot`` (= ``n_support``, default 1) and ``n_query`` points
    per class, relabelled 0..n_way-1 (original classes in info["classes"]); label_setting episodic.
    """
    n_tasks = check_positive_int(n_tasks, "n_tasks")
    prepared = MIXTURES.prepare(
        n_support=n_support,
        n_query=n_query,
        n_way=n_way,
        n_features=n_features,
        n_total_classes=n_total_classes,
        n_components=n_components,
        latent_dim=latent_dim,
        noise=noise,
        split=split,
        train_fraction=train_fraction,
        world_seed=world_seed,
        dtype=dtype,
        k_shot=k_shot,
    )
    return MIXTURES.generate(0, n_tasks, resolve_seed(seed), 0, **prepared)


load_class_mixtures.sampler = MIXTURES

LOADERS = {"logistic": load_logistic, "class-mixtures": load_class_mixtures}
