"""Synthetic task families with their published sampling protocols as defaults.

Every family is a generating process y = f(x; theta_t) + noise with task parameters theta_t.
Each task's ``info`` records ``family``, ``noise`` and every generating parameter, so
:func:`true_function` (one task) and :func:`oracle` (a whole TaskSet, vectorised) give the
noise-free targets: the "oracle" baseline of the benchmarks.

All loaders share the plugin signature ``loader(n_tasks, n_support, n_query, seed, **params)``,
draw tasks in reproducible blocks (see ``metafast.tasks._sampling``: task i depends only on the
seed and i), and vectorise generation over the tasks of a block.  The task-level parameters
come from a different random stream than the points, so the same seed gives the same functions
for any ``n_support``/``n_query``.

Why one module of ~500 lines: it is a catalogue, one short vectorised loader per family plus
the shared oracle; each family is self-contained, and a split would only move the catalogue.
"""

from __future__ import annotations

from itertools import repeat
from typing import Any, Sequence

import numpy as np

from metafast._validation import check_positive_float, check_positive_int
from metafast.tasks._sampling import BlockSampler, packed
from metafast.tasks._seeds import resolve_seed
from metafast.tasks._taskset import TaskSet, gather_task_rows

# ---------------------------------------------------------------------------- parameter checks


def _check_range(value: Any, name: str, *, positive: bool = False) -> tuple[float, float]:
    """(low, high) from a pair or a single number (a fixed value); finite, low <= high."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        pair = (float(value), float(value))
    else:
        try:
            lo, hi = value
            pair = (float(lo), float(hi))
        except (TypeError, ValueError):
            raise TypeError(
                f"parameter {name!r} must be a (low, high) pair or a single number; got {value!r}"
            ) from None
    lo, hi = pair
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi:
        raise ValueError(f"parameter {name!r} must be finite with low <= high; got {value!r}")
    if positive and lo <= 0:
        raise ValueError(f"parameter {name!r} must be > 0; got {value!r}")
    return pair


def _check_sizes(n_support: Any, n_query: Any) -> tuple[int, int]:
    return check_positive_int(n_support, "n_support"), check_positive_int(n_query, "n_query")


def _check_dtype(dtype: Any) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"parameter 'dtype' must be float32 or float64; got {dt}")
    return dt


def _uniform(rng: np.random.Generator, bounds: tuple[float, float], size) -> np.ndarray:
    return rng.uniform(bounds[0], bounds[1], size=size)


# ---------------------------------------------------------------------------- families


class _Family:
    """One generating process.  Subclasses define the draws and the row-wise function."""

    name: str
    keys: tuple[str, ...]          # per-task parameters recorded in info (scalars)

    def draw_tasks(self, rng, n, **opts) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def draw_inputs(self, rng, theta, n, n_points, **opts) -> np.ndarray:
        """(n, n_points, d) inputs; the default is uniform over ``x_range`` in 1-D."""
        return _uniform(rng, opts["x_range"], (n, n_points, 1))

    def value(self, rows: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
        """Noise-free f(x) for packed rows: ``rows[k][r]`` is parameter k of row r's task."""
        raise NotImplementedError

    def to_info(self, theta: dict[str, np.ndarray], noise: float) -> list[dict]:
        names = ("family", *self.keys, "noise")
        cols = [theta[k].tolist() for k in self.keys]
        return [dict(zip(names, row)) for row in zip(repeat(self.name), *cols, repeat(noise))]

    def from_info(self, infos: Sequence[dict]) -> dict[str, np.ndarray]:
        return {k: np.asarray([d[k] for d in infos], dtype=np.float64) for k in self.keys}


class _Sinusoid(_Family):
    name = "sinusoid"
    keys = ("amplitude", "phase", "frequency")

    def draw_tasks(self, rng, n, *, amplitude, phase, frequency, **_):
        return {
            "amplitude": _uniform(rng, amplitude, n),
            "phase": _uniform(rng, phase, n),
            "frequency": _uniform(rng, frequency, n),
        }

    def value(self, rows, X):
        return rows["amplitude"] * np.sin(rows["frequency"] * X[:, 0] - rows["phase"])


