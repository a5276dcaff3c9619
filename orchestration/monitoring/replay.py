"""Replay skew audit: logged serving inputs re-run and compared, row by row, with what was served.

For a seeded sample of well-formed logged predictions (``monitoring.replay_rows``):

* **inputs**: each raw field the server received is compared with the record that later landed
  for the same transaction (``raw.transactions``), so a client that sends something other than
  what the warehouse trains on (cents for dollars, a stale country) is caught field by field;
* **scores**: the logged inputs go through the serving bundle again (the same ``Predictor`` and
  feature path the server uses: its compiled dbt feature SQL or fused model, with its frozen
  fitted state and entity snapshot), and the score must equal the logged one within
  ``SCORE_ATOL``; a difference means the log or the runtime does not reflect the model it names.

Every difference names the request, record, transaction, field, served and reference value.
Rows whose transaction has not landed yet are counted as pending, not judged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np

from orchestration.config import PipelineConfig
from serving import registry
from serving.bundle import load_bundle
from serving.predictor import Predictor
from training.warehouse import connect_warehouse

SCORE_ATOL = 1e-5
SHOWN = 5
RAW_FIELDS = ("txn_id", "txn_ts", "user_id", "merchant_id", "merchant_category", "amount", "currency_code",
              "country_code", "channel", "device_type")
LINES = "staging.stg_serving__prediction_log_lines"


@dataclass(frozen=True)
class Difference:
    """One field of one served record that differs from its reference."""

    request_id: str
    record_index: int
    transaction_id: str
    field: str
    served: object
    reference: object

    def describe(self) -> str:
        return (f"{self.field} of transaction {self.transaction_id!r} (request {self.request_id}, record "
                f"{self.record_index}): served {self.served!r}, reference {self.reference!r}")


@dataclass(frozen=True)
class AuditReport:
    """Outcome of one replay audit."""

    rows: int = 0
    """Logged predictions audited (sampled)."""
    pending: int = 0
    """Of those, transactions that have not landed yet (inputs not compared)."""
    differing_rows: int = 0
    """Rows with at least one difference."""
    by_field: dict[str, int] = field(default_factory=dict)
    """Field (or ``score``) -> rows where it differs."""
    first: tuple[Difference, ...] = ()
    """The first few differences."""
    unknown_models: tuple[str, ...] = ()
    """Model ids in the log that are not in the registry (their scores cannot be replayed)."""

    @property
    def passed(self) -> bool:
        return self.differing_rows == 0 and not self.unknown_models

    def describe(self) -> str:
        head = f"replay audit of {self.rows} logged predictions ({self.pending} not landed yet)"
        if self.passed:
            return f"{head}: served inputs equal the landed records and every score replays exactly"
        parts = [f"{self.differing_rows} rows differ, by field {self.by_field}"] if self.differing_rows else []
        if self.unknown_models:
            parts.append(f"model(s) not in the registry: {', '.join(m[:12] for m in self.unknown_models)}")
        shown = "; ".join(d.describe() for d in self.first)
        return f"{head}: " + "; ".join(parts) + (f". First: {shown}" if shown else "")


def _exists(con: duckdb.DuckDBPyConnection, relation: str) -> bool:
    schema, name = relation.split(".")
    return bool(con.execute("select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
                            [schema, name]).fetchone()[0])


def audit(cfg: PipelineConfig, raw_relation: str = "raw.transactions", seed: int | None = None) -> AuditReport:
    """Replay a seeded sample of logged predictions; see the module docstring."""
    limit = cfg.monitoring.replay_rows
    with connect_warehouse(cfg.warehouse, read_only=True) as con:
        if limit == 0 or not _exists(con, LINES):
            return AuditReport()
        landed = _exists(con, raw_relation)
        fields = ", ".join(f"l.{f}" for f in RAW_FIELDS)
        ref = ", ".join(f"r.{f} as ref_{f}" for f in RAW_FIELDS) if landed else \
            ", ".join(f"null as ref_{f}" for f in RAW_FIELDS)
        join = (f"left join (select * from {raw_relation} qualify row_number() over (partition by txn_id) = 1) r "
                "on r.txn_id = l.txn_id") if landed else ""
        table = con.execute(
            f"select l.request_id, l.record_index, l.model_id, l.score, {fields}, {ref}, "
            f"{'r.txn_id is not null' if landed else 'false'} as is_landed "
            f"from {LINES} l {join} where not l.is_malformed "
            f"order by hash(l.request_id, l.record_index, {seed if seed is not None else cfg.seed}) limit ?", [limit]
        ).fetch_arrow_table()
    if table.num_rows == 0:
        return AuditReport()
    n = table.num_rows
    cols = {c: table.column(c).to_pylist() for c in table.column_names}
    bad = np.zeros(n, dtype=bool)
    by_field: dict[str, int] = {}
    first: list[Difference] = []

    def note(i: int, name: str, served: object, reference: object) -> None:
        by_field[name] = by_field.get(name, 0) + 1
        bad[i] = True
        if len(first) < SHOWN:
            first.append(Difference(cols["request_id"][i], cols["record_index"][i], cols["txn_id"][i], name,
                                    served, reference))

    landed_mask = cols["is_landed"]
    for f in RAW_FIELDS:
        for i in range(n):
            if landed_mask[i] and cols[f][i] != cols[f"ref_{f}"][i]:
                note(i, f, cols[f][i], cols[f"ref_{f}"][i])

    unknown: list[str] = []
    for model_id in sorted(set(cols["model_id"])):
        idx = [i for i in range(n) if cols["model_id"][i] == model_id]
        path = registry.bundles_dir(cfg.registry) / model_id
        if not path.is_dir():
            unknown.append(model_id)
            continue
        predictor = Predictor(load_bundle(path))
        try:
            replayed = predictor.predict(table.select(list(RAW_FIELDS)).take(idx)).scores
        finally:
            predictor.close()
        for i, score in zip(idx, np.asarray(replayed, dtype=np.float64)):
            if not abs(score - cols["score"][i]) <= SCORE_ATOL:
                note(i, "score", cols["score"][i], float(score))
    return AuditReport(rows=n, pending=n - sum(landed_mask), differing_rows=int(bad.sum()), by_field=by_field,
                       first=tuple(first), unknown_models=tuple(unknown))


def prediction_logs_dir(cfg: PipelineConfig) -> Path:
    """Where the server writes prediction logs for this pipeline: ``<artifacts>/prediction_logs``."""
    return cfg.artifacts / "prediction_logs"
