"""MetaGrad's outer loop: meta-batches, the step-size schedule, validation and early stopping.

- ``ValidationSet``: held-out training tasks with one fixed (seeded) split each; its loss is the
  mean query MSE after the inner loop, the quantity a user measures with ``evaluate``.
- ``StepSchedule``: linear warm-up of the meta step size over the first iterations, then halving
  whenever the validation loss has not improved for ``patience // 4`` evaluations (at least 1).
- ``train``: Adam over meta-batches; every ``EVAL_EVERY`` iterations the validation loss is
  measured, the best parameters are kept, and training stops after ``patience`` evaluations
  without improvement, at ``n_iter`` iterations or at ``max_time`` seconds, whichever is first.
  The best parameters (by validation loss) are the ones the model keeps.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from metafast.learners._basis_opt import _flatten, _unflatten
from metafast.learners.grad._engine import (
    TrainingRows,
    adapt_weights,
    batch_meta_grad,
    split_batch,
)
from metafast.tasks._taskset import TaskSet

EVAL_EVERY = 50  # meta-iterations between two validation losses
WARMUP = 100  # meta-iterations of linear warm-up of the step size
REL_TOL = 1e-4  # a validation loss must fall by this fraction to count as an improvement
MAX_BACKOFFS = 8  # diverged meta-batches tolerated (each halves the step size) before raising


class ValidationSet:
    """Held-out tasks, split once (inner rows adapt, outer rows score), for the validation loss."""

    def __init__(self, tasks: TaskSet, basis, y_scale: float, mode: str, rng: np.random.Generator, cache_design: bool):
        self.rows = TrainingRows(tasks, basis, y_scale, cache_design)
        split_mode = "resplit" if mode == "inner-only" else mode
        self.batch = split_batch(self.rows, np.arange(self.rows.n_tasks), split_mode, rng)
        self.y_scale = y_scale

    def loss(
        self, method: str, inner_steps: int, lam: float, basis, w0: np.ndarray, rates: np.ndarray, n_threads: int
    ) -> float:
        """Mean over tasks of the outer-row MSE after adaptation, in units of the scaled targets
        (multiply by y_scale**2 for units of y; inf if diverged)."""
        b = self.batch
        Phi = np.ascontiguousarray(self.rows.design(basis, b.inner), dtype=np.float64)
        Phiq = np.asarray(self.rows.design(basis, b.outer), dtype=np.float64)
        try:
            W = adapt_weights(
                method, inner_steps, lam, Phi, self.rows.y[b.inner], b.inner_offsets, w0, rates, n_threads
            )
        except FloatingPointError:
            return float("inf")
        task = np.repeat(np.arange(len(b.tasks)), np.diff(b.outer_offsets))
        with np.errstate(all="ignore"):
            resid = np.einsum("ij,ij->i", Phiq, W[task]) - self.rows.y[b.outer]
            sums = np.bincount(task, resid**2, minlength=len(b.tasks))
        counts = np.diff(b.outer_offsets)
        keep = counts > 0
        value = float(np.mean(sums[keep] / counts[keep])) if keep.any() else float("inf")
        return value if np.isfinite(value) else float("inf")


class StepSchedule:
    """Warm-up then halving on plateaus (see the module docstring)."""

    def __init__(self, lr: float, patience: int):
        self.lr = float(lr)
        self.decay_every = max(1, int(patience) // 4)
        self.scale = 1.0

    def rate(self, iteration: int) -> float:
        return self.lr * self.scale * min(1.0, (iteration + 1) / WARMUP)

    def plateau(self, n_bad: int) -> None:
        if n_bad > 0 and n_bad % self.decay_every == 0:
            self.scale *= 0.5


def meta_batches(rng: np.random.Generator, T: int, B: int, n_iter: int, epochs: int | None):
    """Task indices of the meta-batches: ``n_iter`` random draws, or ``epochs`` shuffled passes."""
    if epochs is None:
        return (rng.choice(T, B, replace=False) for _ in range(n_iter)), n_iter
    batches = (order[i : i + B] for _ in range(epochs) for order in [rng.permutation(T)] for i in range(0, T, B))
    return batches, epochs * ((T + B - 1) // B)


def train(model, ts: TaskSet, epochs: int | None, valid: ValidationSet | None) -> None:
    """Meta-train ``model`` (a MetaGrad work copy, set up) on ``ts``; see the module docstring."""
    from tqdm.auto import tqdm

    rows = TrainingRows(ts, model.basis_, model._y_scale, cache_design=not model.learn_basis_)
    T, B = rows.n_tasks, min(int(model.meta_batch), rows.n_tasks)
    schedule, total = meta_batches(model._rng, T, B, int(model.n_iter), epochs)
    steps = StepSchedule(float(model.meta_lr), int(model.patience))
    basis_ratio = float(model.basis_lr) / float(model.meta_lr) if model.basis_lr is not None else None
    mode, base_basis, method, k = model._mode(), model.basis_, model.method, int(model.inner_steps)
    t0 = getattr(model, "_t_start", None) or time.perf_counter()
    show = bool(model.verbose) and sys.stderr.isatty()
    best = (np.inf, dict(model._params), model.basis_)
    n_bad, backoffs, recent = 0, 0, []
    model.stop_reason_ = "n_iter" if epochs is None else "epochs"
    for it, tasks in enumerate(tqdm(schedule, total=total, desc=f"MetaGrad {method}", disable=not show, leave=False)):
        batch = split_batch(rows, np.sort(tasks), mode, model._rng)
        res = batch_meta_grad(
            method,
            k,
            float(model.inner_reg_),
            model.basis_,
            rows,
            batch,
            *model._weights(),
            model.learn_basis_,
            model._batch_threads(batch),
        )
        if res.bad_tasks.size:
            if model.n_iter_ == 0 or backoffs >= MAX_BACKOFFS:
                raise FloatingPointError(
                    f"MetaGrad: the meta-loss of training task(s) {res.bad_tasks[:10].tolist()} is not finite at "
                    f"meta-iteration {model.n_iter_}: the inner loop diverges (inner_lr={model._lr0:.3g} is too "
                    "large for this basis, or meta_lr / basis_lr move the parameters too fast); lower them"
                )
            backoffs += 1  # a step went too far: back to the best point, smaller steps
            steps.scale *= 0.5
            if np.isfinite(best[0]):
                model._params, model.basis_ = dict(best[1]), best[2]
                model._publish()
            continue
        grads = {"w0": res.grad_w / model._row_scale}
        if method == "metasgd":
            grads["rates"] = res.grad_rates * model._lr0
        if "log_reg" in model._params:
            grads["log_reg"] = np.array([res.grad_log_reg])
        if res.grad_basis is not None:
            grads["basis"] = _flatten({key: res.grad_basis[key] for key, _ in model._basis_layout})[0]
        lr = steps.rate(model.n_iter_)
        model._params = model._adam.step(
            model._params, grads, {"w0": lr, "rates": lr, "log_reg": lr, "basis": lr * (basis_ratio or 1.0)}
        )
        model._publish()
        if model.learn_basis_:
            model.basis_ = base_basis.with_params(**_unflatten(model._params["basis"], model._basis_layout))
        train_loss = in_units_of_y2(2.0 * res.loss, model._y_scale)
        model.loss_curve_.append(train_loss)
        recent.append(train_loss)
        model.n_iter_ += 1
        model.n_tasks_seen_ += len(tasks)
        if valid is not None and (model.n_iter_ % EVAL_EVERY == 0 or it == total - 1):
            val = valid.loss(method, k, model.inner_reg_, model.basis_, *model._weights(), 1)
            _record(model, float(np.mean(recent)), in_units_of_y2(val, model._y_scale), lr, time.perf_counter() - t0)
            recent = []
            if val < best[0] * (1.0 - REL_TOL):
                best, n_bad = (val, dict(model._params), model.basis_), 0
            else:
                n_bad += 1
                steps.plateau(n_bad)
                if n_bad >= int(model.patience):
                    model.stop_reason_ = "converged"
                    break
        if model.max_time is not None and time.perf_counter() - t0 > float(model.max_time):
            model.stop_reason_ = "max_time"
            break
    if valid is not None and np.isfinite(best[0]):
        model._params, model.basis_ = dict(best[1]), best[2]
        model.best_val_loss_ = in_units_of_y2(best[0], model._y_scale)
    model._publish()


def in_units_of_y2(loss: float, y_scale: float) -> float:
    """A loss of the scaled targets in units of y^2 (inf, not an OverflowError, past 1e308)."""
    with np.errstate(over="ignore", under="ignore"):
        return float(np.float64(loss) * np.float64(y_scale) * np.float64(y_scale))


def _record(model, train_loss: float, val_loss: float, lr: float, seconds: float) -> None:
    h = model.history_
    h["iteration"].append(model.n_iter_)
    h["train_loss"].append(train_loss)
    h["val_loss"].append(val_loss)
    h["meta_lr"].append(lr)
    h["seconds"].append(seconds)


def new_history() -> dict:
    """The empty ``history_`` (one entry per validation: see ``train``)."""
    return {"iteration": [], "train_loss": [], "val_loss": [], "meta_lr": [], "seconds": []}
