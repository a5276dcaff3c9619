"""Requests batched together are scored as if alone: one request's bad data fails that request only."""

import asyncio
from pathlib import Path

import orjson

from serving.errors import InputValidationError
from serving.metrics import ServerMetrics
from serving.prediction_log import PredictionLog, PredictionLogOptions
from serving.predictor import Predictor
from serving.reload import ModelHolder
from serving.scoring import BatchingScorer, _Job
from tests.conftest import PipelineRun


def test_an_event_another_request_sends_with_other_values_fails_only_that_request(
        pipeline_run: PipelineRun, raw_records: list[dict], tmp_path: Path) -> None:
    predictor = Predictor.load(pipeline_run.registry, record=False)
    log = PredictionLog(PredictionLogOptions(directory=tmp_path / "logs", fsync_interval_s=0))
    scorer = BatchingScorer(ModelHolder(predictor), log, ServerMetrics(), threads=0, max_batch_records=64)
    loop = asyncio.new_event_loop()
    try:
        first = {**raw_records[0], "txn_id": "batched-1"}
        other = {**raw_records[1], "txn_id": "batched-2"}
        conflicting = {**first, "amount": first["amount"] + 1}  # the first request's event, other values
        jobs = [_Job(predictor.request([r]), orjson.dumps([r]), f"req-{i}", loop, None, False)
                for i, r in enumerate((first, other, conflicting))]
        results = scorer._score(jobs)
        alone = [predictor.predict([r]).scores[0] for r in (first, other, conflicting)]
        together = _Job(predictor.request([first, conflicting]), orjson.dumps([first, conflicting]), "req-3",
                        loop, None, False)
        (refused,) = scorer._score([together])
    finally:
        loop.close()
        log.close()
        predictor.close()
    assert [type(r).__name__ for r in results] == ["Predictions", "Predictions", "Predictions"], results
    assert [float(r.scores[0]) for r in results] == [float(a) for a in alone]
    # Within one request, the same conflict is that request's own error.
    assert isinstance(refused, InputValidationError) and "re-sends the event of record 0" in str(refused)
