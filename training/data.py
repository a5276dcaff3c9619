"""Read the features mart from the warehouse as Arrow and split it by time."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from training.dbt_manifest import FeatureSpec
from training.errors import FeatureAvailabilityError, TrainingDataError
from training.warehouse import connect_warehouse


@dataclass(frozen=True)
class SplitBoundaries:
    """Time-based split: train before ``train_end``, validation before ``valid_end``, test after."""

    train_end: dt.date
    """First day of the validation split."""
    valid_end: dt.date
    """First day of the test split."""


@dataclass(frozen=True)
class Dataset:
    """Feature matrix, labels and split masks, in (timestamp, key) order."""

    keys: np.ndarray
    timestamps: np.ndarray
    X: np.ndarray
    """float32 features in model order; the same dtype the ONNX model takes."""
    y: np.ndarray
    """int 0/1 (binary), class labels (multiclass) or float (regression)."""
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    classes: np.ndarray | None = None
    """Sorted class labels seen in training (classification), else None."""
    sampled_from: int | None = None
    """Rows in the features mart when training used a sample of them, else None."""


def connect_read_only(warehouse: Path) -> duckdb.DuckDBPyConnection:
    return connect_warehouse(warehouse, read_only=True)


def read_features(warehouse: Path, spec: FeatureSpec, *, max_rows: int, seed: int) -> tuple[pa.Table, int]:
    """The mart as Arrow, in (timestamp, key) order, and its full row count.

    Above ``max_rows`` rows, a sample of about ``max_rows`` is read: rows whose hash of (key,
    seed) falls below the sampling fraction. Hash-based, so the same data and seed give the same
    sample whatever DuckDB's thread count, and every split is sampled at the same rate.
    """
    columns = ", ".join(f'"{c}"' for c in (spec.key, spec.timestamp, *spec.features, spec.label))
    with connect_read_only(warehouse) as con:
        total = con.execute(f"select count(*) from {spec.relation}").fetchone()[0]
        where = ""
        if total > max_rows:
            buckets = 1_000_000
            where = f'where hash("{spec.key}", {int(seed)}) % {buckets} < {int(buckets * max_rows / total)}'
        table = con.execute(
            f'select {columns} from {spec.relation} {where} order by "{spec.timestamp}", "{spec.key}"'
        ).fetch_arrow_table()
    return table, total


def _labels(table: pa.Table, spec: FeatureSpec, task: str) -> np.ndarray:
    column = table.column(spec.label)
    if column.null_count:
        raise TrainingDataError(
            f"{spec.relation}.{spec.label}: {column.null_count} null labels; filter or fix them in dbt "
            "(training never drops rows silently)"
        )
    values = column.to_numpy(zero_copy_only=False)
    if task == "regression":
        return values.astype(np.float64)
    if task == "binary":
        unique = set(np.unique(values).tolist())
        if not unique <= {0, 1, True, False}:
            raise TrainingDataError(f"{spec.relation}.{spec.label}: binary labels must be 0/1 or boolean, found {sorted(unique)[:5]}")
        return values.astype(np.int64)
    return values


def data_fingerprint(warehouse: Path, spec: FeatureSpec) -> dict[str, object]:
    """Row count and an order-independent hash of every column, computed inside DuckDB."""
    columns = ", ".join(f'"{c}"' for c in (spec.key, spec.timestamp, *spec.features, spec.label))
    with connect_read_only(warehouse) as con:
        rows, digest, first, last = con.execute(
            f"select count(*), cast(coalesce(sum(hash({columns})), 0) as varchar), "
            f"min(\"{spec.timestamp}\"), max(\"{spec.timestamp}\") from {spec.relation}"
        ).fetchone()
    return {"relation": spec.relation, "rows": rows, "hash": digest,
            "first_event": str(first), "last_event": str(last)}


def to_dataset(table: pa.Table, spec: FeatureSpec, split: SplitBoundaries, task: str = "binary",
               sampled_from: int | None = None) -> Dataset:
    if table.num_rows == 0:
        raise TrainingDataError(f"{spec.relation} is empty; nothing to train on")
    # One float32 matrix filled column by column from Arrow: the only copy training needs.
    X = np.empty((table.num_rows, len(spec.features)), dtype=np.float32)
    for j, f in enumerate(spec.features):
        X[:, j] = table.column(f).to_numpy(zero_copy_only=False)
    y = _labels(table, spec, task)
    ts = table.column(spec.timestamp).to_numpy(zero_copy_only=False).astype("datetime64[us]")
    train_end = np.datetime64(split.train_end.isoformat(), "us")
    valid_end = np.datetime64(split.valid_end.isoformat(), "us")
    train, test = ts < train_end, ts >= valid_end
    valid = ~train & ~test
    for name, mask in (("train", train), ("validation", valid), ("test", test)):
        if mask.sum() == 0:
            raise TrainingDataError(
                f"the {name} split is empty (train before {split.train_end}, validation before "
                f"{split.valid_end}, data from {ts.min()} to {ts.max()}); widen the data or change `split` in the config"
            )
        if task != "regression" and len(np.unique(y[mask])) < 2:
            raise TrainingDataError(f"the {name} split has only one class of {spec.label!r}; it cannot be trained or evaluated")
    classes = np.unique(y[train]) if task != "regression" else None
    if classes is not None:
        unseen = sorted(set(np.unique(y[~train]).tolist()) - set(classes.tolist()))
        if unseen:
            raise TrainingDataError(f"classes {unseen[:5]} of {spec.label!r} appear after the training days only; "
                                    "the model could never predict them. Widen the training window.")
    keys = table.column(spec.key).to_numpy(zero_copy_only=False)
    return Dataset(keys, ts, X, y, train, valid, test, classes, sampled_from)


def feature_availability(spec: FeatureSpec) -> dict[str, dt.date]:
    """Each feature's first available day, from its column meta ``available_from`` (required)."""
    dates, problems = {}, []
    for feature in spec.features:
        value = spec.feature_meta.get(feature, {}).get("available_from")
        try:
            dates[feature] = value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
        except ValueError:
            problems.append(f"{feature} ({value!r})")
    if problems:
        raise FeatureAvailabilityError(
            f"model {spec.model!r}: feature(s) {', '.join(problems)} have no valid meta.available_from; declare the "
            "first day each feature's data exists (YYYY-MM-DD) in the model's yml"
        )
    return dates


def check_feature_availability(spec: FeatureSpec, window_start: dt.date) -> None:
    """Refuse a training window that starts before any feature is available.

    Policy: refuse, never impute. Rows from before a feature existed hold values it could not
    have had (nulls or back-filled guesses), and a model fitted on them learns the gap.
    """
    late = {f: d for f, d in feature_availability(spec).items() if d > window_start}
    if late:
        names = ", ".join(f"{f} (from {d})" for f, d in sorted(late.items(), key=lambda item: item[1]))
        raise FeatureAvailabilityError(
            f"the training window starts on {window_start}, before feature(s) {names} are available; start the "
            f"training data on or after {max(late.values())} (remove earlier landing partitions), or drop the "
            "feature, or correct its meta.available_from"
        )
