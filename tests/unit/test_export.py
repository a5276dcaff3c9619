import numpy as np
import pytest

from training.export import PROBABILITY_ATOL, check_export_parity, export_onnx
from training.model import build_model, fit


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
    assert parity.max_abs_probability_diff <= PROBABILITY_ATOL
    assert parity.passed


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
    with pytest.raises(ValueError, match="bad parameter"):
        build_model("hist_gradient_boosting", {"max_iterations": 3}, seed=1)
