"""Write-audit-publish, enforced by the orchestrator.

dbt builds every model into an audit schema (``staging_audit``, ``features_audit``...; var
``wap_schema_suffix``) and runs the tests there. Only when every error-severity check passed does
``publish`` copy the audited tables into the schemas consumers read (``staging``, ``features``...),
all in one transaction, and record the version in ``validation.publications``: the features'
data fingerprint and the baseline profile of the training window it carries. Training checks
that the features it reads are the latest published version, so a table written any other way
(a failed run, a stray ``dbt build`` against the warehouse) is refused.

The publication row also links a deployed model (its bundle's data fingerprint) to the baseline
version it learned from, which later runs pass to dbt as var ``baseline_id``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import duckdb

from orchestration.checks import CheckResult, ensure_tables, published_name
from orchestration.errors import PublishError
from orchestration.faults import pause_point
from orchestration.ingest import mark_published
from serving.bundle import MANIFEST
from serving.registry import bundles_dir, read_champion
from training.dbt_manifest import FeatureSpec
from training.data import data_fingerprint
from training.warehouse import connect_warehouse

AUDIT_SUFFIX = "_audit"
BASELINE_ROLE = "baseline_profile"
# Views are published as tables too: a published view would read the audit schema, which the next
# run rebuilds before auditing it. Ephemeral models have nothing to publish.
PUBLISHED_MATERIALIZATIONS = ("table", "incremental", "view")

PUBLICATIONS_DDL = """
create table if not exists validation.publications (
    run_id varchar not null,
    published_at timestamp not null,
    relations varchar[] not null,
    features_relation varchar not null,
    count_feature_rows bigint not null,
    features_hash varchar not null,
    baseline_id varchar,
    train_end date
);
"""


def audited_relations(manifest: dict[str, Any], run_results: dict[str, Any]) -> list[tuple[str, str]]:
    """(audit relation, published relation) of every table dbt built successfully in the audit schemas."""
    built = {r["unique_id"] for r in run_results.get("results", []) if r.get("status") == "success"}
    pairs = []
    for uid, node in sorted(manifest["nodes"].items()):
        if node["resource_type"] != "model" or node["config"].get("materialized") not in PUBLISHED_MATERIALIZATIONS:
            continue
        if "monitoring" in node.get("tags", []):
            continue  # built by the `monitor` stage over published tables, never audited or published here
        if not node["schema"].endswith(AUDIT_SUFFIX):
            raise PublishError(f"model {node['name']} was built into {node['schema']}, not an audit schema; "
                               "the build must run with var wap_schema_suffix (the orchestrator passes it)")
        if uid not in built:
            raise PublishError(f"model {node['name']} was not built in this run; nothing is published. "
                               "Look at the dbt_build stage's output for why.")
        pairs.append((f"{node['schema']}.{node['alias']}", published_name(node, AUDIT_SUFFIX)))
    return pairs


def baseline_relation(manifest: dict[str, Any]) -> str | None:
    """Published ``schema.table`` of the model with ``meta.role: baseline_profile``, if any."""
    for node in manifest["nodes"].values():
        if node["resource_type"] == "model" and (node["config"].get("meta") or {}).get("role") == BASELINE_ROLE:
            return published_name(node, AUDIT_SUFFIX)
    return None


def _exists(con: duckdb.DuckDBPyConnection, relation: str) -> bool:
    schema, table = relation.split(".")
    return bool(con.execute("select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
                            [schema, table]).fetchone()[0])


def _audit(relation: str) -> str:
    schema, table = relation.split(".")
    return f"{schema}{AUDIT_SUFFIX}.{table}"


def newest_baseline_id(warehouse: Path, relation: str) -> str | None:
    """The baseline version this run's build computed (the newest built one in the audit schema)."""
    with connect_warehouse(warehouse, read_only=True) as con:
        if not _exists(con, _audit(relation)):
            return None
        row = con.execute(f"select baseline_id from {_audit(relation)} order by built_at desc, baseline_id limit 1").fetchone()
    return row[0] if row else None


def _champion_fingerprint(registry: Path) -> tuple[str | None, str | None]:
    champion = read_champion(registry)
    if champion is None:
        return None, None
    try:
        manifest = json.loads((bundles_dir(registry) / champion["bundle_id"] / MANIFEST).read_text())
    except (OSError, ValueError):
        return champion["bundle_id"], None  # an unreadable bundle: the serving side reports it
    return champion["bundle_id"], ((manifest.get("lineage") or {}).get("data_fingerprint") or {}).get("hash")


