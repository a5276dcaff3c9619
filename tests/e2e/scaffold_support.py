"""Shared by the ``orchestrate.py init`` e2e tests (one dataset shape per test file, so xdist's
``--dist loadfile`` spreads them): init on a seeded landing folder, the pipeline run, and the
check that every serving path scores held-out records as the warehouse does offline."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import httpx
import numpy as np
import pyarrow as pa
import yaml

from orchestration.landing_layout import partition_day, partition_files, scan_sql
from serving import Predictor
from serving.bundle import FUSED_GATE, GATE_REPORT, Bundle, load_bundle
from serving.predictor import ModelScorer
from serving.registry import resolve_bundle_path
from tests.conftest import run_orchestrator
from tests.e2e.serverproc import start_server
from training.dbt_manifest import feature_spec, load_manifest

FIRST_DAY = dt.date(2026, 5, 1)
DAYS = 12
TOLERANCE = 1e-5
"""Served against offline scores: both run the same ONNX model on float32 features."""


@dataclass(frozen=True)
class Scaffolded:
    """A project made by ``init`` and run once by ``orchestrate.py``."""

    root: Path
    config: Path
    init_stdout: str
    run_stdout: str

    @property
    def registry(self) -> Path:
        return self.root / "artifacts" / "registry"

    def bundle(self) -> Bundle:
        return load_bundle(resolve_bundle_path(self.registry))


def days() -> list[dt.date]:
    return [FIRST_DAY + dt.timedelta(days=d) for d in range(DAYS)]


def scaffold_and_run(root: Path, landing: Path, *init_args: str) -> Scaffolded:
    """``orchestrate.py init --landing LANDING --out ROOT/project ARGS``, then the pipeline on its config."""
    out = root / "project"
    started = time.monotonic()
    init = run_orchestrator("init", "--landing", str(landing), "--out", str(out), *init_args)
    assert init.returncode == 0, init.stdout + init.stderr
    config = out / "pipeline.yml"
    assert str(root) not in config.read_text(), "the generated config holds an absolute path"
    run = run_orchestrator("--config", str(config), timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr
    print(f"init + first run: {time.monotonic() - started:.1f} s")
    print(run.stdout[run.stdout.rindex("pipeline finished"):])
    return Scaffolded(out, config, init.stdout, run.stdout)


def generated_files(run: Scaffolded) -> list[str]:
    return sorted(str(p.relative_to(run.root)) for p in run.root.rglob("*") if p.is_file()
                  and not any(part in ("target", "logs", "artifacts", "data") for part in p.relative_to(run.root).parts))


def held_out_records(run: Scaffolded, rows: int = 60) -> list[dict[str, Any]]:
    """Request records from the last landed day, label dropped, as JSON would carry them."""
    bundle = run.bundle()
    fields = bundle.manifest.input_schema
    cfg = yaml.safe_load(run.config.read_text())
    table = cfg["dbt"]["source"].split(".", 1)[1]
    files = [p for p in partition_files((run.config.parent / cfg["paths"]["landing"]).resolve(), table)
             if partition_day(p) == days()[-1]]
    names = ", ".join('"' + f.name.replace('"', '""') + '"' for f in fields)
    with duckdb.connect() as con:
        con.execute("set TimeZone = 'UTC'")
        records = con.execute(f"select {names} from {scan_sql(files, {f.name: f.type for f in fields})} "
                              f"limit {rows}").fetch_arrow_table().to_pylist()
    for record in records:
        for name, value in record.items():
            if isinstance(value, dt.datetime):
                record[name] = value.isoformat()
    return records


def warehouse_scores(run: Scaffolded, bundle: Bundle, records: list[dict[str, Any]]) -> np.ndarray:
    """The offline scores: each record's features mart row (found by the key serving computes),
    through the bundle's model."""
    manifest = load_manifest(run.root / "artifacts" / "dbt" / "target" / "manifest.json")
    spec = feature_spec(manifest, yaml.safe_load(run.config.read_text())["dbt"]["features_model"])
    predictor = Predictor(bundle, path="sql", record=False)
    try:
        keys = predictor.features(records).column(spec.key).to_pylist()
    finally:
        predictor.close()
    columns = ", ".join(f'm."{c}"' for c in spec.features)
    with duckdb.connect(str(run.root / "data" / "warehouse.duckdb"), read_only=True) as con:
        con.register("wanted", pa.table({"k": keys, "i": np.arange(len(keys))}))
        table = con.execute(
            f'select w.k, {columns} from wanted w join (select * from {spec.relation} qualify row_number() over '
            f'(partition by "{spec.key}") = 1) m on m."{spec.key}" = w.k order by w.i').fetch_arrow_table()
    assert table.column(0).to_pylist() == keys, "held-out records missing from the features mart"
    matrix = np.column_stack([table.column(1 + j).to_numpy(zero_copy_only=False).astype(np.float64)
                              for j in range(len(spec.features))]).astype(np.float32)
    return ModelScorer(bundle).scores(matrix)


