import numpy as np

from training.metrics import binary_metrics, choose_threshold


def test_threshold_maximises_f1_on_separable_scores() -> None:
    y = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    t = choose_threshold(y, scores)
    assert t == 0.8
    m = binary_metrics(y, scores, t)
    assert m["precision"] == 1.0 and m["recall"] == 1.0 and m["roc_auc"] == 1.0


def test_tied_scores_are_not_split() -> None:
    y = np.array([1, 0, 1, 0])
    scores = np.array([0.5, 0.5, 0.5, 0.1])
    assert choose_threshold(y, scores) == 0.5