class _Harmonic(_Family):
    name = "harmonic"
    keys = ("frequency", "a1", "a2", "b1", "b2", "mu_x")

    def draw_tasks(self, rng, n, *, frequency, x_center, **_):
        return {
            "frequency": _uniform(rng, frequency, n),
            "a1": rng.standard_normal(n),
            "a2": rng.standard_normal(n),
            "b1": rng.uniform(0.0, 2 * np.pi, n),
            "b2": rng.uniform(0.0, 2 * np.pi, n),
            "mu_x": _uniform(rng, x_center, n),
        }

    def draw_inputs(self, rng, theta, n, n_points, **_):
        return (theta["mu_x"][:, None] + rng.standard_normal((n, n_points)))[:, :, None]

    def value(self, rows, X):
        x, w = X[:, 0], rows["frequency"]
        return rows["a1"] * np.sin(w * x + rows["b1"]) + rows["a2"] * np.sin(2 * w * x + rows["b2"])


# Modes of the multimodal family and the parameters each one records.
MODES: dict[str, tuple[str, ...]] = {
    "sine": ("amplitude", "phase"),
    "linear": ("slope", "intercept"),
    "quadratic": ("scale", "center", "bias"),
    "cubic": ("scale", "center", "bias"),
    "abs": ("slope", "center", "bias"),
    "tanh": ("slope", "center", "bias"),
}
_MODE_NAMES = tuple(MODES)
_MODE_KEYS = ("amplitude", "phase", "slope", "intercept", "scale", "center", "bias")


class _Modal(_Family):
    """Mixture of 1-D function kinds; ``mode`` picks the kind of each task."""

    name = "multimodal"
    keys = _MODE_KEYS

    def draw_tasks(self, rng, n, *, modes, mode_weights=None, amplitude, phase, slope, intercept,
                   center, bias, quadratic_scale, cubic_scale, **_):
        codes = np.asarray([_MODE_NAMES.index(m) for m in modes])
        mode = codes[rng.choice(len(codes), size=n, p=mode_weights)]
        # every parameter is drawn for every task so the random stream never depends on the modes
        u_scale = rng.uniform(0.0, 1.0, n)
        sign = np.where(rng.integers(0, 2, n) == 1, 1.0, -1.0)
        lo = np.where(mode == _MODE_NAMES.index("cubic"), cubic_scale[0], quadratic_scale[0])
        hi = np.where(mode == _MODE_NAMES.index("cubic"), cubic_scale[1], quadratic_scale[1])
        return {
            "mode": mode,
            "amplitude": _uniform(rng, amplitude, n),
            "phase": _uniform(rng, phase, n),
            "slope": _uniform(rng, slope, n),
            "intercept": _uniform(rng, intercept, n),
            "scale": sign * (lo + u_scale * (hi - lo)),
            "center": _uniform(rng, center, n),
            "bias": _uniform(rng, bias, n),
        }

    def value(self, rows, X):
        x, m = X[:, 0], rows["mode"]
        u = x - rows["center"]
        branches = {
            "sine": lambda: rows["amplitude"] * np.sin(x - rows["phase"]),
            "linear": lambda: rows["slope"] * x + rows["intercept"],
            "quadratic": lambda: rows["scale"] * u**2 + rows["bias"],
            "cubic": lambda: rows["scale"] * u**3 + rows["bias"],
            "abs": lambda: rows["slope"] * np.abs(u) + rows["bias"],
            "tanh": lambda: rows["slope"] * np.tanh(u) + rows["bias"],
        }
        out = np.zeros_like(x)
        for code, name in enumerate(_MODE_NAMES):
            sel = m == code
            if sel.any():
                out[sel] = branches[name]()[sel]
        return out

    def to_info(self, theta, noise):
        cols = {k: theta[k].tolist() for k in self.keys}
        out = []
        for t, code in enumerate(theta["mode"].tolist()):
            mode = _MODE_NAMES[code]
            out.append({"family": self.name, "mode": mode,
                        **{k: cols[k][t] for k in MODES[mode]}, "noise": noise})
        return out

    def from_info(self, infos):
        theta = {k: np.asarray([d.get(k, 0.0) for d in infos], dtype=np.float64) for k in self.keys}
        theta["mode"] = np.asarray([_MODE_NAMES.index(d["mode"]) for d in infos])
        return theta