def _http_scores(task: str, predictions: list[dict[str, Any]], classes: list[Any] | None) -> np.ndarray:
    if task == "regression":
        return np.array([p["prediction"] for p in predictions])
    if task == "multiclass":
        return np.array([[p["probabilities"][str(c)] for c in classes or []] for p in predictions])
    return np.array([p["score"] for p in predictions])


def fused_gate(bundle: Bundle) -> dict[str, Any]:
    report = json.loads((bundle.path / GATE_REPORT).read_text())
    (gate,) = [g for g in report if str(g.get("name", g.get("gate", ""))).startswith(FUSED_GATE)]
    return gate


def assert_every_path_scores_as_the_warehouse(run: Scaffolded, tmp_path: Path, *, fused: bool,
                                              check: Callable[[dict[str, Any]], None] = lambda _: None) -> None:
    """HTTP (a real server on 127.0.0.1), in-process (Predictor) and, when ``fused``, the fused
    path, each equal to the warehouse's offline score; the gate report says which path serves."""
    bundle = run.bundle()
    records = held_out_records(run)
    offline = warehouse_scores(run, bundle, records)
    gate = fused_gate(bundle)
    assert ("switched off" not in json.dumps(gate)) is fused, gate
    assert (bundle.manifest.fused is not None) is fused, bundle.manifest.fused_refused
    for path in ("sql", *(["fused"] if fused else [])):
        predictor = Predictor(bundle, path=path, record=False)
        try:
            assert predictor.feature_path == path
            np.testing.assert_allclose(predictor.predict(records).scores, offline, rtol=TOLERANCE, atol=TOLERANCE,
                                       err_msg=f"the {path} path differs from the warehouse")
        finally:
            predictor.close()
    server = start_server("--registry", str(run.registry), "--prediction-logs", str(tmp_path / "logs"),
                          "--no-record", work=tmp_path / "server")
    try:
        with httpx.Client(base_url=server.base, timeout=30) as http:
            metadata = http.get("/metadata").json()
            assert metadata["feature_path"] == ("fused" if fused else "sql")
            openapi = http.get("/openapi.json").json()
            assert "Traceback" not in server.output()
            batch = http.post("/predict", json={"records": records})
            assert batch.status_code == 200, batch.text
            single = http.post("/predict", json=records[0])
            assert single.status_code == 200, single.text
            check(openapi)
    finally:
        server.stop()
    task = bundle.manifest.task
    served = _http_scores(task, batch.json()["predictions"], bundle.manifest.classes)
    np.testing.assert_allclose(served, offline, rtol=TOLERANCE, atol=TOLERANCE, err_msg="HTTP differs from the warehouse")
    np.testing.assert_allclose(_http_scores(task, [single.json()], bundle.manifest.classes)[0], offline[0],
                               rtol=TOLERANCE, atol=TOLERANCE)
