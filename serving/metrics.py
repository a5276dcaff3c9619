"""Server metrics in the Prometheus text exposition format (version 0.0.4), written by hand.

Counters and one latency histogram per route, guarded by a lock: an increment is a dict update,
far cheaper than a request, and ``/metrics`` renders a consistent snapshot.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections import defaultdict

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
ERROR_KINDS = ("invalid_json", "invalid_input", "body_too_large", "too_many_records", "not_found",
               "method_not_allowed", "internal", "prediction_log")
RELOAD_OUTCOMES = ("swapped", "refused")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


class _Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += seconds


class ServerMetrics:
    """Everything ``/metrics`` reports. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self._latency: dict[str, _Histogram] = defaultdict(_Histogram)
        self._errors: dict[str, int] = dict.fromkeys(ERROR_KINDS, 0)
        self._reloads: dict[str, int] = dict.fromkeys(RELOAD_OUTCOMES, 0)
        self._predictions = 0
        self._model_id = ""
        self._model_loaded_at = 0.0
        self._last_refused = ""

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(route, method, status)] += 1
            self._latency[route].observe(seconds)

    def count_error(self, kind: str) -> None:
        with self._lock:
            self._errors[kind] = self._errors.get(kind, 0) + 1

    def count_predictions(self, records: int) -> None:
        with self._lock:
            self._predictions += records

    def model_loaded(self, model_id: str) -> None:
        with self._lock:
            self._model_id, self._model_loaded_at = model_id, time.time()

    def reload(self, outcome: str, bundle_id: str = "") -> None:
        with self._lock:
            self._reloads[outcome] += 1
            if outcome == "refused":
                self._last_refused = bundle_id

    def render(self, snapshot_ages: dict[str, float] | None = None) -> str:
        """The exposition text; ``snapshot_ages`` (entity snapshot -> seconds) is read at scrape time."""
        with self._lock:
            lines = self._lines()
        if snapshot_ages:
            lines += ["# HELP serving_entity_snapshot_age_seconds Age of each frozen entity snapshot: how stale the "
                      "entity features served now are.",
                      "# TYPE serving_entity_snapshot_age_seconds gauge"]
            lines += [f"serving_entity_snapshot_age_seconds{_labels(table=t)} {age!r}" for t, age in sorted(snapshot_ages.items())]
        return "\n".join(lines) + "\n"

    def _lines(self) -> list[str]:
        out = [
            "# HELP serving_requests_total HTTP requests answered, by route, method and status code.",
            "# TYPE serving_requests_total counter",
        ]
        out += [f"serving_requests_total{_labels(route=r, method=m, status=str(s))} {n}"
                for (r, m, s), n in sorted(self._requests.items())]
        out += [
            "# HELP serving_request_duration_seconds Time from request start to the last response byte.",
            "# TYPE serving_request_duration_seconds histogram",
        ]
        for route, hist in sorted(self._latency.items()):
            cumulative = 0
            for bound, count in zip((*LATENCY_BUCKETS, float("inf")), hist.counts):
                cumulative += count
                le = "+Inf" if bound == float("inf") else repr(bound)
                out.append(f"serving_request_duration_seconds_bucket{_labels(route=route, le=le)} {cumulative}")
            out.append(f"serving_request_duration_seconds_sum{_labels(route=route)} {hist.total!r}")
            out.append(f"serving_request_duration_seconds_count{_labels(route=route)} {cumulative}")
        out += ["# HELP serving_errors_total Requests that failed, by kind (4xx kinds are the client's, internal is ours).",
                "# TYPE serving_errors_total counter"]
        out += [f"serving_errors_total{_labels(kind=k)} {n}" for k, n in sorted(self._errors.items())]
        out += ["# HELP serving_predictions_total Records scored and logged.",
                "# TYPE serving_predictions_total counter",
                f"serving_predictions_total {self._predictions}",
                "# HELP serving_model_info The model being served (value 1), labelled with its bundle id.",
                "# TYPE serving_model_info gauge",
                f"serving_model_info{_labels(model_id=self._model_id)} 1",
                "# HELP serving_model_loaded_timestamp_seconds When the served model was swapped in (Unix time).",
                "# TYPE serving_model_loaded_timestamp_seconds gauge",
                f"serving_model_loaded_timestamp_seconds {self._model_loaded_at!r}",
                "# HELP serving_model_reloads_total Champion changes seen: swapped in, or refused (old model kept).",
                "# TYPE serving_model_reloads_total counter"]
        out += [f"serving_model_reloads_total{_labels(outcome=o)} {n}" for o, n in sorted(self._reloads.items())]
        out += ["# HELP serving_model_last_refused_info The last champion bundle refused by hot reload (value 1).",
                "# TYPE serving_model_last_refused_info gauge",
                f"serving_model_last_refused_info{_labels(bundle_id=self._last_refused)} 1"]
        return out