class _SinusoidLine(_Modal):
    """Finn et al. 2018: a sine or a line per task (the multimodal machinery with two modes)."""

    name = "sinusoid-line"

    def to_info(self, theta, noise):
        out = super().to_info(theta, noise)
        return [{"family": d.pop("family"), "kind": "sine" if d.pop("mode") == "sine" else "line", **d}
                for d in out]

    def from_info(self, infos):
        infos = [{**d, "mode": "sine" if d["kind"] == "sine" else "linear"} for d in infos]
        return super().from_info(infos)


class _Friedman(_Family):
    name = "friedman"
    keys = ("c1", "c2", "c3", "c4")
    BASE = (10.0, 20.0, 10.0, 5.0)

    def draw_tasks(self, rng, n, *, coef_scale, **_):
        return {k: b * _uniform(rng, coef_scale, n) for k, b in zip(self.keys, self.BASE)}

    def draw_inputs(self, rng, theta, n, n_points, *, n_features, **_):
        return rng.uniform(0.0, 1.0, (n, n_points, n_features))

    def value(self, rows, X):
        return (rows["c1"] * np.sin(np.pi * X[:, 0] * X[:, 1]) + rows["c2"] * (X[:, 2] - 0.5) ** 2
                + rows["c3"] * X[:, 3] + rows["c4"] * X[:, 4])


FAMILIES: dict[str, _Family] = {
    f.name: f for f in (_Sinusoid(), _Harmonic(), _SinusoidLine(), _Modal(), _Friedman())
}


# ---------------------------------------------------------------------------- generation


def _sample_block(task_rng, point_rng, n, *, family, n_support, n_query, noise, dtype, **opts):
    fam = FAMILIES[family]
    theta = fam.draw_tasks(task_rng, n, **opts)
    p = n_support + n_query
    X = fam.draw_inputs(point_rng, theta, n, p, **opts)
    rows = {k: np.repeat(v, p) for k, v in theta.items()}
    Y = fam.value(rows, X.reshape(n * p, X.shape[2])).reshape(n, p)
    if noise:
        Y = Y + noise * point_rng.standard_normal((n, p))
    return packed(X.astype(dtype, copy=False), Y.astype(dtype, copy=False), n_support,
                  fam.to_info(theta, noise))


def _sampler(family: str, prepare) -> BlockSampler:
    def full_prepare(**params):
        out = prepare(**params)
        out["family"] = family
        return out

    return BlockSampler(family, full_prepare, _sample_block)


def _run(sampler: BlockSampler, n_tasks, seed, **params) -> TaskSet:
    n_tasks = check_positive_int(n_tasks, "n_tasks")
    prepared = sampler.prepare(**params)
    return sampler.generate(0, n_tasks, resolve_seed(seed), 0, **prepared)


def _loader(sampler: BlockSampler):
    """Attach the sampler to a loader function so ``stream`` can generate ranges of it."""
    def decorate(fn):
        fn.sampler = sampler
        return fn
    return decorate


# --- sinusoid


def _prepare_sinusoid(n_support=10, n_query=10, amplitude=(0.1, 5.0), phase=(0.0, np.pi),
                      x_range=(-5.0, 5.0), noise=0.0, frequency=1.0, dtype=np.float64):
    n_support, n_query = _check_sizes(n_support, n_query)
    return dict(n_support=n_support, n_query=n_query,
                amplitude=_check_range(amplitude, "amplitude"), phase=_check_range(phase, "phase"),
                x_range=_check_range(x_range, "x_range"),
                noise=check_positive_float(noise, "noise", allow_zero=True),
                frequency=_check_range(frequency, "frequency", positive=True), dtype=_check_dtype(dtype))


_SINUSOID = _sampler("sinusoid", _prepare_sinusoid)


@_loader(_SINUSOID)
def load_sinusoid(
    n_tasks: int = 1000,
    n_support: int = 10,
    n_query: int = 10,
    seed: Any = 0,
    amplitude=(0.1, 5.0),
    phase=(0.0, np.pi),
    x_range=(-5.0, 5.0),
    noise: float = 0.0,
    frequency=1.0,
    dtype=np.float64,
) -> TaskSet:
    """Sinusoid regression, Finn et al. 2017 (MAML): y = A sin(w x - phi) + noise.

    Published protocol (the default): A ~ U[0.1, 5], phi ~ U[0, pi], w = 1, x ~ U[-5, 5], no
    noise.  Options: ``frequency`` a range (low, high) to draw w ~ U[low, high] per task (as in
    Meta-SGD-style variants) or a fixed number; ``noise`` the std of Gaussian noise on y;
    ``x_range``, ``amplitude`` and ``phase`` as (low, high) or a fixed number.
    info: amplitude, phase, frequency, noise.
    """
    return _run(_SINUSOID, n_tasks, seed, n_support=n_support, n_query=n_query,
                amplitude=amplitude, phase=phase, x_range=x_range, noise=noise,
                frequency=frequency, dtype=dtype)


