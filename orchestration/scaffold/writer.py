"""Render a ``LandingSchema`` into a dbt project and a pipeline config, and write them.

``plan`` decides every name and feature (pure); ``render`` turns the plan into file texts
(pure); ``write`` puts them on disk, refusing to overwrite unless asked.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestration.scaffold import templates as t
from orchestration.scaffold.errors import ScaffoldError
from orchestration.scaffold.inference import SAMPLE_ROWS, InitOptions, LandingSchema
from orchestration.scaffold.recipes import RECIPES, Feature, Staged, identifier, makes_features, reserved_words

PLAIN_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
LABEL_TYPES = {"binary": "integer", "regression": "double"}
"""The mart's label type by task (multiclass keeps the landing type: text or bigint)."""


@dataclass(frozen=True)
class Plan:
    """Every generated name and feature, decided once."""

    schema: LandingSchema
    staged: tuple[Staged, ...]
    """Landing columns but the label, as staged (the key first when it is a landing column)."""
    key: str
    """The mart's key column."""
    key_sql: str
    """Its staged expression: the key column as it lands, or a hash of every request field."""
    time: str
    """The mart's timestamp column: the event time, or ``landed_at`` (the partition's day)."""
    label: str
    label_type: str
    features: tuple[Feature, ...]
    stats: tuple[tuple[str, str], ...]
    """(name, aggregate) of ``fitted_<table>_stats``."""
    vocabulary: tuple[Staged, ...]
    """Text columns with a fitted vocabulary."""
    skipped: tuple[str, ...]
    """Landing columns that make no default feature (id-like text)."""


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def plan(schema: LandingSchema) -> Plan:
    taken: set[str] = set()
    label = identifier(schema.label, taken)
    staged = [Staged(c.name, identifier(c.name, taken), c.kind) for c in schema.columns if c.name != schema.label]
    inputs = [c.name for c in schema.columns if c.name != schema.label]
    if schema.key is not None:
        key_col = next(s for s in staged if s.raw == schema.key)
        staged = [key_col, *[s for s in staged if s is not key_col]]
        key, key_sql = key_col.name, f"cast({key_col.quoted} as varchar)"
    else:
        # No id: a hash of the request fields, computed alike in staging and serving. Rows with
        # identical fields share it (and their features); parity compares one row per key.
        key = identifier("record_key", taken)
        key_sql = "md5(concat_ws('|',\n        " + ",\n        ".join(
            f"coalesce(cast({_q(n)} as varchar), '\\N')" for n in inputs) + "\n    ))"
    time = next(s.name for s in staged if s.raw == schema.timestamp) if schema.timestamp else identifier("landed_at", taken)
    features: list[Feature] = []
    stats: list[tuple[str, str]] = [("count_training_rows", "count(*)")]
    vocabulary, skipped = [], []
    for column in staged:
        if column.raw == schema.key:
            continue
        if not makes_features(schema.column(column.raw), min(schema.rows, SAMPLE_ROWS)):
            skipped.append(column.raw)
            continue
        recipe = RECIPES[column.kind]
        features.extend(recipe.features(column))
        stats.extend(recipe.stats(column, f"{key}, {column.name}"))
        if recipe.vocabulary:
            vocabulary.append(column)
    if not features:
        raise ScaffoldError(f"{schema.landing_root / schema.table}: no column makes a feature (only the key, the "
                            "label and id-like text); land some feature columns")
    kind = schema.column(schema.label).kind
    label_type = LABEL_TYPES.get(schema.task) or ("varchar" if kind == "string" else "bigint")
    return Plan(schema, tuple(staged), key, key_sql, time, label, label_type, tuple(features), tuple(stats),
                tuple(vocabulary), tuple(skipped))


def _flow(mapping: dict[str, Any]) -> str:
    """A one-line YAML mapping; names as JSON strings, so any landing name is valid YAML."""
    return "{" + ", ".join(f"{k}: {v if isinstance(v, str) and not k == 'name' else json.dumps(v)}"
                           for k, v in mapping.items()) + "}"


