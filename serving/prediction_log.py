"""Append every served prediction to rotated JSON Lines files that dbt-duckdb can read.

Durability policy:

* Each request's lines are handed to the kernel with one ``os.write`` on an ``O_APPEND`` file
  *before* the response is sent. A process killed at any point (SIGKILL included) therefore loses
  no prediction it has answered: the bytes are in the page cache and the kernel writes them out.
* ``fsync`` guards against losing the machine (power, kernel panic). It runs every
  ``fsync_interval_s`` seconds from a background thread, when a file is rotated and on close;
  with ``fsync_interval_s = 0`` it runs before every response (slower, nothing answered is ever
  lost). So at most ``fsync_interval_s`` of answered predictions can be lost with the machine.

Files are ``predictions-<UTC start>-<pid>-<seq>.jsonl`` and rotate when they pass
``max_file_bytes`` or are older than ``max_file_age_s``; a line is never split across files.
Each line is one scored record, see ``log_lines`` for the fields.
"""

from __future__ import annotations

import bisect
import codecs
import datetime as dt
import itertools
import json
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from serving.registry import fsync_dir

if TYPE_CHECKING:
    from serving.predictor import Predictions

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


def _head(request_id: str, model_id: str) -> str:
    logged_at = _utc_now().isoformat(timespec="microseconds").replace("+00:00", "Z")
    return json.dumps({"request_id": request_id, "logged_at": logged_at, "model_id": model_id})[:-1]


_encode = json.JSONEncoder(ensure_ascii=True, allow_nan=False, default=str, separators=(",", ":")).encode


def log_lines(request_id: str, model_id: str, records: Sequence[Mapping[str, Any]],
              outputs: Sequence[Mapping[str, Any]]) -> bytes:
    """One JSON line per record: request_id, record_index, logged_at, model_id, inputs, then the
    model's output fields (``score`` and ``label`` for binary models; ``label`` and
    ``probabilities`` for multiclass; ``prediction`` for regression).

    ``inputs`` are the raw fields exactly as received (timestamps stay strings), so monitoring sees
    what clients sent, not what serving made of it. This is the reference encoder (the standard
    library's, one record at a time); ``encode_log_lines`` writes the same bytes faster.
    """
    head = _head(request_id, model_id)
    return "".join(
        f'{head}, "record_index": {i}, "inputs": {_encode(record)}, {_encode(output)[1:-1]}}}\n'
        for i, (record, output) in enumerate(zip(records, outputs))
    ).encode()


def _orjson_default(value: Any) -> Any:
    raise TypeError  # anything orjson does not write natively goes to the reference encoder


