"""Worker processes: the settings they are handed, and the metric counts they add up."""

from pathlib import Path

from serving.metrics import ServerMetrics
from serving.prediction_log import PredictionLogOptions
from serving.server import ServerSettings, settings_from_json, settings_to_json
from serving.workers import MetricsExchange


def test_settings_survive_the_trip_to_a_worker(tmp_path: Path) -> None:
    settings = ServerSettings(model_source=tmp_path / "registry", max_records=50,
                              prediction_log=PredictionLogOptions(directory=tmp_path / "logs", fsync_interval_s=0.0),
                              reload_interval_s=0.5, scoring_threads=1, feature_path="sql", metrics_exchange=tmp_path,
                              api_keys=tmp_path / "keys.json", api_keys_reload_interval_s=0.5)
    assert settings_from_json(settings_to_json(settings)) == settings
    assert settings_from_json(settings_to_json(ServerSettings(Path("r")))) == ServerSettings(Path("r"))


def _worker(directory: Path, pid: int, predictions: int, latency_s: float) -> MetricsExchange:
    metrics = ServerMetrics()
    metrics.count_predictions(predictions)
    metrics.observe_request("/predict", "POST", 200, latency_s)
    metrics.count_error("invalid_json")
    metrics.count_auth_failure("wrong_scope")
    exchange = MetricsExchange(directory, metrics)
    exchange._own = directory / f"worker-{pid}.json"  # two workers in one test process
    exchange.publish()
    return exchange


def test_each_worker_reports_the_sum_of_all_workers(tmp_path: Path) -> None:
    a, b = _worker(tmp_path, 1, 3, 0.001), _worker(tmp_path, 2, 5, 0.2)
    for exchange in (a, b):
        text = exchange._metrics.render(exchange.peers())
        assert "serving_predictions_total 8" in text
        assert 'serving_requests_total{route="/predict",method="POST",status="200"} 2' in text
        assert 'serving_request_duration_seconds_bucket{route="/predict",le="0.001"} 1' in text
        assert 'serving_request_duration_seconds_count{route="/predict"} 2' in text
        assert 'serving_errors_total{kind="invalid_json"} 2' in text
        assert 'serving_auth_failures_total{reason="wrong_scope"} 2' in text
        assert 'serving_auth_failures_total{reason="missing_key"} 0' in text
        assert "serving_workers 2" in text
    # A worker's counts stay in the sum after it exits (counters never go down).
    b._metrics.count_predictions(1)
    b.stop()
    assert "serving_predictions_total 9" in a._metrics.render(a.peers())
    assert "serving_workers 1" in ServerMetrics().render()
