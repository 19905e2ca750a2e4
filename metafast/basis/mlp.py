"""``mlp``: a learnable neural feature map whose weights are the basis hyperparameters.

The features are the last hidden layer of a small dense network on standardised inputs,

    one layer:   g(x) = act(z W1 + b1)                               (n_basis units)
    two layers:  g(x) = act(act(z W1 + b1) W2 + b2)                   (width, then n_basis units)

with z = (x - mean) / std of the fitted inputs, so a learner's linear weights are the network's
output layer (a linear, or Bayesian, last layer: ALPaCA, Harrison et al. 2018; ANIL, Raghu et al.
2020).  Evaluation and the gradient with respect to the weights are BLAS-gemm Cython kernels
(metafast._kernels._mlp).  See docs/metagrad.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.utils import check_random_state

from metafast._kernels import _mlp
from metafast._validation import check_positive_int
from metafast.basis import _fused

ACTIVATIONS = {"tanh": _mlp.ACT_TANH, "relu": _mlp.ACT_RELU}


class MLP(_fused.KernelFamily):
    """Features from a one- or two-hidden-layer network (see the module docstring).

    Parameters
    ----------
    n_basis : int
        Number of features m (units of the last hidden layer).
    hidden_layers : {1, 2}
        Depth of the feature map.
    width : int
        Units of the first hidden layer when ``hidden_layers=2`` (unused with one layer).
    activation : {"tanh", "relu"}
    random_state : int, RandomState or None
        Seed of the initial weights.
    n_jobs : int or None
        Kernel threads (None: every core).  Results do not depend on it.

    Initialisation (on standardised inputs): W_l ~ N(0, g^2 / fan_in) with g = 1 for tanh and
    sqrt(2) for ReLU (LeCun / He), so pre-activations have unit scale; b_l ~ U(-g, g), so the
    units bend at different places inside the data rather than all at the origin.

    Learnable parameters: "W1" (d, h), "b1" (h,), and with two layers "W2" (h, m), "b2" (m,).
    """

    _single_thread_small_work = True

    def __init__(
        self,
        n_basis: int = 40,
        hidden_layers: int = 2,
        width: int = 40,
        activation: str = "tanh",
        random_state: Any = None,
        n_jobs: int | None = None,
    ):
        self.n_basis = n_basis
        self.hidden_layers = hidden_layers
        self.width = width
        self.activation = activation
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _check_settings(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"parameter 'activation' must be one of {sorted(ACTIVATIONS)}; got {self.activation!r}")
        if self.hidden_layers not in (1, 2) or isinstance(self.hidden_layers, bool):
            raise ValueError(f"parameter 'hidden_layers' must be 1 or 2; got {self.hidden_layers!r}")
        check_positive_int(self.width, "width")

    def fit(self, X, y=None):
        """Input standardisation from X and the seeded initial weights."""
        self._check_settings()
        m, X = self._fit_input(X)
        d = X.shape[1]
        rng = check_random_state(self.random_state)
        self.input_mean_ = X.mean(axis=0)
        std = X.std(axis=0)
        self.input_scale_ = np.where(std > 0, std, 1.0)
        gain = 1.0 if self.activation == "tanh" else np.sqrt(2.0)
        sizes = [d, m] if self.hidden_layers == 1 else [d, int(self.width), m]
        self.weights_ = {}
        for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            self.weights_[f"W{layer}"] = rng.standard_normal((fan_in, fan_out)) * (gain / np.sqrt(fan_in))
            self.weights_[f"b{layer}"] = rng.uniform(-gain, gain, fan_out)
        return self

    # ------------------------------------------------------------------ evaluation
    def _arrays(self, X: np.ndarray):
        """(standardised X, W1, b1, W2, b2) as C-contiguous arrays of X's dtype."""
        dt = X.dtype
        Z = np.ascontiguousarray((X - self.input_mean_) / self.input_scale_, dtype=dt)
        w = self.weights_
        two = "W2" in w
        W2 = w["W2"] if two else np.zeros((0, 0))
        b2 = w["b2"] if two else np.zeros(0)
        return (Z,) + tuple(np.ascontiguousarray(a, dtype=dt) for a in (w["W1"], w["b1"], W2, b2))

    def design(self, X):
        arrays = self._arrays(X)
        out = np.empty((X.shape[0], self.n_basis), dtype=X.dtype)
        _mlp.mlp_design(*arrays, ACTIVATIONS[self.activation], out, self._threads(X.shape[0]))
        return out

    def weighted_sum(self, X, w) -> np.ndarray:
        """sum_j w_j g_j(x) per row, fused (never the (n, m) matrix); w is (m,) or (m, k)."""
        Xc = self._check_input(X)
        W, flat = _fused.weight_matrix(w, self.n_basis, Xc.dtype)
        out = np.empty((Xc.shape[0], W.shape[1]), dtype=Xc.dtype)
        _mlp.mlp_weighted_sum(*self._arrays(Xc), ACTIVATIONS[self.activation], W, out, self._threads(Xc.shape[0]))
        if out.size and not np.isfinite(out).all():
            raise ValueError("MLP.weighted_sum overflowed: the weights 'w' are too large for this dtype")
        return out[:, 0] if flat else out

    # ------------------------------------------------------------------ meta-learning hooks
    def learnable_params(self) -> dict[str, np.ndarray]:
        """The network weights: "W1", "b1" (and "W2", "b2" with two layers), float64 copies."""
        self._check_input(np.zeros((0, getattr(self, "n_features_in_", 1))))
        return {k: np.array(v, dtype=np.float64) for k, v in self.weights_.items()}

    def with_params(self, **params: np.ndarray) -> MLP:
        """A fitted copy with some weights replaced."""
        checked = self._checked_params(params)
        new = super().with_params()
        new.weights_ = {**self.weights_, **checked}
        return new

    def design_vjp(self, X, G) -> dict[str, np.ndarray]:
        """Gradient of sum(G * design(X)) with respect to every weight (float64)."""
        Xc = self._check_input(X)
        Gc = self._check_G(G, Xc.shape[0], Xc.dtype)
        arrays = self._arrays(Xc)
        d, h = arrays[1].shape
        two = arrays[3].shape[0] > 0
        nb = max((Xc.shape[0] + _mlp.BLOCK_ROWS - 1) // _mlp.BLOCK_ROWS, 0)
        dt = Xc.dtype
        gW1, gb1 = np.zeros((nb, d, h), dt), np.zeros((nb, h), dt)
        gW2 = np.zeros((nb, h, self.n_basis) if two else (nb, 0, 0), dt)
        gb2 = np.zeros((nb, self.n_basis) if two else (nb, 0), dt)
        _mlp.mlp_vjp(*arrays, ACTIVATIONS[self.activation], Gc, gW1, gb1, gW2, gb2, self._threads(Xc.shape[0]))
        out = {"W1": gW1.astype(np.float64).sum(axis=0), "b1": gb1.astype(np.float64).sum(axis=0)}
        if two:
            out["W2"] = gW2.astype(np.float64).sum(axis=0)
            out["b2"] = gb2.astype(np.float64).sum(axis=0)
        return out
