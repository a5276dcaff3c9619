import numpy as np
import pytest

from training.export import PROBABILITY_ATOL, check_export_parity, export_onnx
from training.model import MODEL_FAMILIES, build_model, fit


def _data(n: int = 6000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.lognormal(3, 1, n), rng.integers(0, 24, n), rng.normal(size=n)]).astype(np.float32)
    y = ((X[:, 0] > 60) & (X[:, 1] < 6) | (rng.random(n) < 0.05)).astype(int)
    return X, y


def test_onnx_labels_equal_sklearn_and_probabilities_within_tolerance() -> None:
    X, y = _data()
    model = fit(build_model("hist_gradient_boosting", {"max_iter": 60}, seed=1), X[:4000], y[:4000])
    parity = check_export_parity(model, export_onnx(model, 3), X[4000:])
    assert parity.label_mismatches == 0
    assert parity.max_abs_diff <= PROBABILITY_ATOL
    assert parity.passed


@pytest.mark.parametrize("family", sorted(MODEL_FAMILIES))
@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_every_family_and_task_exports_faithfully(family: str, task: str) -> None:
    X, y = _data(3000)
    X[np.random.default_rng(5).random(X.shape) < 0.05] = np.nan  # SQL nulls reach the model as NaN
    target = {"binary": y, "multiclass": np.digitize(X[:, 2], [-0.5, 0.5]) + 10 * y,
              "regression": np.nan_to_num(X[:, 0]) * 0.1 + y}[task]
    params = {"hist_gradient_boosting": {"max_iter": 20}, "random_forest": {"n_estimators": 10}, "linear": {}}[family]
    model = fit(build_model(family, params, seed=1, task=task), X[:2000], target[:2000])
    parity = check_export_parity(model, export_onnx(model, 3), X[2000:])
    assert parity.passed, parity


def test_same_data_and_seed_export_identical_bytes() -> None:
    X, y = _data()
    a = export_onnx(fit(build_model("hist_gradient_boosting", {"max_iter": 20}, seed=1), X, y), 3)
    b = export_onnx(fit(build_model("hist_gradient_boosting", {"max_iter": 20}, seed=1), X, y), 3)
    assert a == b


def test_snapped_thresholds_do_not_change_sklearn_predictions() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = _data()
    plain = HistGradientBoostingClassifier(max_iter=30, random_state=1).fit(X.astype(np.float64), y)
    snapped = fit(build_model("hist_gradient_boosting", {"max_iter": 30}, seed=1), X, y)
    np.testing.assert_array_equal(plain.predict_proba(X.astype(np.float64)), snapped.predict_proba(X.astype(np.float64)))


def test_unfaithful_settings_and_unknown_families_are_refused() -> None:
    with pytest.raises(ValueError, match="native categorical_features"):
        build_model("hist_gradient_boosting", {"categorical_features": [0]}, seed=1)
    with pytest.raises(ValueError, match="unknown model family 'xgboost'"):
        build_model("xgboost", {}, seed=1)
    with pytest.raises(ValueError, match="bad parameter.*max_iterations"):
        build_model("hist_gradient_boosting", {"max_iterations": 3}, seed=1)
    with pytest.raises(ValueError, match="max_iter"):
        fit(build_model("hist_gradient_boosting", {"max_iter": -1}, seed=1), *_data(100))