def _reader(p: Plan, landing_default: str) -> str:
    s = p.schema
    pattern = "*/*" if s.layout == "hive" else "*"
    path = f"\" ~ env_var('LANDING_PATH', '{landing_default}') ~ \"/{s.table}/{pattern}.{s.file_format}"
    if s.file_format == "csv":
        return f"read_csv('{path}', header = true, filename = true, hive_partitioning = false)"
    return f"read_parquet('{path}', filename = true, hive_partitioning = false)"


def _sources(p: Plan, landing_default: str) -> str:
    s = p.schema
    required = {c for c in (s.key, s.timestamp, s.label) if c}
    columns = []
    for c in s.columns:
        entry: dict[str, Any] = {"name": c.name, "data_type": c.data_type}
        if not PLAIN_NAME.match(c.name) or c.name in reserved_words():
            entry["quote"] = "true"  # so dbt's tests quote it too (`where "Measured At" is null`)
        if c.name in required:
            entry["data_tests"] = "[not_null]"
        if c.name == s.label:
            entry["meta"] = "{role: label}"
        columns.append("          - " + _flow(entry))
    meta = [f"            event_key: {json.dumps(s.key)}"] if s.key else []
    meta += [f"            event_time: {json.dumps(s.timestamp)}"] if s.timestamp else []
    meta.append("            time_zone: UTC")
    note = ("" if s.key else " No --key: rows are not checked for reused event keys.") + (
        "" if s.timestamp else " No timestamp: each row is dated by its partition's day (landed_at).")
    layout = {"daily": f"one YYYY-MM-DD.{s.file_format} file per day",
              "hive": f"date=YYYY-MM-DD/ folders of .{s.file_format} files"}[s.layout]
    return t.SOURCES_YML.substitute(
        table=s.table, layout_text=layout, relation_var=f"landing_{s.table}_relation", reader=_reader(p, landing_default),
        landing_note=" Timestamps that land without a zone are UTC; change time_zone if not." + note,
        landing_meta="\n".join(meta), columns="\n".join(columns))


def _cleanup(p: Plan) -> str:
    lines = [f"    {p.key_sql} as {p.key}"]
    lines += [f"    {RECIPES[c.kind].cleanup(c)} as {c.name}" for c in p.staged if c.raw != p.schema.key]
    return ",\n".join(lines)


def _label_sql(p: Plan) -> str:
    raw = _q(p.schema.label)
    return f"cast({raw} as {p.label_type})"


def _staging(p: Plan) -> str:
    extra = [f"        {_label_sql(p)} as {p.label}"]
    if p.schema.timestamp is None:
        # The partition's day, from the landing file's name: the raw table's `filename` column
        # (YYYY-MM-DD.csv, date=YYYY-MM-DD/part.csv) or a standalone read's full path.
        extra.append("        cast(cast(regexp_extract(filename, '(\\d{4}-\\d{2}-\\d{2})(\\.[a-z]+|/[^/]*)$', 1) as date) "
                     f"as timestamp) as {p.time}")
    dedup = (f"\n    -- An exact re-send (ingest refuses a key reused with other values): keep the first delivery.\n"
             f"    qualify row_number() over (partition by {p.key} order by filename) = 1") if p.schema.key else ""
    return t.STAGING_MODEL.substitute(table=p.schema.table, extra=",\n".join(extra), dedup=dedup)


