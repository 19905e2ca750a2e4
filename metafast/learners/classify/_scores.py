"""Scores of query predictions: accuracy, log loss (per task, with 95% CIs) and calibration."""

from __future__ import annotations

import numpy as np

from metafast.learners.classify._logistic import masked_log_softmax

ECE_BINS = 15


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """sum_b (n_b / n) |accuracy_b - mean confidence_b| over equal-width confidence bins."""
    if confidence.size == 0:
        return 0.0
    bins = np.minimum((confidence * n_bins).astype(np.int64), n_bins - 1)
    acc = np.bincount(bins, weights=correct, minlength=n_bins)
    conf = np.bincount(bins, weights=confidence, minlength=n_bins)
    return float(np.abs(acc - conf).sum() / confidence.size)


def classification_metrics(Z: np.ndarray, codes: np.ndarray, offsets: np.ndarray, n_classes: np.ndarray) -> dict:
    """accuracy, nll (per task, averaged over tasks with query rows, with 95% CIs), ece, n_tasks."""
    from metafast.learners._base import per_task_mean

    sizes = np.diff(offsets)
    keep = sizes > 0
    if not keep.any():
        raise ValueError("no task has query points: nothing to evaluate")
    per_row = np.repeat(n_classes, sizes)
    lp = masked_log_softmax(Z, per_row)
    rows = np.arange(Z.shape[0])
    pred = np.argmax(lp, axis=1)
    correct = (pred == codes).astype(np.float64, copy=False)
    nll = -lp[rows, codes]
    out: dict = {"n_tasks": int(keep.sum())}
    for key, vals in (("accuracy", correct), ("nll", nll)):
        per_task = per_task_mean(vals, offsets)[keep]
        out[key] = float(per_task.mean())
        out[key + "_ci95"] = float(1.96 * per_task.std(ddof=1) / np.sqrt(per_task.size)) if per_task.size > 1 else 0.0
    out["ece"] = expected_calibration_error(np.exp(lp[rows, pred]), correct)
    return out