def _json_escape(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: non-ASCII characters as the reference encoder escapes them (\u00e9, surrogate pairs)."""
    assert isinstance(error, UnicodeEncodeError)
    out = []
    for char in error.object[error.start:error.end]:
        code = ord(char)
        if code > 0xFFFF:
            code -= 0x10000
            out.append(f"\\u{0xD800 | (code >> 10):04x}\\u{0xDC00 | (code & 0x3FF):04x}")
        else:
            out.append(f"\\u{code:04x}")
    return "".join(out), error.end


# orjson writes what the reference encoder writes (compact, keys in order, the same escapes for
# ASCII but DEL, the same shortest float digits), except: non-ASCII text as UTF-8 rather than
# \u escapes and DEL unescaped (both only inside strings, so escaped afterwards over the whole
# output), floats under 1e-4 as 0.00001 or 1e-7 rather than 1e-05 or 1e-07 (records showing
# "0.0000" or "e-" anywhere are re-encoded by the reference), NaN and infinity as null rather
# than an error, datetimes and subclasses its own way (passed to the default above, which refuses
# them, so the reference encoder takes the request).
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS
_SMALL_FLOAT_MARKS = ("0.0000", "e-")
_FEW_RECORDS = 2
"""Up to this many records the reference encoder is the faster one (fewer steps per call)."""


def _dumps(value: Any) -> bytes:
    encoded = orjson.dumps(value, default=_orjson_default, option=_ORJSON_OPTIONS)
    if not encoded.isascii():
        codecs.register_error("serving-json-escape", _json_escape)  # idempotent; not done at import
        encoded = encoded.decode().encode("ascii", "serving-json-escape")
    return encoded.replace(b"\x7f", b"\\u007f") if b"\x7f" in encoded else encoded


def _bodies(items: Sequence[Mapping[str, Any]]) -> list[str] | None:
    """Each mapping's JSON without its braces, byte for byte as the reference encoder writes it;
    None when orjson refuses a value."""
    try:
        encoded = _dumps(items).decode("ascii")
        text = encoded[2:-2]
        bodies = text.split("},{")
        # As many pieces as objects: "},{" occurs only between them, never inside a string
        if len(bodies) != len(items) or encoded[:2] != "[{" or encoded[-2:] != "}]":
            text = "},{".join(bodies := [_dumps(item)[1:-1].decode("ascii") for item in items])
    except (orjson.JSONEncodeError, TypeError):
        return None
    positions = [at for mark in _SMALL_FLOAT_MARKS for at in _occurrences(text, mark)]
    if positions:
        starts = list(itertools.accumulate((len(b) + 3 for b in bodies), initial=0))
        for k in {bisect.bisect_right(starts, at) - 1 for at in positions}:
            bodies[k] = _encode(items[k])[1:-1]
    return bodies


def _occurrences(text: str, mark: str) -> list[int]:
    found, at = [], text.find(mark)
    while at >= 0:
        found.append(at)
        at = text.find(mark, at + 1)
    return found


def encode_log_lines(request_id: str, model_id: str, records: Sequence[Mapping[str, Any]],
                     predictions: Predictions) -> bytes:
    """The bytes ``log_lines(request_id, model_id, records, predictions.to_records())`` writes, for
    records that passed validation (``serving.schema``: no NaN or infinity among them).

    The records are encoded by orjson in one call and split per record (see above for what is
    re-encoded by the reference); binary scores and labels are written from their arrays with
    ``float.__repr__``, as the standard library writes floats. A non-finite score raises
    ``ValueError`` as ``log_lines`` does; anything orjson refuses goes to ``log_lines`` whole.
    """
    if len(records) != len(predictions.scores) or len(records) <= _FEW_RECORDS:
        return log_lines(request_id, model_id, records, predictions.to_records())
    binary = predictions.task == "binary" and predictions.labels is not None
    if binary and not np.isfinite(predictions.scores).all():
        return log_lines(request_id, model_id, records, predictions.to_records())  # raises, as before
    ins = _bodies(records)
    if ins is None:
        return log_lines(request_id, model_id, records, predictions.to_records())
    head = _head(request_id, model_id)
    if binary:
        assert predictions.labels is not None
        scores = _floats(predictions.scores)
        return "".join([f'{head}, "record_index": {i}, "inputs": {{{inp}}}, "score":{score},"label":{label}}}\n'
                        for i, (inp, score, label) in enumerate(zip(ins, scores, predictions.labels.tolist()))]).encode()
    outs = [_encode(output)[1:-1] for output in predictions.to_records()]
    return "".join([f'{head}, "record_index": {i}, "inputs": {{{inp}}}, {out}}}\n'
                    for i, (inp, out) in enumerate(zip(ins, outs))]).encode()


def _floats(values: np.ndarray) -> list[str]:
    """Finite floats as the standard library writes them (``float.__repr__``): orjson's digits,
    except under 1e-4 in magnitude, where its spelling differs and ``repr`` writes them."""
    plain = values.tolist()
    texts = orjson.dumps(plain).decode("ascii")[1:-1].split(",")
    exact = np.asarray(values, dtype=np.float64)  # float32 scores compared as the doubles written
    for k in np.flatnonzero((np.abs(exact) < 1e-4) & (exact != 0)).tolist():
        texts[k] = repr(plain[k])
    return texts


class PredictionLog:
    """Thread-safe appender with size/age rotation and the fsync policy above."""

    def __init__(self, options: PredictionLogOptions = PredictionLogOptions()) -> None:
        self.options = options
        options.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._seq = 0
        self._fd = -1
        self._path: Path | None = None
        self._size = 0
        self._opened_at = 0.0
        self._dirty = False
        self._open_next()
        self._stop = threading.Event()
        self._syncer: threading.Thread | None = None
        if options.fsync_interval_s > 0:
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
        fsync_dir(self.options.directory)  # the new file's name survives a crash too

    def _close_current(self) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1

    def append(self, data: bytes) -> None:
        """Write ``data`` (whole lines) to the kernel before returning; rotate first if due."""
        if not data:
            return
        with self._lock:
            if self._fd < 0:
                raise ValueError("prediction log is closed; create a new PredictionLog")
            age = time.monotonic() - self._opened_at
            if self._size and (self._size + len(data) > self.options.max_file_bytes or age > self.options.max_file_age_s):
                self._close_current()
                self._open_next()
            view = memoryview(data)
            while view:  # os.write may write less than asked (signals, huge buffers)
                view = view[os.write(self._fd, view):]
            self._size += len(data)
            if self.options.fsync_interval_s <= 0:
                os.fsync(self._fd)
            else:
                self._dirty = True

    def sync(self) -> None:
        """fsync the current file if anything was written since the last fsync."""
        with self._lock:
            if self._fd >= 0 and self._dirty:
                os.fsync(self._fd)
                self._dirty = False

    def _sync_loop(self) -> None:
        while not self._stop.wait(self.options.fsync_interval_s):
            self.sync()

    def close(self) -> None:
        self._stop.set()
        if self._syncer is not None:
            self._syncer.join(timeout=5)
        with self._lock:
            self._close_current()