def _features_macro(p: Plan) -> str:
    body = ",\n".join(f"    {f.sql} as {f.name}" for f in p.features)
    joins = "".join(f"\nleft join {{{{ vocab }}}} as v_{c.name}\n    on v_{c.name}.feature_name = '{c.name}'\n"
                    f"    and v_{c.name}.category = t.{c.name}" for c in p.vocabulary)
    skipped = (f"\n\n  No feature from {', '.join(p.skipped)}: almost every value is distinct (an id?). "
               "Add one here if it carries signal.") if p.skipped else ""
    return t.FEATURES_MACRO.substitute(
        table=p.schema.table, passthrough=json.dumps([p.key, p.time]).replace('"', "'"), features=body, joins=joins,
        vocab_note="; `vocab`, one row per category" if p.vocabulary else "", skipped_note=skipped)


def _ml_yml(p: Plan) -> str:
    s, first = p.schema, p.schema.days[0]
    stats_cols = "\n".join("      - " + _flow({"name": n, "data_type": "bigint" if n == "count_training_rows" else "double"})
                           for n, _ in p.stats)
    out = ["version: 2", "models:",
           f"  - name: fitted_{s.table}_stats",
           f"    description: One row, the training window's statistics (rows of stg_landing__{s.table} before var train_end).",
           "    config:", "      contract: {enforced: true}", "      meta: {role: fitted_state}",
           "    columns:", stats_cols]
    if p.vocabulary:
        out += [f"  - name: fitted_{s.table}_vocab",
                "    description: One row per text column and category of the training window, ranked by frequency.",
                "    config:", "      contract: {enforced: true}", "      meta: {role: fitted_state}",
                "    columns:",
                "      - {name: feature_name, data_type: varchar}", "      - {name: category, data_type: varchar}",
                "      - {name: category_index, data_type: integer}", "      - {name: count_training_rows, data_type: bigint}"]
    key_tests = "[not_null, unique]" if s.key else "[not_null]"
    time_text = f"When the event happened ({s.timestamp})." if s.timestamp else "The partition's day (no timestamp landed)."
    out += [f"  - name: fct_{s.table}_features",
            f"    description: One row per landed {s.table} record with its features and its label ({s.label}).",
            "    config:", "      contract: {enforced: true}", "    columns:",
            f"      - {{name: {p.key}, data_type: varchar, meta: {{role: key}}, data_tests: {key_tests}}}",
            f"      - {{name: {p.time}, data_type: timestamp, description: {json.dumps(time_text)}, meta: {{role: timestamp}}}}"]
    out += [f"      - {{name: {f.name}, data_type: {f.data_type}, description: {json.dumps(f.description)}, "
            f"meta: {{role: feature, available_from: \"{first}\"}}}}" for f in p.features]
    out += [f"      - {{name: {p.label}, data_type: {p.label_type}, meta: {{role: label}}, data_tests: [not_null]}}"]
    return "\n".join(out) + "\n" + _unit_test(p)


