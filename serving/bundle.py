"""The model bundle: a self-describing, content-addressed directory.

Layout::

    <bundle_id>/
        manifest.json      format_version, bundle_id, features, input schema, metrics, lineage
        model.onnx         the model; takes the feature vector (float32) in model order
        serving.sql        feature SQL compiled by dbt: raw request fields -> feature vector
        fused.onnx         (optional) that SQL compiled into ONNX in front of the model
        tables/*.parquet   fitted statistics frozen from the warehouse (training window only)
        gate_report.json   (added after sealing) the gates' verdicts, shown in /metadata; not part
                           of the id, so it decides nothing: the served path is ``fused`` in the manifest

The bundle id is the sha256 of every file's bytes plus the manifest without its id, so the same
contents always get the same id and any change (a corrupt file, an edited statistic) is caught
on load. Only the files the manifest names are read: no pickle, no code, and an ONNX model that
references external data files is refused. A bundle is data and is checked as data on load, on
every path: relation names are plain identifiers, frozen tables live at ``tables/<name>.parquet``,
and serving.sql is one SELECT over the request, the frozen tables and the entity events
(``serving.sql_guard``), whether the SQL or the fused path serves.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from serving.errors import BundleError
from serving.onnx_scan import check_no_external_data
from serving.sql_guard import REQUEST_RELATION, check_feature_sql, check_identifier
from serving.store.spec import EntitySpec

FORMAT_VERSION = 2
"""2: fused.onnx takes timestamps as int64 microseconds and returns an "unsure" mask."""
MANIFEST = "manifest.json"
MODEL_FILE = "model.onnx"
SQL_FILE = "serving.sql"
FUSED_FILE = "fused.onnx"
FUSED_GATE = "fused ONNX parity"
# Gate results are measured after the bundle is sealed (latency differs run to run), so they sit
# beside the content the id covers rather than inside it.
GATE_REPORT = "gate_report.json"
INPUT_TYPES = ("string", "double", "integer", "boolean", "timestamp")


@dataclass(frozen=True)
class InputField:
    """One raw input field, as declared by the dbt source."""

    name: str
    """Field name exactly as it lands."""
    type: str
    """One of ``INPUT_TYPES``."""
    nullable: bool
    """Whether null (or JSON ``null``) is accepted."""

    @property
    def sql_type(self) -> str:
        """The DuckDB type a value of this field is read as."""
        return _SQL_TYPES[self.type]


_SQL_TYPES = {"string": "varchar", "double": "double", "integer": "bigint", "boolean": "boolean",
              "timestamp": "timestamp"}


@dataclass(frozen=True)
class BundleManifest:
    """What ``manifest.json`` says about a bundle."""

    bundle_id: str
    """sha256 of the bundle's contents (see ``content_digest``)."""
    task: str
    """``binary``, ``multiclass`` or ``regression``."""
    feature_names: tuple[str, ...]
    """Feature columns in model input order."""
    input_schema: tuple[InputField, ...]
    """Raw input fields a request must carry."""
    frozen_tables: dict[str, str]
    """Relation name used by serving.sql -> Parquet file in the bundle."""
    threshold: float
    """Binary: score at or above which the label is positive (chosen on validation)."""
    classes: list[Any] | None = None
    """Classification: class labels in the order of the model's probability columns."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """Evaluation metrics by split."""
    lineage: dict[str, Any] = field(default_factory=dict)
    """Data fingerprint, dbt manifest hash, code and package versions, config, seed."""
    gates: list[dict[str, Any]] = field(default_factory=list)
    """Gate results recorded when the bundle was evaluated."""
    entity_state: tuple[EntitySpec, ...] = ()
    """Entities whose state serving reads from the online store (declared in dbt); none are frozen here."""
    fused: dict[str, Any] | None = None
    """{"file": "fused.onnx", "inputs": [raw field names]} when the feature SQL compiled to ONNX."""
    fused_refused: str | None = None
    """Why the feature SQL did not compile to ONNX (the SQL path serves this model)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "bundle_id": self.bundle_id,
            "task": self.task,
            "feature_names": list(self.feature_names),
            "input_schema": [f.__dict__ for f in self.input_schema],
            "frozen_tables": dict(sorted(self.frozen_tables.items())),
            "threshold": self.threshold,
            "classes": self.classes,
            "metrics": self.metrics,
            "lineage": self.lineage,
            "gates": self.gates,
            "entity_state": [e.to_json() for e in self.entity_state],
            "fused": self.fused,
            "fused_refused": self.fused_refused,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], where: Path) -> BundleManifest:
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise BundleError(
                f"{where}: manifest format_version {version!r} is not supported by this serving "
                f"runtime (it reads version {FORMAT_VERSION}); upgrade the runtime or rebuild the bundle"
            )
        try:
            schema = tuple(InputField(**f) for f in data["input_schema"])
            bad = [f for f in schema if f.type not in INPUT_TYPES]
            if bad:
                raise BundleError(f"{where}: input field {bad[0].name!r} has unknown type {bad[0].type!r}; expected one of {INPUT_TYPES}")
            return cls(
                bundle_id=str(data["bundle_id"]),
                task=str(data["task"]),
                feature_names=tuple(data["feature_names"]),
                input_schema=schema,
                frozen_tables=dict(data["frozen_tables"]),
                threshold=float(data["threshold"]),
                classes=data.get("classes"),
                metrics=dict(data.get("metrics", {})),
                lineage=dict(data.get("lineage", {})),
                gates=list(data.get("gates", [])),
                entity_state=tuple(EntitySpec.from_json(e, str(where)) for e in data.get("entity_state", [])),
                fused=data.get("fused"),
                fused_refused=data.get("fused_refused"),
            )
        except (KeyError, TypeError) as exc:
            raise BundleError(f"{where}: manifest is missing or has a malformed field: {exc}") from exc


