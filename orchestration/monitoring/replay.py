"""Replay skew audit: logged serving inputs re-run and compared, row by row, with what was served.

For a seeded sample of well-formed logged predictions (``monitoring.replay_rows``):

* **inputs**: each raw field the server received is compared with the record that later landed
  with the same event key (the dbt source's ``meta.landing.event_key``, in ``raw.<table>``), so a client that sends something other than
  what the warehouse trains on (cents for dollars, a stale country) is caught field by field;
* **scores**: the logged inputs go through the serving bundle again (the same ``Predictor`` and
  feature path the server uses: its compiled dbt feature SQL or fused model, with its frozen
  fitted state), and the score must equal the logged one within
  ``SCORE_ATOL``; a difference means the log or the runtime does not reflect the model it names.

Every difference names the request, record, event key, field, served and reference value.
Rows whose event has not landed yet are counted as pending, not judged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from orchestration.config import PipelineConfig
from orchestration.ingest import raw_relation
from serving import registry
from serving.bundle import InputField, load_bundle
from serving.predictor import Predictor
from training import dbt_manifest
from training.warehouse import connect_warehouse

SCORE_ATOL = 1e-5
SHOWN = 5
LINES = "staging.stg_serving__prediction_log_lines"


@dataclass(frozen=True)
class Difference:
    """One field of one served record that differs from its reference."""

    request_id: str
    record_index: int
    event_key: str
    field: str
    served: object
    reference: object

    def describe(self) -> str:
        return (f"{self.field} of event {self.event_key!r} (request {self.request_id}, record "
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


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(name: str) -> str:
    return "'" + name.replace("'", "''") + "'"


def _served(f: InputField) -> str:
    """A logged field's value as the server read it: a timestamp as it logged it in canonical UTC."""
    sent = f"l.record->>{_literal(f.name)}"
    return f"coalesce(l.record_utc->>{_literal(f.name)}, {sent})" if f.type == "timestamp" else sent


def _json_path(name: str) -> str:
    return '$."' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def audit(cfg: PipelineConfig, manifest: dict[str, Any], seed: int | None = None) -> AuditReport:
    """Replay a seeded sample of logged predictions; see the module docstring. The fields, their
    types and the event key are the dbt source's (``dbt.source`` and its ``meta.landing``)."""
    limit = cfg.monitoring.replay_rows
    fields = dbt_manifest.input_schema(manifest, cfg.dbt.source)
    key = (dbt_manifest.source_meta(manifest, cfg.dbt.source).get("landing") or {}).get("event_key")
    raw = raw_relation(cfg.dbt.source.partition(".")[2])
    with connect_warehouse(cfg.warehouse, read_only=True) as con:
        if limit == 0 or not _exists(con, LINES):
            return AuditReport()
        landed = key is not None and _exists(con, raw)
        # Each field as served (the logged JSON, read with the source's type) and as it landed.
        # Each field as served (the logged JSON, read with the source's type) and as it landed;
        # a field the record does not carry (not in that model's request schema) is not compared.
        served = ", ".join(f"try_cast({_served(f)} as {f.sql_type}) as {_quoted('served:' + f.name)}, "
                           f"json_exists(l.record, {_literal(_json_path(f.name))}) as {_quoted('sent:' + f.name)}"
                           for f in fields)
        reference = ", ".join(
            (f"cast(r.{_quoted(f.name)} as {f.sql_type})" if landed else "null") + f" as {_quoted('landed:' + f.name)}"
            for f in fields)
        join = (f"left join (select * from {raw} qualify row_number() over (partition by {_quoted(key)}) = 1) r "
                f"on cast(r.{_quoted(key)} as varchar) = l.event_key") if landed else ""
        table = con.execute(
            f"select l.request_id, l.record_index, l.model_id, l.score, l.event_key, cast(l.record as varchar) as record, "
            f"{served}, {reference}, {f'r.{_quoted(key)} is not null' if landed else 'false'} as is_landed "
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
            first.append(Difference(cols["request_id"][i], cols["record_index"][i], cols["event_key"][i], name,
                                    served, reference))

    landed_mask = cols["is_landed"]
    for f in fields:
        served_values, landed_values, sent = cols["served:" + f.name], cols["landed:" + f.name], cols["sent:" + f.name]
        for i in range(n):
            if landed_mask[i] and sent[i] and served_values[i] != landed_values[i]:
                note(i, f.name, served_values[i], landed_values[i])

    unknown: list[str] = []
    for model_id in sorted(set(cols["model_id"])):
        idx = [i for i in range(n) if cols["model_id"][i] == model_id]
        path = registry.bundles_dir(cfg.registry) / model_id
        if not path.is_dir():
            unknown.append(model_id)
            continue
        # Entity state from the store beside the registry, point in time; replaying writes nothing.
        predictor = Predictor(load_bundle(path), record=False)
        try:
            # The records as the server received them, through the same validation it ran.
            replayed = predictor.predict([json.loads(cols["record"][i]) for i in idx]).scores
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
