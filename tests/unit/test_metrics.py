import numpy as np

from training.metrics import binary_metrics, choose_threshold, task_metrics


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


def test_multiclass_metrics_use_macro_f1_and_log_loss() -> None:
    classes = np.array(["a", "b", "c"])
    y = np.array(["a", "b", "c", "c"])
    probabilities = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.6, 0.2, 0.2]])
    m = task_metrics("multiclass", y, probabilities, classes=classes)
    assert m["accuracy"] == 0.75
    assert m["macro_f1"] == np.mean([2 / 3, 1.0, 2 / 3])
    assert m["log_loss"] > 0


def test_regression_metrics() -> None:
    m = task_metrics("regression", np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0]))
    assert m["mae"] == 2 / 3 and m["rmse"] == np.sqrt(4 / 3)
    assert m["r2"] == 1 - 4 / 2
