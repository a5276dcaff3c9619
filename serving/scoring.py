"""Score validated requests on worker threads, merging requests that wait into one batch.

Running the feature SQL has a fixed cost per query (parse, plan, a pipeline per join) that is
much larger than the per-row cost, so under concurrency the requests that queued while a worker
was busy are scored together in one query. A lone request is scored at once (no waiting for
company), so merging adds no latency at low load. DuckDB and ONNX Runtime release the GIL, so
two workers use two cores. Every request's log line is written before its answer is released.

With no threads, a request is scored in the event loop that read it: no hand-off between threads
for Python's lock, one request at a time. That suits one server process per core (``--workers``).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from dataclasses import dataclass

from serving.errors import FeatureComputationError, InputValidationError
from serving.metrics import ServerMetrics
from serving.prediction_log import PredictionLog, encode_log_line
from serving.predictor import Predictions
from serving.reload import ModelHolder
from serving.request import Request
from serving.timestamps import timestamps_json


class PredictionLogFailed(OSError):
    """The prediction could not be logged, so it is not served."""


@dataclass
class _Job:
    request: Request
    records: bytes
    """The request's records as a JSON array, as the prediction log writes them."""
    request_id: str
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Predictions] | None
    """None when scored in the event loop (no scoring threads)."""
    record: bool = True
    """Write the scored records into the online store (the client may, see ``serving.auth``)."""
    key_id: str | None = None
    """The id of the API key that sent the request (None without auth), for the prediction log."""


def _resolve(future: asyncio.Future[Predictions] | None, result: Predictions | BaseException) -> None:
    if future is None or future.done():  # the client went away and the request was cancelled
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


class BatchingScorer:
    """Thread pool that scores request tables with the holder's current predictor."""

    def __init__(self, holder: ModelHolder, log: PredictionLog, metrics: ServerMetrics, *,
                 threads: int, max_batch_records: int) -> None:
        self._holder = holder
        self._log = log
        self._metrics = metrics
        self._max_batch_records = max_batch_records
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"scorer-{i}", daemon=True) for i in range(threads)]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout=30)

    async def score(self, request: Request, records: bytes, request_id: str, record: bool = True,
                    key_id: str | None = None) -> Predictions:
        """Score and log one validated request (``records``: its records as a JSON array, see
        ``serving.prediction_log.records_json``); raises what scoring or logging raised."""
        loop = asyncio.get_running_loop()
        if not self._threads:  # scored here, in the event loop: no hand-off between threads
            result = self._outcomes([_Job(request, records, request_id, loop, None, record, key_id)])[0]
            if isinstance(result, BaseException):
                raise result
            return result
        future: asyncio.Future[Predictions] = loop.create_future()
        self._queue.put(_Job(request, records, request_id, loop, future, record, key_id))
        return await future

    def _take_batch(self, first: _Job) -> tuple[list[list[_Job]], bool]:
        """Queued jobs up to the batch size, in groups that record alike (one scoring call each)."""
        jobs, rows, stop = [first], first.request.num_rows, False
        while rows < self._max_batch_records:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                stop = True
                break
            jobs.append(job)
            rows += job.request.num_rows
        groups = [[j for j in jobs if j.record], [j for j in jobs if not j.record]]
        return [g for g in groups if g], stop

    def _work(self) -> None:
        while (first := self._queue.get()) is not None:
            groups, stop = self._take_batch(first)
            for jobs in groups:
                for job, result in zip(jobs, self._outcomes(jobs)):
                    job.loop.call_soon_threadsafe(_resolve, job.future, result)
            if stop:
                return

    def _outcomes(self, jobs: list[_Job]) -> list[Predictions | BaseException]:
        try:
            return self._score(jobs)
        except Exception as exc:  # never let a worker die with requests waiting on it
            self._metrics.count_error("internal")
            return [exc] * len(jobs)

    def _score(self, jobs: list[_Job]) -> list[Predictions | BaseException]:
        try:
            with self._holder.lease() as predictor:
                scored = predictor.predict_request(Request.concat([j.request for j in jobs]), record=jobs[0].record)
        except (InputValidationError, FeatureComputationError) as exc:
            if len(jobs) == 1:
                return [exc]
            # One request's data (an event another client sends with other values, a value DuckDB
            # cannot cast) must not fail the requests batched with it: each is scored on its own.
            return [result for job in jobs for result in self._score([job])]
        except Exception as exc:  # a store that is down, or a genuine server fault: every request reports it
            return [exc] * len(jobs)
        results, lines, start = [], [], 0
        for job in jobs:
            end = start + job.request.num_rows
            results.append(part := scored.slice(start, end))
            lines.append(encode_log_line(job.request_id, scored.model_id, job.records, part, job.key_id,
                                         timestamps_json(job.request)))
            start = end
        try:
            self._log.append(b"".join(lines))
        except OSError as exc:
            self._metrics.count_error("prediction_log")
            failure = PredictionLogFailed(f"could not append to the prediction log {self._log.path}: {exc}")
            return [failure] * len(jobs)
        self._metrics.count_predictions(start, scored.fallback_rows, scored.recorded)
        return results
