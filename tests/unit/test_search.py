import numpy as np
import pytest

from training.data import Dataset
from training.run import TrainingOptions, train
from training.search import random_search


def _dataset(n: int = 3000) -> Dataset:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 3)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] + rng.normal(0, 0.5, n) > 0.8).astype(np.int64)
    idx = np.arange(n)
    return Dataset(idx, idx, X, y, idx < n * 0.6, (idx >= n * 0.6) & (idx < n * 0.8), idx >= n * 0.8, np.array([0, 1]))


def test_search_is_seeded_records_trials_and_keeps_the_best() -> None:
    space = {"max_iter": [5, 40], "learning_rate": [0.01, 0.2], "max_leaf_nodes": [4, 15]}
    a = random_search(_dataset(), "binary", "hist_gradient_boosting", {}, space, seed=3, max_trials=5, time_budget_seconds=60)
    b = random_search(_dataset(), "binary", "hist_gradient_boosting", {}, space, seed=3, max_trials=5, time_budget_seconds=60)
    assert [t["params"] for t in a.trials] == [t["params"] for t in b.trials] and len(a.trials) == 5
    best = max(a.trials, key=lambda t: t["roc_auc"])
    assert {k: a.best_params[k] for k in space} == best["params"]
    assert a.metric == "roc_auc" and a.stopped_by == "max_trials"


def test_search_stops_at_its_time_budget() -> None:
    result = random_search(_dataset(), "binary", "hist_gradient_boosting", {}, {"max_iter": [50]}, seed=1,
                           max_trials=1000, time_budget_seconds=0.3)
    assert result.stopped_by == "time_budget" and 1 <= len(result.trials) < 1000


def test_train_records_chosen_params_metrics_and_durations() -> None:
    trained = train(_dataset(), TrainingOptions(task="binary", family="hist_gradient_boosting", params={"max_iter": 10},
                                                seed=1, search_space={"learning_rate": [0.05, 0.3]}, search_max_trials=2))
    assert trained.params["max_iter"] == 10 and trained.params["learning_rate"] in (0.05, 0.3)
    assert set(trained.metrics) == {"train", "validation", "test", "export_parity"}
    assert 0 <= trained.threshold <= 1 and trained.metrics["test"]["threshold"] == trained.threshold
    assert set(trained.durations) == {"search", "fit", "export", "evaluate"}
    assert len(trained.onnx_sha256) == 64


@pytest.mark.parametrize("family", ["hist_gradient_boosting", "random_forest", "linear"])
def test_same_data_config_and_seed_give_byte_identical_onnx(family: str) -> None:
    opts = TrainingOptions(task="binary", family=family, params={}, seed=7)
    assert train(_dataset(1500), opts).onnx_sha256 == train(_dataset(1500), opts).onnx_sha256