# --- harmonic


def _prepare_harmonic(n_support=10, n_query=10, frequency=(5.0, 7.0), x_center=(-4.0, 4.0),
                      noise=0.0, dtype=np.float64):
    n_support, n_query = _check_sizes(n_support, n_query)
    return dict(n_support=n_support, n_query=n_query,
                frequency=_check_range(frequency, "frequency", positive=True),
                x_center=_check_range(x_center, "x_center"),
                noise=check_positive_float(noise, "noise", allow_zero=True), dtype=_check_dtype(dtype))


_HARMONIC = _sampler("harmonic", _prepare_harmonic)


@_loader(_HARMONIC)
def load_harmonic(n_tasks: int = 1000, n_support: int = 10, n_query: int = 10, seed: Any = 0,
                  frequency=(5.0, 7.0), x_center=(-4.0, 4.0), noise: float = 0.0,
                  dtype=np.float64) -> TaskSet:
    """Harmonic regression, Lacoste et al. 2018 ("Uncertainty in Multitask Transfer Learning").

    y = a1 sin(w x + b1) + a2 sin(2 w x + b2), with w ~ U[5, 7], a1, a2 ~ N(0, 1),
    b1, b2 ~ U[0, 2 pi], and inputs x = mu_x + N(0, 1) around a task centre mu_x ~ U[-4, 4].
    This follows Torchmeta's *code* (torchmeta/toy/harmonic.py), whose docstring wrongly calls
    [5, 7] the amplitude range.  No noise by default.
    info: frequency, a1, a2, b1, b2, mu_x, noise.
    """
    return _run(_HARMONIC, n_tasks, seed, n_support=n_support, n_query=n_query,
                frequency=frequency, x_center=x_center, noise=noise, dtype=dtype)


# --- sinusoid-line and multimodal


def _prepare_modal(n_support=10, n_query=10, modes=("sine", "linear", "quadratic", "tanh", "abs"),
                   amplitude=(0.1, 5.0), phase=(0.0, np.pi), slope=(-3.0, 3.0), intercept=(-3.0, 3.0),
                   center=(-3.0, 3.0), bias=(-3.0, 3.0), quadratic_scale=(0.02, 0.15),
                   cubic_scale=(0.005, 0.03), x_range=(-5.0, 5.0), noise=0.3, dtype=np.float64,
                   mode_weights=None):
    n_support, n_query = _check_sizes(n_support, n_query)
    if isinstance(modes, str):
        modes = (modes,)
    modes = tuple(modes)
    if not modes:
        raise ValueError("parameter 'modes' is empty; choose from " + ", ".join(_MODE_NAMES))
    for m in modes:
        if m not in MODES:
            raise ValueError(f"parameter 'modes' has unknown mode {m!r}; choose from {', '.join(_MODE_NAMES)}")
    if len(set(modes)) != len(modes):
        raise ValueError(f"parameter 'modes' repeats a mode: {modes}")
    if mode_weights is not None:
        w = np.asarray(mode_weights, dtype=np.float64)
        if w.shape != (len(modes),) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError(f"parameter 'mode_weights' must be {len(modes)} non-negative numbers with a positive sum")
        mode_weights = w / w.sum()
    return dict(
        n_support=n_support, n_query=n_query, modes=modes, mode_weights=mode_weights,
        amplitude=_check_range(amplitude, "amplitude"), phase=_check_range(phase, "phase"),
        slope=_check_range(slope, "slope"), intercept=_check_range(intercept, "intercept"),
        center=_check_range(center, "center"), bias=_check_range(bias, "bias"),
        quadratic_scale=_check_range(quadratic_scale, "quadratic_scale", positive=True),
        cubic_scale=_check_range(cubic_scale, "cubic_scale", positive=True),
        x_range=_check_range(x_range, "x_range"),
        noise=check_positive_float(noise, "noise", allow_zero=True), dtype=_check_dtype(dtype),
    )


