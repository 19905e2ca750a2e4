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

The families themselves (parameters, inputs, f(x; theta)) and the oracle are in
``_synthetic_families``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metafast._validation import check_positive_float, check_positive_int
from metafast.tasks._sampling import BlockSampler, packed
from metafast.tasks._seeds import resolve_seed
from metafast.tasks._synthetic_families import (  # noqa: F401 (the oracle is public here too)
    _MODE_NAMES,
    FAMILIES,
    MODES,
    _check_dtype,
    _check_range,
    _check_sizes,
    noise_free,
    oracle,
    true_function,
)
from metafast.tasks._taskset import TaskSet

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
    return packed(X.astype(dtype, copy=False), Y.astype(dtype, copy=False), n_support, fam.to_info(theta, noise))


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


def _prepare_sinusoid(
    n_support=10,
    n_query=10,
    amplitude=(0.1, 5.0),
    phase=(0.0, np.pi),
    x_range=(-5.0, 5.0),
    noise=0.0,
    frequency=1.0,
    dtype=np.float64,
):
    n_support, n_query = _check_sizes(n_support, n_query)
    return dict(
        n_support=n_support,
        n_query=n_query,
        amplitude=_check_range(amplitude, "amplitude"),
        phase=_check_range(phase, "phase"),
        x_range=_check_range(x_range, "x_range"),
        noise=check_positive_float(noise, "noise", allow_zero=True),
        frequency=_check_range(frequency, "frequency", positive=True),
        dtype=_check_dtype(dtype),
    )


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
    return _run(
        _SINUSOID,
        n_tasks,
        seed,
        n_support=n_support,
        n_query=n_query,
        amplitude=amplitude,
        phase=phase,
        x_range=x_range,
        noise=noise,
        frequency=frequency,
        dtype=dtype,
    )


# --- harmonic


def _prepare_harmonic(
    n_support=10, n_query=10, frequency=(5.0, 7.0), x_center=(-4.0, 4.0), noise=0.0, dtype=np.float64
):
    n_support, n_query = _check_sizes(n_support, n_query)
    return dict(
        n_support=n_support,
        n_query=n_query,
        frequency=_check_range(frequency, "frequency", positive=True),
        x_center=_check_range(x_center, "x_center"),
        noise=check_positive_float(noise, "noise", allow_zero=True),
        dtype=_check_dtype(dtype),
    )


_HARMONIC = _sampler("harmonic", _prepare_harmonic)


@_loader(_HARMONIC)
def load_harmonic(
    n_tasks: int = 1000,
    n_support: int = 10,
    n_query: int = 10,
    seed: Any = 0,
    frequency=(5.0, 7.0),
    x_center=(-4.0, 4.0),
    noise: float = 0.0,
    dtype=np.float64,
) -> TaskSet:
    """Harmonic regression, Lacoste et al. 2018 ("Uncertainty in Multitask Transfer Learning").

    y = a1 sin(w x + b1) + a2 sin(2 w x + b2), with w ~ U[5, 7], a1, a2 ~ N(0, 1),
    b1, b2 ~ U[0, 2 pi], and inputs x = mu_x + N(0, 1) around a task centre mu_x ~ U[-4, 4].
    This follows Torchmeta's *code* (torchmeta/toy/harmonic.py), whose docstring wrongly calls
    [5, 7] the amplitude range.  No noise by default.
    info: frequency, a1, a2, b1, b2, mu_x, noise.
    """
    return _run(
        _HARMONIC,
        n_tasks,
        seed,
        n_support=n_support,
        n_query=n_query,
        frequency=frequency,
        x_center=x_center,
        noise=noise,
        dtype=dtype,
    )


# --- sinusoid-line and multimodal


def _prepare_modal(
    n_support=10,
    n_query=10,
    modes=("sine", "linear", "quadratic", "tanh", "abs"),
    amplitude=(0.1, 5.0),
    phase=(0.0, np.pi),
    slope=(-3.0, 3.0),
    intercept=(-3.0, 3.0),
    center=(-3.0, 3.0),
    bias=(-3.0, 3.0),
    quadratic_scale=(0.02, 0.15),
    cubic_scale=(0.005, 0.03),
    x_range=(-5.0, 5.0),
    noise=0.3,
    dtype=np.float64,
    mode_weights=None,
):
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
        n_support=n_support,
        n_query=n_query,
        modes=modes,
        mode_weights=mode_weights,
        amplitude=_check_range(amplitude, "amplitude"),
        phase=_check_range(phase, "phase"),
        slope=_check_range(slope, "slope"),
        intercept=_check_range(intercept, "intercept"),
        center=_check_range(center, "center"),
        bias=_check_range(bias, "bias"),
        quadratic_scale=_check_range(quadratic_scale, "quadratic_scale", positive=True),
        cubic_scale=_check_range(cubic_scale, "cubic_scale", positive=True),
        x_range=_check_range(x_range, "x_range"),
        noise=check_positive_float(noise, "noise", allow_zero=True),
        dtype=_check_dtype(dtype),
    )