def _fixture(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return json.dumps(value.replace(tzinfo=None).isoformat(sep=" "))
    return json.dumps(value)


def _unit_test(p: Plan) -> str:
    """A stub that pins the default features on one row; extend it when a feature gets logic."""
    s = p.schema
    given = {p.key: "k1", p.time: dt.datetime.combine(s.days[0], dt.time(13, 30))}
    stats: dict[str, Any] = {"count_training_rows": 1}
    expect: dict[str, Any] = {p.key: "k1"}
    vocab = []
    for c in p.staged:
        sample = s.column(c.raw).sample
        if c.raw == s.key or sample is None or c.raw in p.skipped:
            continue
        names = {f.name for f in p.features}
        if c.kind in ("double", "integer") and f"{c.name}_z" in names:
            given[c.name] = sample
            stats.update({f"{c.name}_mean": 0, f"{c.name}_std": 2})
            expect.update({c.name: float(sample), f"{c.name}_z": float(sample) / 2})
        elif c.kind == "string" and (cleaned := str(sample).strip().lower()):
            given[c.name] = cleaned
            vocab.append({"feature_name": c.name, "category": cleaned, "category_index": 1, "count_training_rows": 9})
            expect[f"{c.name}_index"] = 1
        elif c.kind == "timestamp" and c.name == p.time:
            expect.update({f"{c.name}_hour": 13, f"{c.name}_day_of_week": s.days[0].isoweekday()})
    row = lambda d: "{" + ", ".join(f"{json.dumps(k)}: {_fixture(v)}" for k, v in d.items()) + "}"  # noqa: E731
    lines = ["", "unit_tests:", f"  - name: test_{s.table}_default_features",
             "    description: >",
             "      The default features on one staged row: numbers as landed and standardised by the fitted",
             "      mean and standard deviation, text as its vocabulary rank, the event time's hour and day.",
             "      A stub from `orchestrate.py init`: extend it as the features grow.",
             f"    model: fct_{s.table}_features", "    given:",
             f"      - input: ref('stg_landing__{s.table}')", f"        rows:\n          - {row(given)}",
             f"      - input: ref('fitted_{s.table}_stats')", f"        rows:\n          - {row(stats)}"]
    if p.vocabulary:
        lines += [f"      - input: ref('fitted_{s.table}_vocab')", "        rows:" + ("" if vocab else " []")]
        lines += [f"          - {row(v)}" for v in vocab]
    lines += ["    expect:", "      rows:", f"        - {row(expect)}"]
    return "\n".join(lines) + "\n"


def _profile(p: Plan) -> str:
    """The baseline's rows: null fraction of every staged column, mean and std of numbers, shares of text."""
    parts = []
    for c in p.staged:
        if c.raw == p.schema.key:
            continue
        parts.append(f"    select '{c.name}' as column_name, 'null_fraction' as metric, cast(null as varchar) as category,\n"
                     f"        (count(*) - count({c.name}))::double / nullif(count(*), 0) as value\n    from training_window")
        if c.kind in ("double", "integer"):
            for metric, sql in (("mean", "avg"), ("std", "stddev_pop")):
                parts.append(f"    select '{c.name}', '{metric}', null, {sql}(cast({c.name} as double) order by {p.key}) "
                             "from training_window")
        elif c.kind == "string" and c.raw not in p.skipped:
            parts.append(f"    select '{c.name}', 'category_share', {c.name}, count(*)::double / sum(count(*)) over ()\n"
                         f"    from training_window where {c.name} is not null group by {c.name}")
    return "\n    union all\n".join(parts)


def render(p: Plan, out: Path) -> dict[str, str]:
    """Relative path -> text of every generated file."""
    s, table = p.schema, p.schema.table
    project = out / "dbt_project"
    staging = f"stg_landing__{table}"
    vocab_pass = ", vocab" if p.vocabulary else ""
    stats = ",\n".join(f"        {sql} as {name}" for name, sql in p.stats)
    files = {
        "dbt_project/dbt_project.yml": t.DBT_PROJECT.substitute(project=table, landing=f"{s.table}/"),
        "dbt_project/profiles.yml": t.PROFILES.substitute(project=table),
        "dbt_project/macros/generate_schema_name.sql": t.GENERATE_SCHEMA_NAME,
        f"dbt_project/macros/staging/{table}_columns.sql": t.CLEANUP_MACRO.substitute(
            table=table, columns=_cleanup(p),
            key_note="" if s.key else ("\n\n  No --key: the key is an md5 of every request field, so serving computes "
                                       "it too;\n  rows with identical fields share it.")),
        f"dbt_project/macros/features/{table}_features.sql": _features_macro(p),
        f"dbt_project/macros/serving/serving_{table}_features.sql": t.SERVING_MACRO.substitute(
            table=table, key=p.key, vocab_arg=f", vocab='fitted_{table}_vocab'" if p.vocabulary else "",
            vocab_pass=vocab_pass),
        "dbt_project/models/staging/landing/_landing__sources.yml": _sources(
            p, os.path.relpath(s.landing_root, project)),
        "dbt_project/models/staging/landing/_landing__models.yml": (
            f"version: 2\nmodels:\n  - name: {staging}\n    description: One row per landed {table} record, "
            "typed and cleaned (exact re-sends once).\n    columns:\n"
            f"      - {{name: {p.key}, data_tests: [not_null]}}\n"),
        f"dbt_project/models/staging/landing/{staging}.sql": _staging(p),
        f"dbt_project/models/marts/ml/fitted_{table}_stats.sql": t.STATS_MODEL.substitute(
            staging=staging, time=p.time, stats=stats),
        f"dbt_project/models/marts/ml/fct_{table}_features.sql": t.MART_MODEL.substitute(
            staging=staging, table=table, vocab_pass=", 'vocab'" if p.vocabulary else "",
            vocab_cte=f"\nvocab as (\n    select * from {{{{ ref('fitted_{table}_vocab') }}}}\n),\n" if p.vocabulary else "",
            passthrough=json.dumps([p.key, p.time, p.label]).replace('"', "'")),
        "dbt_project/models/marts/ml/_ml__models.yml": _ml_yml(p),
        "pipeline.yml": t.PIPELINE_YML.substitute(
            landing_root=os.path.relpath(s.landing_root, out), table=table, task=s.task,
            label=p.label, monitoring=""),
        ".gitignore": t.GITIGNORE,
    }
    files[f"dbt_project/models/marts/validation/baseline_{table}_profile.sql"] = t.BASELINE_MODEL.substitute(
        staging=staging, time=p.time, profile=_profile(p))
    files["dbt_project/models/marts/validation/_validation__models.yml"] = t.BASELINE_YML.substitute(table=table)
    if p.vocabulary:
        counts = "\n    union all\n".join(t.VOCAB_COUNT.substitute(column=c.name) for c in p.vocabulary)
        files[f"dbt_project/models/marts/ml/fitted_{table}_vocab.sql"] = t.VOCAB_MODEL.substitute(
            staging=staging, time=p.time, counts=counts)
    return files


def write(options: InitOptions, schema: LandingSchema) -> tuple[Plan, list[Path]]:
    """Write the project under ``options.out``; refuse to overwrite a file unless ``options.force``."""
    p = plan(schema)
    out = options.out
    files = render(p, out)
    existing = [rel for rel in files if (out / rel).exists()]
    if existing and not options.force:
        raise ScaffoldError(f"{out}: {len(existing)} file(s) would be overwritten ({', '.join(existing[:3])}"
                            f"{' ...' if len(existing) > 3 else ''}); pick another --out, or pass --force")
    written = []
    for rel, text in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return p, written


def next_steps(p: Plan, out: Path) -> str:
    """What to read and edit next, printed after ``init``."""
    s, table = p.schema, p.schema.table
    time = f"event time {s.timestamp!r}" if s.timestamp else "no timestamp: rows dated by their partition's day (landed_at)"
    key = f"key {s.key!r}" if s.key else "no key: an md5 of the request fields (record_key)"
    return "\n".join([
        f"wrote a dbt project and a pipeline config for {s.table} ({s.rows:,} rows, {len(s.days)} days, "
        f"{s.layout} {s.file_format}) to {out}:",
        f"  {s.task} on {s.label!r}; {key}; {time}; {len(p.features)} default features"
        + (f" (none from id-like {', '.join(p.skipped)})" if p.skipped else ""),
        "",
        "next:",
        f"  1. run it as it is:       python orchestrate.py --config {out / 'pipeline.yml'}",
        f"  2. edit the features:     {out}/dbt_project/macros/features/{table}_features.sql (and the mart's columns in",
        "                             models/marts/ml/_ml__models.yml, in the same order)",
        f"  3. edit the cleanup:      {out}/dbt_project/macros/staging/{table}_columns.sql",
        f"  4. make fields required or add data checks: models/staging/landing/_landing__sources.yml (docs/validation.md)",
        "  5. fix the split dates once new days keep landing: split.train_end/valid_end in pipeline.yml",
        "  see docs/bring-your-own-data.md",
    ])
