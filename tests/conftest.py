"""Shared fixtures: a small seeded pipeline run, done once per test session and reused."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SMALL_ROWS = 20_000
SMALL_DAYS = 20


def write_config(root: Path, **overrides: object) -> Path:
    """A pipeline config for a small, fast run with all state under ``root``."""
    cfg = {
        "paths": {"warehouse": str(root / "warehouse.duckdb"), "landing": str(root / "landing"),
                  "artifacts": str(root / "artifacts")},
        "demo_data": {"generate_if_empty": True, "rows": SMALL_ROWS, "days": SMALL_DAYS, "seed": 7},
        "dbt": {"project_dir": str(REPO / "dbt_project")},
        "model": {"family": "hist_gradient_boosting", "params": {"max_iter": 40, "max_leaf_nodes": 15}},
        # Functional tests share 2 cores with other tests; latency is measured in bench/, and the
        # latency gate's blocking is tested on its own with a tiny budget.
        "gates": {"max_p99_latency_ms": 5000, "latency_samples": 50},
        # As pipeline.yml: the landed fields whose drift can trigger a retrain.
        "monitoring": {"important_features": ["amount", "merchant_category", "country_code", "channel"]},
    }
    for key, value in overrides.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    path = root / "pipeline.yml"
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_orchestrator(*args: str, cwd: Path = REPO, timeout: float = 300,
                     env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python orchestrate.py *args``; ``env``: variables added (a fault to inject, say)."""
    env = {**{k: v for k, v in os.environ.items() if k not in ("WAREHOUSE_PATH", "LANDING_PATH", "ARTIFACTS_PATH")},
           **(env or {})}
    return subprocess.run([sys.executable, str(REPO / "orchestrate.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@dataclass(frozen=True)
class PipelineRun:
    root: Path
    config: Path
    result: subprocess.CompletedProcess[str]

    @property
    def registry(self) -> Path:
        return self.root / "artifacts" / "registry"

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def landing(self) -> Path:
        return self.root / "landing"


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory) -> PipelineRun:
    """``python orchestrate.py`` on 20k generated rows, end to end, once per session."""
    root = tmp_path_factory.mktemp("pipeline")
    config = write_config(root)
    result = run_orchestrator("--config", str(config))
    assert result.returncode == 0, f"pipeline failed:\nSTDOUT:\n{result.stdout}\nSTDERR:\n{result.stderr}"
    return PipelineRun(root, config, result)


@pytest.fixture(scope="session")
def raw_records(pipeline_run: PipelineRun) -> list[dict]:
    """Raw landing records (label dropped) from the last landed day, as a client would send them."""
    import pyarrow.parquet as pq

    last = sorted((pipeline_run.landing / "transactions").glob("*.parquet"))[-1]
    table = pq.read_table(last).drop_columns(["is_fraud"]).slice(0, 200)
    records = table.to_pylist()
    for r in records:
        r["txn_ts"] = r["txn_ts"].isoformat()
    return records


def derive_bundle(registry: Path, source: str | None = None, **changes: object) -> str:
    """Write a copy of bundle ``source`` (default: the champion) with manifest fields changed; return its id.

    Goes through ``training.bundle.write_bundle`` so the copy is a valid, correctly addressed bundle.
    """
    from serving.bundle import load_bundle
    from serving.registry import bundles_dir, resolve_bundle_path
    from training.bundle import bundle_manifest_fields, write_bundle

    bundle = load_bundle(bundles_dir(registry) / source if source else resolve_bundle_path(registry))
    fields = {k: v for k, v in bundle.manifest.__dict__.items() if k not in ("bundle_id", "frozen_tables")}
    bundle_id, _ = write_bundle(bundles_dir(registry), model_bytes=bundle.model_bytes, serving_sql=bundle.serving_sql,
                                tables=bundle.tables, manifest=bundle_manifest_fields(**{**fields, **changes}),
                                fused_bytes=bundle.fused_bytes)
    return bundle_id


@pytest.fixture
def registry_copy(pipeline_run: PipelineRun, tmp_path: Path) -> Path:
    """A private copy of the session registry, for tests that promote or corrupt bundles."""
    import shutil

    return Path(shutil.copytree(pipeline_run.registry, tmp_path / "registry"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--long", action="store_true", default=False,
                     help="run the long variants (the fused compiler's differential fuzzer for minutes)")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``redis-server`` on 127.0.0.1 (a free port), for the Redis online store."""
    import shutil
    import socket
    import time

    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed: scripts/test installs it (apt-get install -y redis-server)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    work = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(work)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)