def _prepare_sinusoid_line(n_support=10, n_query=10, amplitude=(0.1, 5.0), phase=(0.0, np.pi),
                           slope=(-3.0, 3.0), intercept=(-3.0, 3.0), x_range=(-5.0, 5.0),
                           noise=0.0, p_sine=0.5, dtype=np.float64):
    p = check_positive_float(p_sine, "p_sine", allow_zero=True)
    if p > 1:
        raise ValueError(f"parameter 'p_sine' must be in [0, 1]; got {p_sine!r}")
    return _prepare_modal(n_support, n_query, ("sine", "linear"), amplitude, phase, slope, intercept,
                          x_range=x_range, noise=noise, dtype=dtype, mode_weights=(p, 1 - p))


_SINUSOID_LINE = _sampler("sinusoid-line", _prepare_sinusoid_line)
_MULTIMODAL = _sampler("multimodal", _prepare_modal)


@_loader(_SINUSOID_LINE)
def load_sinusoid_line(n_tasks: int = 1000, n_support: int = 10, n_query: int = 10, seed: Any = 0,
                       amplitude=(0.1, 5.0), phase=(0.0, np.pi), slope=(-3.0, 3.0),
                       intercept=(-3.0, 3.0), x_range=(-5.0, 5.0), noise: float = 0.0,
                       p_sine: float = 0.5, dtype=np.float64) -> TaskSet:
    """Sines and lines, Finn et al. 2018 (PLATIPUS), as in Torchmeta's SinusoidAndLine.

    Each task is a sine A sin(x - phi) with A ~ U[0.1, 5], phi ~ U[0, pi] (probability
    ``p_sine`` = 0.5) or a line slope * x + intercept with slope, intercept ~ U[-3, 3];
    x ~ U[-5, 5]; no noise by default (Torchmeta's default).  Torchmeta makes exactly half of a
    fixed pool sines; here each task's kind is an independent draw.
    info: kind ("sine" or "line") and its parameters (amplitude, phase or slope, intercept), noise.
    """
    return _run(_SINUSOID_LINE, n_tasks, seed, n_support=n_support, n_query=n_query,
                amplitude=amplitude, phase=phase, slope=slope, intercept=intercept,
                x_range=x_range, noise=noise, p_sine=p_sine, dtype=dtype)


@_loader(_MULTIMODAL)
def load_multimodal(n_tasks: int = 1000, n_support: int = 10, n_query: int = 10, seed: Any = 0,
                    modes=("sine", "linear", "quadratic", "tanh", "abs"), noise: float = 0.3,
                    x_range=(-5.0, 5.0), mode_weights=None, dtype=np.float64, **ranges) -> TaskSet:
    """Multimodal 1-D regression, Vuorio et al. 2019 (multimodal MAML, "five functions").

    Each task draws a mode (uniformly from ``modes`` unless ``mode_weights`` is given), then:

    * sine:      A sin(x - phi),           A ~ U[0.1, 5], phi ~ U[0, pi]
    * linear:    slope * x + intercept,     slope, intercept ~ U[-3, 3]
    * quadratic: scale (x - center)^2 + bias, |scale| ~ U[0.02, 0.15] with a random sign
    * tanh:      slope tanh(x - center) + bias
    * abs:       slope |x - center| + bias
    * cubic:     scale (x - center)^3 + bias, |scale| ~ U[0.005, 0.03] with a random sign
                 (a metafast addition, not in the paper; opt in with ``modes``)

    with center, bias ~ U[-3, 3], x ~ U[-5, 5] and Gaussian noise std 0.3, as in the MMAML
    regression code and its published commands.  The reference code draws an equal number of
    tasks per mode in each batch; here each task's mode is an independent draw.  Every range
    can be changed by keyword (amplitude, phase, slope, intercept, center, bias,
    quadratic_scale, cubic_scale).
    info: mode, that mode's parameters, noise.
    """
    return _run(_MULTIMODAL, n_tasks, seed, n_support=n_support, n_query=n_query, modes=modes,
                x_range=x_range, noise=noise, dtype=dtype, mode_weights=mode_weights, **ranges)


# --- friedman (d >= 5)


