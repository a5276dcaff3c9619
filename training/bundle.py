"""Write a model bundle: temporary directory, content digest, then an atomic rename into place."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from serving.bundle import FUSED_FILE, MANIFEST, MODEL_FILE, SQL_FILE, BundleManifest, content_digest


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def write_bundle(bundles_dir: Path, *, model_bytes: bytes, serving_sql: str, tables: dict[str, pa.Table],
                 manifest: BundleManifest, existing: tuple[Path, ...] = (),
                 fused_bytes: bytes | None = None,
                 before_rename: Callable[[], None] = lambda: None) -> tuple[str, Path]:
    """Write the bundle under ``bundles_dir/<bundle_id>`` and return (bundle_id, path).

    ``manifest.bundle_id`` and ``manifest.frozen_tables`` are filled in here. Writing the same
    contents twice yields the same id and leaves the existing bundle untouched; so does finding
    it already in one of the ``existing`` folders (e.g. published bundles), whose path is returned.
    """
    if (fused_bytes is None) != (manifest.fused is None):
        raise ValueError("write_bundle: manifest.fused and fused_bytes go together; pass both or neither")
    files = {MODEL_FILE: model_bytes, SQL_FILE: serving_sql.encode()}
    if fused_bytes is not None:
        files[FUSED_FILE] = fused_bytes
    frozen = {}
    for name, table in sorted(tables.items()):
        rel = f"tables/{name}.parquet"
        files[rel] = _parquet_bytes(table)
        frozen[name] = rel
    body = BundleManifest(**{**manifest.__dict__, "bundle_id": "", "frozen_tables": frozen}).to_json()
    body.pop("bundle_id")
    bundle_id = content_digest(files, body)
    for folder in existing:
        if (folder / bundle_id / MANIFEST).is_file():
            return bundle_id, folder / bundle_id
    final = bundles_dir / bundle_id
    if (final / MANIFEST).is_file():
        return bundle_id, final
    bundles_dir.mkdir(parents=True, exist_ok=True)
    # A writer killed mid-write leaves a .tmp- folder that no reader looks at; bundles have one
    # writer (the orchestrator), so any found now is such a leftover.
    for stale in bundles_dir.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = bundles_dir / f".tmp-{uuid.uuid4().hex}"
    try:
        for rel, data in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            with open(tmp / rel, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        with open(tmp / MANIFEST, "w") as fh:
            json.dump({"bundle_id": bundle_id, **body}, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        before_rename()
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return bundle_id, final


def bundle_manifest_fields(**fields: Any) -> BundleManifest:
    """A manifest whose id and frozen tables ``write_bundle`` fills in."""
    return BundleManifest(bundle_id="", frozen_tables={}, **fields)
