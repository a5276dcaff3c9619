"""Append every served prediction to rotated JSON Lines files that dbt-duckdb can read.

Durability policy:

* Each request's line is handed to the kernel with one ``os.write`` on an ``O_APPEND`` file
  *before* the response is sent. A process killed at any point (SIGKILL included) therefore loses
  no prediction it has answered: the bytes are in the page cache and the kernel writes them out.
* ``fsync`` guards against losing the machine (power, kernel panic). It runs every
  ``fsync_interval_s`` seconds from a background thread (over the current file, any file rotated
  out since, and the folder once a file was created) and on close, never holding up a request;
  with ``fsync_interval_s = 0`` it runs before every response and at each rotation (slower,
  nothing answered is ever lost). So at most ``fsync_interval_s`` of answered predictions can be
  lost with the machine.

Files are ``predictions-<UTC start>-<pid>-<seq>.jsonl`` and rotate when they pass
``max_file_bytes`` or are older than ``max_file_age_s``; a line is never split across files.
Each line is one request, its records and their predictions (see ``log_line``), as model
servers' payload logs keep them: the head once per request rather than once per record, which
halves the bytes written for a batch. ``logged_predictions`` reads them back one record at a time,
and dbt's staging unnests them likewise.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from serving.predictor import Predictions
from serving.registry import fsync_dir
from serving.timestamps import LOG_FIELD

log = logging.getLogger(__name__)

FILE_PREFIX = "predictions-"
FILE_SUFFIX = ".jsonl"


@dataclass(frozen=True)
class PredictionLogOptions:
    """Where and how predictions are logged."""

    directory: Path = Path("artifacts/prediction_logs")
    """Folder of the log files (created if missing). dbt reads ``<directory>/*.jsonl``."""
    max_file_bytes: int = 64 << 20
    """Rotate to a new file once the current one reaches this size."""
    max_file_age_s: float = 3600.0
    """Rotate to a new file once the current one is this old, so files close at least hourly."""
    fsync_interval_s: float = 1.0
    """Seconds between background fsyncs; 0 fsyncs before every response (see module docstring)."""


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _logged_at() -> str:
    return _utc_now().isoformat(timespec="microseconds").replace("+00:00", "Z")


def log_line(request_id: str, model_id: str, records: Sequence[Mapping[str, Any]],
              outputs: Sequence[Mapping[str, Any]], features: Sequence[Sequence[float | None]] | None = None,
              key_id: str | None = None, timestamps: Sequence[Mapping[str, str | None]] | None = None) -> bytes:
    """One JSON line for the request: ``request_id``, ``logged_at``, ``model_id``, ``records`` (the
    raw fields exactly as received, timestamps as strings, so monitoring sees what clients sent)
    ``predictions`` (the model's outputs, record for record: ``score`` and ``label`` for
    binary models; ``label`` and ``probabilities`` for multiclass; ``prediction`` for regression)
    and ``features`` (the float32 feature vector each prediction used, model order, NaN as null),
    which monitoring compares with the warehouse's point-in-time features once the events land.
    ``key_id``, when the server checks API keys, is the id of the key that sent the request
    (never the key), written after ``model_id``. ``timestamps``, written after ``records`` as
    ``timestamps_utc``: per record, its timestamp fields as the server read them, in canonical UTC
    (``serving.timestamps``), which monitoring reads rather than parsing the strings sent.

    This is the reference encoder (the standard library's); ``encode_log_line`` writes the same
    values faster. A non-finite output raises ``ValueError``: JSON has no NaN.
    """
    line: dict[str, Any] = {"request_id": request_id, "logged_at": _logged_at(), "model_id": model_id}
    if key_id is not None:
        line["key_id"] = key_id
    line["records"] = list(records)
    if timestamps is not None:
        line[LOG_FIELD] = list(timestamps)
    line["predictions"] = list(outputs)
    if features is not None:
        line["features"] = [[None if v is None or not math.isfinite(v) else v for v in row] for row in features]
    return _stdlib_json(line) + b"\n"


def _stdlib_json(value: Any) -> bytes:
    """The reference spelling: compact, ASCII, no NaN; what JSON cannot hold is written by ``str``."""
    return json.dumps(value, ensure_ascii=True, allow_nan=False, default=str, separators=(",", ":")).encode()


def _orjson_default(value: Any) -> Any:
    raise TypeError  # anything orjson does not write natively goes to the standard library


# Datetimes, str subclasses and dataclasses are written by orjson its own way; passed to the
# default above, which refuses them, they send the records to the standard library instead.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS


def records_json(records: Sequence[Mapping[str, Any]]) -> bytes:
    """The records as one JSON array, as the log writes them: by orjson in one call, or by the
    standard library (as ``log_line``) for what orjson refuses, such as an integer past 64 bits."""
    try:
        return orjson.dumps(records, default=_orjson_default, option=_ORJSON_OPTIONS)
    except orjson.JSONEncodeError:
        return _stdlib_json(list(records))


def encode_log_line(request_id: str, model_id: str, records: bytes, predictions: Predictions,
                    key_id: str | None = None, timestamps: bytes | None = None) -> bytes:
    """The line ``log_line(request_id, model_id, <records>, predictions.to_records())`` writes, as
    the same JSON values (keys in the same order, ints stay ints), from the records already
    encoded as a JSON array (``records_json``, or the server's body decoder) and the predictions
    as ``Predictions.to_json`` writes them, the array the answer carries.

    The spelling differs from the reference's only where JSON allows (no spaces, non-ASCII text
    as UTF-8, ``1e-5`` for ``1e-05``). A non-finite score raises ``ValueError`` as ``log_line`` does.
    """
    outputs = predictions.to_json()  # raises on a non-finite score
    head_values = {"request_id": request_id, "logged_at": _logged_at(), "model_id": model_id}
    if key_id is not None:
        head_values["key_id"] = key_id
    head = orjson.dumps(head_values)[:-1]
    stamps = b"" if timestamps is None else b',"' + LOG_FIELD.encode() + b'":' + timestamps
    if predictions.features is None:
        return b"".join((head, b',"records":', records, stamps, b',"predictions":', outputs, b"}\n"))
    features = orjson.dumps(predictions.features, option=orjson.OPT_SERIALIZE_NUMPY)  # NaN and inf as null
    return b"".join((head, b',"records":', records, stamps, b',"predictions":', outputs, b',"features":', features,
                     b"}\n"))


def logged_predictions(paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    """Every logged prediction in ``paths`` (log files, in order), one dict per scored record:
    request_id, logged_at, model_id, key_id (when logged), record_index, inputs, then the outputs (``score``, ``label``...),
    ``features`` and ``timestamps_utc`` when logged.
    Lines of the earlier one-record format are that dict already. A line that is not a logged
    request raises (orjson's error, or ``KeyError``/``ValueError`` naming what is missing);
    dbt's staging keeps and flags such lines instead."""
    for path in paths:
        for line in path.read_bytes().splitlines():
            if not line.strip():
                continue
            request = orjson.loads(line)
            if "records" not in request and "inputs" in request:
                yield request
                continue
            head = {k: request[k] for k in ("request_id", "logged_at", "model_id")}
            if "key_id" in request:
                head["key_id"] = request["key_id"]
            features = request.get("features") or [None] * len(request["records"])
            stamps = request.get(LOG_FIELD) or [None] * len(request["records"])
            for i, (inputs, output, used, utc) in enumerate(zip(request["records"], request["predictions"], features,
                                                                stamps, strict=True)):
                yield {**head, "record_index": i, "inputs": inputs, **output, **({"features": used} if used else {}),
                       **({LOG_FIELD: utc} if utc else {})}


class PredictionLog:
    """Thread-safe appender with size/age rotation and the fsync policy above.

    With a background syncer, appends never wait for a disk: the syncer fsyncs duplicates of the
    descriptors outside the lock, and a file rotated out (with the folder holding the new one's
    name) is fsynced and closed by it, within the same interval.
    """

    def __init__(self, options: PredictionLogOptions = PredictionLogOptions()) -> None:
        self.options = options
        options.directory.mkdir(parents=True, exist_ok=True)
        self._background = options.fsync_interval_s > 0
        self._lock = threading.Lock()
        self._seq = 0
        self._fd = -1
        self._path: Path | None = None
        self._size = 0
        self._opened_at = 0.0
        self._dirty = False
        self._retired: list[int] = []
        """Rotated-out descriptors the syncer still has to fsync and close."""
        self._new_name = False
        """A file was created since the folder was last fsynced."""
        self._open_next()
        self._stop = threading.Event()
        self._syncer: threading.Thread | None = None
        if self._background:
            self._syncer = threading.Thread(target=self._sync_loop, name="prediction-log-fsync", daemon=True)
            self._syncer.start()

    @property
    def path(self) -> Path | None:
        """The file being appended to."""
        return self._path

    def _open_next(self) -> None:
        stamp = _utc_now().strftime("%Y%m%dT%H%M%S%fZ")
        self._seq += 1
        self._path = self.options.directory / f"{FILE_PREFIX}{stamp}-{os.getpid()}-{self._seq:04d}{FILE_SUFFIX}"
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._size, self._opened_at = 0, time.monotonic()
        if self._background:
            self._new_name = True
        else:
            fsync_dir(self.options.directory)  # the new file's name survives a crash too

    def _rotate(self) -> None:
        if self._background:
            self._retired.append(self._fd)
            self._dirty = False
        else:
            os.fsync(self._fd)
            os.close(self._fd)
        self._open_next()

    def append(self, data: bytes) -> None:
        """Write ``data`` (whole lines) to the kernel before returning; rotate first if due."""
        if not data:
            return
        with self._lock:
            if self._fd < 0:
                raise ValueError("prediction log is closed; create a new PredictionLog")
            age = time.monotonic() - self._opened_at
            if self._size and (self._size + len(data) > self.options.max_file_bytes or age > self.options.max_file_age_s):
                self._rotate()
            view = memoryview(data)
            while view:  # os.write may write less than asked (signals, huge buffers)
                view = view[os.write(self._fd, view):]
            self._size += len(data)
            if self._background:
                self._dirty = True
            else:
                os.fsync(self._fd)

    def sync(self) -> None:
        """fsync what was written since the last sync: rotated-out files (then closed), the folder
        when a file was created, and the current file. Appends go on meanwhile."""
        with self._lock:
            retired, self._retired = self._retired, []
            new_name, self._new_name = self._new_name, False
            current = os.dup(self._fd) if self._fd >= 0 and self._dirty else -1
            self._dirty = False
        failed: OSError | None = None
        for fd in (fd for fd in [*retired, current] if fd >= 0):
            try:
                os.fsync(fd)
            except OSError as exc:
                failed = failed or exc
            finally:
                os.close(fd)
        if new_name:
            fsync_dir(self.options.directory)
        if failed is not None:
            raise failed

    def _sync_loop(self) -> None:
        while not self._stop.wait(self.options.fsync_interval_s):
            try:
                self.sync()
            except OSError:  # the disk refused; say so every interval rather than stop trying
                log.exception("could not fsync the prediction log in %s", self.options.directory)

    def close(self) -> None:
        self._stop.set()
        if self._syncer is not None:
            self._syncer.join(timeout=5)
        try:
            self.sync()
        finally:
            with self._lock:
                if self._fd >= 0:
                    try:
                        os.fsync(self._fd)
                    finally:
                        os.close(self._fd)
                        self._fd = -1