def check_relations(manifest: BundleManifest, where: Path) -> None:
    """Refuse relation names that are not plain identifiers, frozen tables outside
    ``tables/<name>.parquet`` and names used twice (they would shadow each other)."""
    where_manifest = str(where / MANIFEST)
    for name, rel in manifest.frozen_tables.items():
        check_identifier(name, where_manifest, "frozen_tables key")
        if rel != f"tables/{name}.parquet":
            raise BundleError(f"{where_manifest}: frozen_tables[{name!r}] is {rel[:80]!r}, expected "
                              f"'tables/{name}.parquet'; rebuild the bundle with `python orchestrate.py`")
    events = [check_identifier(e.relation, where_manifest, "entity_state relation") for e in manifest.entity_state]
    names = [REQUEST_RELATION, *manifest.frozen_tables, *events]
    if dupes := sorted({n for n in names if names.count(n) > 1}):
        raise BundleError(f"{where_manifest}: relation names {dupes} are used twice (request, frozen_tables, "
                          "entity_state relations must differ); rename the dbt model and rebuild the bundle")


def relation_names(manifest: BundleManifest) -> set[str]:
    """The relations serving.sql may read besides ``request``: frozen tables and entity events."""
    return {*manifest.frozen_tables, *(e.relation for e in manifest.entity_state)}


def content_digest(files: dict[str, bytes], manifest_without_id: dict[str, Any]) -> str:
    """sha256 over the files (by relative path) and the manifest minus its ``bundle_id``."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    h.update(canonical_json(manifest_without_id))
    return h.hexdigest()


def canonical_json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


@dataclass(frozen=True)
class Bundle:
    """A bundle read from disk and verified against its id."""

    path: Path
    manifest: BundleManifest
    model_bytes: bytes
    serving_sql: str
    tables: dict[str, pa.Table]
    fused_bytes: bytes | None = None
    """The fused model (features compiled into ONNX in front of the model), if it compiled."""

    @property
    def fused_verified(self) -> bool:
        """True when the bundle holds a fused model: one is sealed in only after it loaded, ran and
        matched the SQL path (``training.fused_parity``), so the served path is in the content
        hash and the gate report, outside it, decides nothing."""
        return bool(self.fused_bytes) and self.manifest.fused is not None


def load_bundle(path: Path) -> Bundle:
    """Read and verify a bundle directory; raise ``BundleError`` saying what is wrong."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{path}: not a model bundle (no {MANIFEST}); pass a bundle directory or a registry")
    try:
        raw = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"{manifest_path}: unreadable manifest: {exc}") from exc
    manifest = BundleManifest.from_json(raw, path)
    check_relations(manifest, path)

    expected = {MODEL_FILE, SQL_FILE, *manifest.frozen_tables.values(), *([FUSED_FILE] if manifest.fused else [])}
    present = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()} - {MANIFEST, GATE_REPORT}
    if missing := expected - present:
        raise BundleError(f"{path}: bundle is missing {sorted(missing)}")
    if extra := present - expected:
        raise BundleError(f"{path}: bundle holds files its manifest does not name: {sorted(extra)}; refusing to load")
    files = {name: (path / name).read_bytes() for name in sorted(expected)}
    body = {k: v for k, v in raw.items() if k != "bundle_id"}
    digest = content_digest(files, body)
    if digest != manifest.bundle_id:
        raise BundleError(
            f"{path}: contents do not match bundle id {manifest.bundle_id[:12]} (digest {digest[:12]}); "
            "the bundle was modified or is corrupt. Rebuild it with `python orchestrate.py`."
        )
    check_no_external_data(files[MODEL_FILE], str(path))
    try:
        serving_sql = files[SQL_FILE].decode()
    except UnicodeDecodeError as exc:
        raise BundleError(f"{path / SQL_FILE}: serving.sql is not UTF-8 text ({exc}); rebuild the bundle") from None
    check_feature_sql(serving_sql, relation_names(manifest), str(path / SQL_FILE))
    if manifest.fused:
        check_no_external_data(files[FUSED_FILE], str(path / FUSED_FILE))
    if (path / GATE_REPORT).is_file():
        try:
            manifest = dataclasses.replace(manifest, gates=json.loads((path / GATE_REPORT).read_text()))
        except json.JSONDecodeError as exc:
            raise BundleError(f"{path / GATE_REPORT}: unreadable gate report: {exc}") from exc
    tables = {}
    for name, rel in manifest.frozen_tables.items():
        try:
            tables[name] = pq.read_table(pa.BufferReader(files[rel]))
        except pa.ArrowException as exc:
            raise BundleError(f"{path / rel}: frozen table {name!r} is not readable Parquet: {exc}") from exc
    return Bundle(path, manifest, files[MODEL_FILE], serving_sql, tables,
                  files[FUSED_FILE] if manifest.fused else None)


def write_gate_report(path: Path, results: list[dict[str, Any]]) -> None:
    """Write (atomically replace) the gate report beside a sealed bundle."""
    tmp = path / f".{GATE_REPORT}.tmp"
    tmp.write_text(json.dumps(results, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path / GATE_REPORT)
