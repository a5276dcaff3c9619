"""Evaluation metrics by task, and the binary decision threshold."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (average_precision_score, brier_score_loss, f1_score, log_loss,
                             mean_absolute_error, mean_squared_error, precision_score, r2_score,
                             recall_score, roc_auc_score)

# Metric the search optimises and the gates compare, by task.
PRIMARY_METRIC = {"binary": "roc_auc", "multiclass": "macro_f1", "regression": "rmse"}
# Every other metric is better when higher.
LOWER_IS_BETTER = frozenset({"rmse", "mae", "log_loss", "brier"})


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
    both_classes = len(np.unique(y)) == 2
    return {
        "rows": int(len(y)),
        "positive_rate": float(y.mean()),
        "roc_auc": float(roc_auc_score(y, scores)) if both_classes else float("nan"),
        "pr_auc": float(average_precision_score(y, scores)) if both_classes else float("nan"),
        "log_loss": float(log_loss(y, clipped, labels=[0, 1])),
        "brier": float(brier_score_loss(y, scores)),
        "precision": float(precision_score(y, labels, zero_division=0)),
        "recall": float(recall_score(y, labels, zero_division=0)),
        "threshold": float(threshold),
    }


def multiclass_metrics(y: np.ndarray, probabilities: np.ndarray, classes: np.ndarray) -> dict[str, float]:
    predicted = classes[np.argmax(probabilities, axis=1)]
    return {
        "rows": int(len(y)),
        "macro_f1": float(f1_score(y, predicted, average="macro", labels=classes, zero_division=0)),
        "accuracy": float(np.mean(predicted == y)),
        "log_loss": float(log_loss(y, np.clip(probabilities, 1e-7, 1), labels=classes)),
    }


def regression_metrics(y: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    return {
        "rows": int(len(y)),
        "rmse": float(np.sqrt(mean_squared_error(y, predictions))),
        "mae": float(mean_absolute_error(y, predictions)),
        "r2": float(r2_score(y, predictions)),
    }


def task_metrics(task: str, y: np.ndarray, output: np.ndarray, *, classes: np.ndarray | None = None,
                 threshold: float = 0.5) -> dict[str, float]:
    """Metrics of ``output`` (probabilities or predictions, as ``predict_output`` gives) for ``task``."""
    if task == "binary":
        return binary_metrics(y, output[:, 1], threshold)
    if task == "multiclass":
        assert classes is not None
        return multiclass_metrics(y, output, classes)
    return regression_metrics(y, output)


def is_better(metric: str, candidate: float, reference: float) -> bool:
    return candidate < reference if metric in LOWER_IS_BETTER else candidate > reference
