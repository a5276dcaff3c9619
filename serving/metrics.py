"""Server metrics in the Prometheus text exposition format (version 0.0.4), written by hand.

Counters and one latency histogram per route, guarded by a lock: an increment is a dict update,
far cheaper than a request, and ``/metrics`` renders a consistent snapshot. With several worker
processes each one publishes its counts (``state()``, see ``serving.workers``) and whichever
worker answers ``/metrics`` adds the others' to its own, so counters cover the whole server.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
ERROR_KINDS = ("invalid_json", "invalid_input", "body_too_large", "body_timeout", "too_many_records", "not_found",
               "method_not_allowed", "internal", "prediction_log", "store_unavailable")
RELOAD_OUTCOMES = ("swapped", "refused")
STATE_OUTCOMES = ("recorded", "duplicate", "stale", "implausible")
"""What writing a scored record into the online store did (``serving.store.RecordOutcome``)."""
AUTH_REASONS = ("missing_key", "unknown_key", "wrong_scope")
"""Why a request was refused by ``serving.auth`` (401, 401, 403)."""


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


class _Counts:
    """The counters and histograms: what adds up across worker processes."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.latency: dict[str, _Histogram] = defaultdict(_Histogram)
        self.errors: dict[str, int] = dict.fromkeys(ERROR_KINDS, 0)
        self.reloads: dict[str, int] = dict.fromkeys(RELOAD_OUTCOMES, 0)
        self.state_events: dict[str, int] = dict.fromkeys(STATE_OUTCOMES, 0)
        self.auth_failures: dict[str, int] = dict.fromkeys(AUTH_REASONS, 0)
        self.predictions = 0
        self.fallback_rows = 0

    def state(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return {"requests": [[r, m, s, n] for (r, m, s), n in self.requests.items()],
                "latency": {r: {"counts": list(h.counts), "total": h.total} for r, h in self.latency.items()},
                "errors": dict(self.errors), "reloads": dict(self.reloads), "predictions": self.predictions,
                "state_events": dict(self.state_events), "auth_failures": dict(self.auth_failures),
                "fallback_rows": self.fallback_rows}

    def add(self, state: dict[str, Any]) -> None:
        """Add another process's ``state()``."""
        for route, method, status, n in state["requests"]:
            self.requests[(route, method, int(status))] += n
        for route, hist in state["latency"].items():
            mine = self.latency[route]
            mine.counts = [a + b for a, b in zip(mine.counts, hist["counts"])]
            mine.total += hist["total"]
        for kind, n in state["errors"].items():
            self.errors[kind] = self.errors.get(kind, 0) + n
        for outcome, n in state["reloads"].items():
            self.reloads[outcome] = self.reloads.get(outcome, 0) + n
        for outcome, n in state.get("state_events", {}).items():
            self.state_events[outcome] = self.state_events.get(outcome, 0) + n
        for reason, n in state.get("auth_failures", {}).items():
            self.auth_failures[reason] = self.auth_failures.get(reason, 0) + n
        self.predictions += state["predictions"]
        self.fallback_rows += state.get("fallback_rows", 0)


class ServerMetrics:
    """Everything ``/metrics`` reports. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = _Counts()
        self._model_id = ""
        self._model_loaded_at = 0.0
        self._last_refused = ""

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            self._counts.requests[(route, method, status)] += 1
            self._counts.latency[route].observe(seconds)

    def count_error(self, kind: str) -> None:
        with self._lock:
            self._counts.errors[kind] = self._counts.errors.get(kind, 0) + 1

    def count_auth_failure(self, reason: str) -> None:
        with self._lock:
            self._counts.auth_failures[reason] = self._counts.auth_failures.get(reason, 0) + 1

    def count_predictions(self, records: int, fallback_rows: int = 0, recorded: Any = None) -> None:
        """``fallback_rows``: records the fused graph left to the SQL path; ``recorded``: the
        ``RecordOutcome`` of writing them into the online store."""
        with self._lock:
            self._counts.predictions += records
            self._counts.fallback_rows += fallback_rows
            if recorded is not None:
                for outcome, n in (("recorded", recorded.recorded), ("duplicate", recorded.duplicates),
                                   ("stale", recorded.stale), ("implausible", recorded.implausible)):
                    self._counts.state_events[outcome] += n

    def model_loaded(self, model_id: str) -> None:
        with self._lock:
            self._model_id, self._model_loaded_at = model_id, time.time()

    def reload(self, outcome: str, bundle_id: str = "") -> None:
        with self._lock:
            self._counts.reloads[outcome] += 1
            if outcome == "refused":
                self._last_refused = bundle_id

    def state(self) -> dict[str, Any]:
        """This process's counts, JSON-ready, for the other workers' ``render``."""
        with self._lock:
            return self._counts.state()

    def render(self, peers: Sequence[dict[str, Any]] = ()) -> str:
        """The exposition text; ``peers`` are the other worker processes' ``state()``, added to this one's counts."""
        with self._lock:
            counts = _Counts()
            counts.add(self._counts.state())
            model = (self._model_id, self._model_loaded_at, self._last_refused)
        for peer in peers:
            counts.add(peer)
        lines = _lines(counts, *model)
        lines += ["# HELP serving_workers Worker processes whose counts these metrics add up.",
                  "# TYPE serving_workers gauge", f"serving_workers {1 + len(peers)}"]
        return "\n".join(lines) + "\n"


def _lines(counts: _Counts, model_id: str, model_loaded_at: float, last_refused: str) -> list[str]:
    out = [
        "# HELP serving_requests_total HTTP requests answered, by route, method and status code.",
        "# TYPE serving_requests_total counter",
    ]
    out += [f"serving_requests_total{_labels(route=r, method=m, status=str(s))} {n}"
            for (r, m, s), n in sorted(counts.requests.items())]
    out += [
        "# HELP serving_request_duration_seconds Time from request start to the last response byte.",
        "# TYPE serving_request_duration_seconds histogram",
    ]
    for route, hist in sorted(counts.latency.items()):
        cumulative = 0
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), hist.counts):
            cumulative += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            out.append(f"serving_request_duration_seconds_bucket{_labels(route=route, le=le)} {cumulative}")
        out.append(f"serving_request_duration_seconds_sum{_labels(route=route)} {hist.total!r}")
        out.append(f"serving_request_duration_seconds_count{_labels(route=route)} {cumulative}")
    out += ["# HELP serving_errors_total Requests that failed, by kind (4xx kinds are the client's, internal is ours).",
            "# TYPE serving_errors_total counter"]
    out += [f"serving_errors_total{_labels(kind=k)} {n}" for k, n in sorted(counts.errors.items())]
    out += ["# HELP serving_predictions_total Records scored and logged.",
            "# TYPE serving_predictions_total counter",
            f"serving_predictions_total {counts.predictions}",
            "# HELP serving_sql_fallback_rows_total Records the fused graph marked unsure, scored by the SQL path.",
            "# TYPE serving_sql_fallback_rows_total counter",
            f"serving_sql_fallback_rows_total {counts.fallback_rows}",
            "# HELP serving_state_events_total Scored records written to the online store, by outcome (duplicate: "
            "already held; stale, implausible: time out of bounds, not written).",
            "# TYPE serving_state_events_total counter"]
    out += [f"serving_state_events_total{_labels(outcome=o)} {n}" for o, n in sorted(counts.state_events.items())]
    out += ["# HELP serving_auth_failures_total Requests refused for their API key, by reason (missing_key, "
            "unknown_key: 401; wrong_scope: 403).",
            "# TYPE serving_auth_failures_total counter"]
    out += [f"serving_auth_failures_total{_labels(reason=r)} {n}" for r, n in sorted(counts.auth_failures.items())]
    out += [
            "# HELP serving_model_info The model being served (value 1) by the worker that answered, labelled with its bundle id.",
            "# TYPE serving_model_info gauge",
            f"serving_model_info{_labels(model_id=model_id)} 1",
            "# HELP serving_model_loaded_timestamp_seconds When the served model was swapped in (Unix time).",
            "# TYPE serving_model_loaded_timestamp_seconds gauge",
            f"serving_model_loaded_timestamp_seconds {model_loaded_at!r}",
            "# HELP serving_model_reloads_total Champion changes seen: swapped in, or refused (old model kept).",
            "# TYPE serving_model_reloads_total counter"]
    out += [f"serving_model_reloads_total{_labels(outcome=o)} {n}" for o, n in sorted(counts.reloads.items())]
    out += ["# HELP serving_model_last_refused_info The last champion bundle refused by hot reload (value 1).",
            "# TYPE serving_model_last_refused_info gauge",
            f"serving_model_last_refused_info{_labels(bundle_id=last_refused)} 1"]
    return out