def champion_baseline(warehouse: Path, registry: Path, relation: str | None) -> tuple[str | None, CheckResult]:
    """The baseline version the deployed model learned from, and a check result saying how it was found.

    None (compare with this run's own training window) when nothing is deployed yet, or, with a
    warning, when the champion's training data is not among this warehouse's publications.
    """
    def result(passed: bool, expected: str, actual: str | None, message: str) -> CheckResult:
        return CheckResult(origin="baseline", table=relation or "-", check="baseline_available", column=None,
                           metric="baseline_id", severity="warn", status="pass" if passed else "fail", passed=passed,
                           expected=expected, actual=actual, message=message)

    bundle_id, features_hash = _champion_fingerprint(registry)
    if bundle_id is None:
        return None, result(True, "none deployed", None, "no model deployed yet: checks compare with this run's "
                                                         "training window")
    if relation is None:
        return None, result(False, f"baseline of {bundle_id[:12]}", None, "no dbt model has meta.role "
                            f"{BASELINE_ROLE}: checks compare with this run's training window")
    found = None
    if warehouse.exists():
        with connect_warehouse(warehouse, read_only=True) as con:
            if _exists(con, "validation.publications") and _exists(con, _audit(relation)):
                found = con.execute(
                    f"select p.baseline_id from validation.publications p "
                    f"where p.features_hash = ? and exists (select 1 from {_audit(relation)} b "
                    f"where b.baseline_id = p.baseline_id) order by p.published_at desc limit 1",
                    [features_hash]).fetchone()
    if not found:
        return None, result(False, f"baseline of {bundle_id[:12]}", None,
                            f"the deployed model {bundle_id[:12]} learned from data this warehouse never published "
                            "(or its baseline was dropped): checks compare with this run's training window instead")
    return found[0], result(True, f"baseline of {bundle_id[:12]}", found[0][:12],
                            f"checks compare with the training window of the deployed model {bundle_id[:12]}")


def features_fingerprint(warehouse: Path, spec: FeatureSpec, relation: str) -> dict[str, Any]:
    """``data_fingerprint`` of ``relation`` (e.g. the audited copy), labelled with the published name."""
    fingerprint = data_fingerprint(warehouse, dataclasses.replace(spec, relation=relation))
    return {**fingerprint, "relation": spec.relation}


def publish(warehouse: Path, run_id: str, pairs: list[tuple[str, str]], *, fingerprint: dict[str, Any],
            baseline_id: str | None, train_end: dt.date) -> int:
    """Copy audited tables to their published names, mark ingested partitions published and record
    the publication, in one transaction. Returns the number of partitions newly published."""
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    with connect_warehouse(warehouse) as con:
        ensure_tables(con)
        con.execute(PUBLICATIONS_DDL)
        con.execute("begin transaction")
        for audit, published in pairs:
            con.execute(f"create schema if not exists {published.split('.')[0]}")
            con.execute(f"create or replace table {published} as select * from {audit}")
        partitions = mark_published(con, now)
        row = [fingerprint["relation"], fingerprint["rows"], fingerprint["hash"], baseline_id, train_end]
        if not _published_by_unfinished_run(con, [p for _, p in pairs], row):
            con.execute("insert into validation.publications values (?, ?, ?, ?, ?, ?, ?, ?)",
                        [run_id, now, [p for _, p in pairs], *row])
        con.execute("commit")
    pause_point("publish")  # tests kill the run here: committed, the stage not yet recorded as done
    return partitions


def _published_by_unfinished_run(con: duckdb.DuckDBPyConnection, relations: list[str], row: list[Any]) -> bool:
    """Whether the latest publication of these features is this very version, committed by a
    publish stage that never finished (killed after its commit, or retried): publishing it again
    must not add a second row. A finished run's publication of the same data is a new row (a
    repeated backfill publishes again, on purpose)."""
    latest = con.execute(
        "select run_id, relations, features_relation, count_feature_rows, features_hash, baseline_id, train_end "
        "from validation.publications where features_relation = ? order by published_at desc limit 1",
        [row[0]]).fetchone()
    if latest is None or [sorted(latest[1]), *latest[2:]] != [sorted(relations), *row]:
        return False
    if not _exists(con, "ops.stage_runs"):
        return False
    finished = con.execute("select count(*) from ops.stage_runs where run_id = ? and stage = 'publish' "
                           "and status = 'succeeded'", [latest[0]]).fetchone()[0]
    return finished == 0


def assert_published(warehouse: Path, spec: FeatureSpec) -> dict[str, Any]:
    """Refuse to read features that are not the latest published version; return their fingerprint."""
    with connect_warehouse(warehouse, read_only=True) as con:
        row = con.execute(
            "select features_hash, run_id from validation.publications where features_relation = ? "
            "order by published_at desc limit 1", [spec.relation]).fetchone() if _exists(
            con, "validation.publications") else None
    if row is None:
        raise PublishError(f"{spec.relation} has never been published by a run whose checks passed; "
                           "run the pipeline (python orchestrate.py) to validate and publish it")
    fingerprint = data_fingerprint(warehouse, spec)
    if fingerprint["hash"] != row[0]:
        raise PublishError(f"{spec.relation} differs from the version run {row[1]} published (hash {fingerprint['hash']} "
                           f"vs {row[0]}): it was written outside write-audit-publish (e.g. a plain `dbt build` against "
                           "this warehouse); rerun the pipeline to rebuild, audit and publish it")
    return fingerprint
