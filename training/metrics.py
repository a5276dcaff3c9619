"""Evaluation metrics for binary classification, and the decision threshold."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (average_precision_score, brier_score_loss, log_loss, precision_score,
                             recall_score, roc_auc_score)


def choose_threshold(y: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold that maximises F1 on (validation) data."""
    order = np.argsort(-scores, kind="stable")
    y_sorted, s_sorted = y[order], scores[order]
    tp = np.cumsum(y_sorted)
    fp = np.cumsum(1 - y_sorted)
    f1 = 2 * tp / (tp + fp + y.sum())
    # Only cut between distinct scores, so the threshold is reproducible as `score >= t`.
    distinct = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    best = int(np.argmax(np.where(distinct, f1, -1)))
    return float(s_sorted[best])


def binary_metrics(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    labels = (scores >= threshold).astype(int)
    clipped = np.clip(scores.astype(np.float64), 1e-7, 1 - 1e-7)
    return {
        "rows": int(len(y)),
        "positive_rate": float(y.mean()),
        "roc_auc": float(roc_auc_score(y, scores)),
        "pr_auc": float(average_precision_score(y, scores)),
        "log_loss": float(log_loss(y, clipped, labels=[0, 1])),
        "brier": float(brier_score_loss(y, scores)),
        "precision": float(precision_score(y, labels, zero_division=0)),
        "recall": float(recall_score(y, labels, zero_division=0)),
    }