def _prepare_sinusoid_line(
    n_support=10,
    n_query=10,
    amplitude=(0.1, 5.0),
    phase=(0.0, np.pi),
    slope=(-3.0, 3.0),
    intercept=(-3.0, 3.0),
    x_range=(-5.0, 5.0),
    noise=0.0,
    p_sine=0.5,
    dtype=np.float64,
):
    p = check_positive_float(p_sine, "p_sine", allow_zero=True)
    if p > 1:
        raise ValueError(f"parameter 'p_sine' must be in [0, 1]; got {p_sine!r}")
    return _prepare_modal(
        n_support,
        n_query,
        ("sine", "linear"),
        amplitude,
        phase,
        slope,
        intercept,
        x_range=x_range,
        noise=noise,
        dtype=dtype,
        mode_weights=(p, 1 - p),
    )


_SINUSOID_LINE = _sampler("sinusoid-line", _prepare_sinusoid_line)
_MULTIMODAL = _sampler("multimodal", _prepare_modal)


@_loader(_SINUSOID_LINE)
def load_sinusoid_line(
    n_tasks: int = 1000,
    n_support: int = 10,
    n_query: int = 10,
    seed: Any = 0,
    amplitude=(0.1, 5.0),
    phase=(0.0, np.pi),
    slope=(-3.0, 3.0),
    intercept=(-3.0, 3.0),
    x_range=(-5.0, 5.0),
    noise: float = 0.0,
    p_sine: float = 0.5,
    dtype=np.float64,
) -> TaskSet:
    """Sines and lines, Finn et al. 2018 (PLATIPUS), as in Torchmeta's SinusoidAndLine.

    Each task is a sine A sin(x - phi) with A ~ U[0.1, 5], phi ~ U[0, pi] (probability
    ``p_sine`` = 0.5) or a line slope * x + intercept with slope, intercept ~ U[-3, 3];
    x ~ U[-5, 5]; no noise by default (Torchmeta's default).  Torchmeta makes exactly half of a
    fixed pool sines; here each task's kind is an independent draw.
    info: kind ("sine" or "line") and its parameters (amplitude, phase or slope, intercept), noise.
    """
    return _run(
        _SINUSOID_LINE,
        n_tasks,
        seed,
        n_support=n_support,
        n_query=n_query,
        amplitude=amplitude,
        phase=phase,
        slope=slope,
        intercept=intercept,
        x_range=x_range,
        noise=noise,
        p_sine=p_sine,
        dtype=dtype,
    )


@_loader(_MULTIMODAL)
def load_multimodal(
    n_tasks: int = 1000,
    n_support: int = 10,
    n_query: int = 10,
    seed: Any = 0,
    modes=("sine", "linear", "quadratic", "tanh", "abs"),
    noise: float = 0.3,
    x_range=(-5.0, 5.0),
    mode_weights=None,
    dtype=np.float64,
    **ranges,
) -> TaskSet:
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
    return _run(
        _MULTIMODAL,
        n_tasks,
        seed,
        n_support=n_support,
        n_query=n_query,
        modes=modes,
        x_range=x_range,
        noise=noise,
        dtype=dtype,
        mode_weights=mode_weights,
        **ranges,
    )


# --- friedman (d >= 5)


def _prepare_friedman(n_support=10, n_query=10, n_features=5, coef_scale=(0.5, 1.5), noise=0.0, dtype=np.float64):
    n_support, n_query = _check_sizes(n_support, n_query)
    n_features = check_positive_int(n_features, "n_features", minimum=5)
    return dict(
        n_support=n_support,
        n_query=n_query,
        n_features=n_features,
        coef_scale=_check_range(coef_scale, "coef_scale"),
        noise=check_positive_float(noise, "noise", allow_zero=True),
        dtype=_check_dtype(dtype),
    )


_FRIEDMAN = _sampler("friedman", _prepare_friedman)


@_loader(_FRIEDMAN)
def load_friedman(
    n_tasks: int = 1000,
    n_support: int = 10,
    n_query: int = 10,
    seed: Any = 0,
    n_features: int = 5,
    coef_scale=(0.5, 1.5),
    noise: float = 0.0,
    dtype=np.float64,
) -> TaskSet:
    """Multi-input tasks built on Friedman's first function (Friedman 1991, "MARS").

    y = c1 sin(pi x1 x2) + c2 (x3 - 0.5)^2 + c3 x4 + c4 x5 + noise, x ~ U[0, 1]^d with
    d = ``n_features`` >= 5 (columns beyond the fifth are irrelevant, as in Friedman's d = 10
    version and scikit-learn's make_friedman1).  Friedman's function has fixed coefficients
    (10, 20, 10, 5); here each task scales each of them by its own U[0.5, 1.5] factor
    (``coef_scale``), a metafast task distribution with no published meta-learning protocol.
    info: c1, c2, c3, c4, noise.
    """
    return _run(
        _FRIEDMAN,
        n_tasks,
        seed,
        n_support=n_support,
        n_query=n_query,
        n_features=n_features,
        coef_scale=coef_scale,
        noise=noise,
        dtype=dtype,
    )


LOADERS = {
    "sinusoid": load_sinusoid,
    "harmonic": load_harmonic,
    "sinusoid-line": load_sinusoid_line,
    "multimodal": load_multimodal,
    "friedman": load_friedman,
}