def _prepare_friedman(n_support=10, n_query=10, n_features=5, coef_scale=(0.5, 1.5), noise=0.0,
                      dtype=np.float64):
    n_support, n_query = _check_sizes(n_support, n_query)
    n_features = check_positive_int(n_features, "n_features", minimum=5)
    return dict(n_support=n_support, n_query=n_query, n_features=n_features,
                coef_scale=_check_range(coef_scale, "coef_scale"),
                noise=check_positive_float(noise, "noise", allow_zero=True), dtype=_check_dtype(dtype))


_FRIEDMAN = _sampler("friedman", _prepare_friedman)


@_loader(_FRIEDMAN)
def load_friedman(n_tasks: int = 1000, n_support: int = 10, n_query: int = 10, seed: Any = 0,
                  n_features: int = 5, coef_scale=(0.5, 1.5), noise: float = 0.0,
                  dtype=np.float64) -> TaskSet:
    """Multi-input tasks built on Friedman's first function (Friedman 1991, "MARS").

    y = c1 sin(pi x1 x2) + c2 (x3 - 0.5)^2 + c3 x4 + c4 x5 + noise, x ~ U[0, 1]^d with
    d = ``n_features`` >= 5 (columns beyond the fifth are irrelevant, as in Friedman's d = 10
    version and scikit-learn's make_friedman1).  Friedman's function has fixed coefficients
    (10, 20, 10, 5); here each task scales each of them by its own U[0.5, 1.5] factor
    (``coef_scale``), a metafast task distribution with no published meta-learning protocol.
    info: c1, c2, c3, c4, noise.
    """
    return _run(_FRIEDMAN, n_tasks, seed, n_support=n_support, n_query=n_query,
                n_features=n_features, coef_scale=coef_scale, noise=noise, dtype=dtype)


# ---------------------------------------------------------------------------- oracle


def true_function(info: dict, X) -> np.ndarray:
    """Noise-free targets f(X) of the synthetic task described by ``info`` (a task's info)."""
    from metafast._validation import check_X

    family = _family_of(info, "info")
    X = check_X(X, "X", dtype=np.float64)
    theta = family.from_info([info])
    rows = {k: np.repeat(v, X.shape[0]) for k, v in theta.items()}
    return family.value(rows, X)


def oracle(tasks: TaskSet, which: str = "query") -> np.ndarray:
    """Noise-free targets of every task's ``which`` ("query" or "support") points, packed.

    Returns a float64 array aligned with ``tasks.y_query`` (or ``y_support``); its MSE against
    the observed targets is the Bayes-optimal error (the noise variance).  Vectorised per family.
    """
    if which not in ("query", "support"):
        raise ValueError(f"parameter 'which' must be 'query' or 'support'; got {which!r}")
    return noise_free(tasks.info, getattr(tasks, f"X_{which}"), getattr(tasks, f"{which}_offsets"))


def noise_free(infos: Sequence[dict], X, offsets) -> np.ndarray:
    """Noise-free f_t(x) for packed rows: rows offsets[t]:offsets[t+1] of X belong to task t
    whose ``info`` is ``infos[t]`` (the building block of :func:`oracle`)."""
    X = np.asarray(X, dtype=np.float64)
    off = np.asarray(offsets, dtype=np.int64)
    if off.shape != (len(infos) + 1,) or off[-1] != X.shape[0]:
        raise ValueError(f"offsets must have {len(infos) + 1} entries ending at the row count {X.shape[0]}")
    sizes = np.diff(off)
    out = np.empty(X.shape[0], dtype=np.float64)
    names = np.asarray([_family_of(d, f"info of task {t}").name for t, d in enumerate(infos)])
    for name in dict.fromkeys(names.tolist()):
        fam = FAMILIES[name]
        ids = np.flatnonzero(names == name)
        theta = fam.from_info([infos[i] for i in ids])
        rows_idx = gather_task_rows(off, ids)[0]
        rows = {k: np.repeat(v, sizes[ids]) for k, v in theta.items()}
        out[rows_idx] = fam.value(rows, X[rows_idx])
    return out


def _family_of(info: Any, what: str) -> _Family:
    if not isinstance(info, dict) or "family" not in info:
        raise ValueError(f"{what} has no 'family' entry: it was not made by a metafast synthetic loader")
    name = info["family"]
    if name not in FAMILIES:
        raise ValueError(f"{what} names unknown family {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]


LOADERS = {
    "sinusoid": load_sinusoid,
    "harmonic": load_harmonic,
    "sinusoid-line": load_sinusoid_line,
    "multimodal": load_multimodal,
    "friedman": load_friedman,
}
