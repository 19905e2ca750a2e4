"""The synthetic task families behind ``tasks.synthetic``'s loaders, and their oracle.

Each family (``FAMILIES``) draws task parameters and inputs and evaluates f(x; theta_t), vectorised
over a block of tasks, and records its parameters in each task's ``info``; :func:`true_function`
(one task), :func:`oracle` (a whole TaskSet) and :func:`noise_free` rebuild the noise-free
targets from that ``info``.  The input checks the loaders share are here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from typing import Any

import numpy as np

from metafast._validation import check_positive_int
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
    keys: tuple[str, ...]  # per-task parameters recorded in info (scalars)

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

    def draw_tasks(
        self,
        rng,
        n,
        *,
        modes,
        mode_weights=None,
        amplitude,
        phase,
        slope,
        intercept,
        center,
        bias,
        quadratic_scale,
        cubic_scale,
        **_,
    ):
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
            out.append({"family": self.name, "mode": mode, **{k: cols[k][t] for k in MODES[mode]}, "noise": noise})
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
        return [{"family": d.pop("family"), "kind": "sine" if d.pop("mode") == "sine" else "line", **d} for d in out]

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
        return (
            rows["c1"] * np.sin(np.pi * X[:, 0] * X[:, 1])
            + rows["c2"] * (X[:, 2] - 0.5) ** 2
            + rows["c3"] * X[:, 3]
            + rows["c4"] * X[:, 4]
        )


FAMILIES: dict[str, _Family] = {f.name: f for f in (_Sinusoid(), _Harmonic(), _SinusoidLine(), _Modal(), _Friedman())}


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
