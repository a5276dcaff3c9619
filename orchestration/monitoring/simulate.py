"""``python orchestrate.py simulate --days N [--drift KIND ...]``: play days forward.

Each simulated day D (the day after the newest one generated so far):

1. the day's transactions are generated (seeded by the day, same size as a demo day), with the
   requested drift applied, and held in ``<artifacts>/simulation/pending/`` with their labels;
2. the day's traffic is replayed through the real server (``python -m serving`` on 127.0.0.1,
   serving the registry's champion, hot-reloading new ones), which logs every prediction to
   ``<artifacts>/prediction_logs/``;
3. labels arrive late: a pending day's partition (which carries ``is_fraud``) moves into the
   landing folder ``monitoring.label_delay_days`` days after its traffic was served;
4. the pipeline runs: ingest, validation, publish, monitor, retrain_policy, and train..deploy
   when the policy fires; every step is in ``monitoring.simulation_days`` and in the report.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from orchestration import demo_data
from orchestration.config import PipelineConfig
from orchestration.monitoring.errors import SimulationError
from orchestration.monitoring.replay import prediction_logs_dir
from serving import registry
from training.warehouse import connect_warehouse

DRIFTS = {
    "country-mix": "half of the day's transactions come from Brazil (country BR, currency BRL)",
    "channel-mix": "70% of the day's transactions are online",
    "amount-shift": "every amount is 20% higher",
}
BATCH = 500
DDL = """
create schema if not exists monitoring;
create table if not exists monitoring.simulation_days (
    simulated_at timestamp not null, day date not null, drift varchar[], served_rows bigint, landed_days date[],
    run_id varchar, exit_code integer, retrain_fired boolean, champion_id varchar
);
"""


@dataclass(frozen=True)
class SimulationOptions:
    """What to simulate."""

    days: int
    """Number of days to play forward (1 to 60)."""
    drifts: tuple[str, ...] = ()
    """Drift kinds (``DRIFTS``) applied to every simulated day."""

    def __post_init__(self) -> None:
        if not 1 <= self.days <= 60:
            raise SimulationError(f"--days must be between 1 and 60, got {self.days}")
        unknown = [d for d in self.drifts if d not in DRIFTS]
        if unknown:
            raise SimulationError(f"unknown drift kind(s) {unknown}; expected some of {sorted(DRIFTS)}")


def apply_drift(table: pa.Table, kinds: tuple[str, ...], rng: np.random.Generator) -> pa.Table:
    """The day's table with each drift in ``kinds`` applied."""
    n = table.num_rows

    def put(t: pa.Table, name: str, values: pa.Array) -> pa.Table:
        i = t.schema.get_field_index(name)
        return t.set_column(i, t.schema.field(i), values.cast(t.schema.field(i).type))

    for kind in kinds:
        if kind == "country-mix":
            mask = pa.array(rng.random(n) < 0.5)
            table = put(table, "country_code", pc.if_else(mask, "BR", table.column("country_code")))
            table = put(table, "currency_code", pc.if_else(mask, "BRL", table.column("currency_code")))
        elif kind == "channel-mix":
            mask = pa.array(rng.random(n) < 0.7)
            table = put(table, "channel", pc.if_else(mask, "online", table.column("channel")))
        elif kind == "amount-shift":
            table = put(table, "amount", pc.round(pc.multiply(table.column("amount"), 1.2), 2))
    return table


def generate_day(cfg: PipelineConfig, day: dt.date, drifts: tuple[str, ...]) -> pa.Table:
    opts = cfg.demo_data
    seed = opts.seed * 100_003 + day.toordinal()
    with tempfile.TemporaryDirectory() as tmp:
        # Same population sizes as the demo data (users, merchants scale with rows); keep the first day.
        paths = demo_data.generate(Path(tmp), demo_data.DemoDataOptions(rows=opts.rows, days=opts.days, seed=seed,
                                                                        start_date=day))
        table = pq.read_table(paths[0])
    # Transaction ids must not collide with earlier days'.
    ids = pc.binary_join_element_wise(pa.scalar(f"sim{day:%Y%m%d}_"), table.column("txn_id"), "")
    table = table.set_column(0, table.schema.field(0), ids)
    return apply_drift(table, drifts, np.random.default_rng(seed))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The real model server in a subprocess on 127.0.0.1, serving the registry's champion."""

    def __init__(self, cfg: PipelineConfig, workers: int = 1) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        log = cfg.artifacts / "simulation" / "server.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        self._out = open(log, "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "serving", "--registry", str(cfg.registry), "--prediction-logs",
             str(prediction_logs_dir(cfg)), "--host", "127.0.0.1", "--port", str(self.port), "--reload-interval", "0.5",
             "--store", cfg.online_store_url, "--workers", str(workers),
             "--no-auth"],  # the pipeline's own replay, on 127.0.0.1, for as long as the simulation runs
            stdout=self._out, stderr=subprocess.STDOUT)
        self.wait_for(lambda meta: True, timeout=60, what="the server to become ready")

    def _get(self, path: str) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=5) as r:
                return r.status, json.loads(r.read() or b"{}")
        except (OSError, ValueError):
            return 0, {}

    def wait_for(self, ok: Callable[[dict], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SimulationError(f"the model server exited (code {self.proc.returncode}); see {self._out.name}")
            status, meta = self._get("/metadata") if self._get("/ready")[0] == 200 else (0, {})
            if status == 200 and ok(meta):
                return
            time.sleep(0.2)
        raise SimulationError(f"timed out after {timeout:g}s waiting for {what}; see {self._out.name}")

    def predict(self, records: list[dict]) -> None:
        body = json.dumps({"records": records}, default=str).encode()
        req = urllib.request.Request(self.base + "/predict", data=body, headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            if r.status != 200:
                raise SimulationError(f"the server answered {r.status} to a replayed batch")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._out.close()


def _serve(server: Server, table: pa.Table) -> int:
    inputs = table.drop_columns(["is_fraud"])
    records = inputs.to_pylist()
    for r in records:
        r["txn_ts"] = r["txn_ts"].isoformat() + "Z"
    for start in range(0, len(records), BATCH):
        server.predict(records[start:start + BATCH])
    return len(records)


def simulate(cfg: PipelineConfig, opts: SimulationOptions, run_pipeline: Callable[[], tuple[str, int]],
             echo: Callable[[str], None]) -> int:
    """Play ``opts.days`` days forward; ``run_pipeline`` runs the whole pipeline and returns (run id, exit code)."""
    if registry.read_champion(cfg.registry) is None:
        echo("simulate: no champion yet: running the pipeline once to train and deploy one")
        _, code = run_pipeline()
        if code != 0 or registry.read_champion(cfg.registry) is None:
            raise SimulationError("the first pipeline run did not deploy a champion; fix the failure above and rerun")
    pending = cfg.artifacts / "simulation" / "pending"
    landed_days = sorted(dt.date.fromisoformat(p.stem) for p in (cfg.landing / "transactions").glob("*.parquet"))
    held = sorted(dt.date.fromisoformat(p.stem) for p in pending.glob("*.parquet"))
    if not landed_days:
        raise SimulationError(f"no partitions in {cfg.landing / 'transactions'}; run `python orchestrate.py` first")
    next_day = max(landed_days + held) + dt.timedelta(days=1)
    server = Server(cfg)
    worst = 0
    try:
        for step in range(opts.days):
            day = next_day + dt.timedelta(days=step)
            table = generate_day(cfg, day, opts.drifts)
            pending.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, pending / f"{day}.parquet")
            champion = registry.read_champion(cfg.registry)["bundle_id"]
            server.wait_for(lambda meta: meta.get("model_id") == champion, timeout=60, what=f"champion {champion[:12]}")
            served = _serve(server, table)
            echo(f"simulate {day}: served {served:,} transactions through {server.base} (model {champion[:12]})"
                 + (f", drift {', '.join(opts.drifts)}" if opts.drifts else ""))
            arrived = []
            for path in sorted(pending.glob("*.parquet")):
                if dt.date.fromisoformat(path.stem) <= day - dt.timedelta(days=cfg.monitoring.label_delay_days):
                    target = demo_data.partition_path(cfg.landing, dt.date.fromisoformat(path.stem))
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.move(str(path), target)
                    arrived.append(dt.date.fromisoformat(path.stem))
            echo(f"simulate {day}: labelled partitions landed: {', '.join(map(str, arrived)) or 'none yet'}")
            run_id, code = run_pipeline()
            worst = max(worst, code)
            after = registry.read_champion(cfg.registry)["bundle_id"]
            with connect_warehouse(cfg.warehouse) as con:
                con.execute(DDL)
                fired = con.execute("select fire from monitoring.retrain_decisions where run_id = ?", [run_id]).fetchone()
                con.execute("insert into monitoring.simulation_days values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            [dt.datetime.now(dt.timezone.utc).replace(tzinfo=None), day, list(opts.drifts), served,
                             arrived, run_id, code, fired[0] if fired else None, after])
            echo(f"simulate {day}: pipeline run {run_id} exit {code}; retrain "
                 f"{'fired' if fired and fired[0] else 'not fired'}; champion {after[:12]}")
    finally:
        server.stop()
    return worst


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``simulate`` on the CLI's subparsers."""
    p = sub.add_parser("simulate", help="play days forward: new data lands, traffic is served, labels arrive late, "
                                        "monitoring runs, the policy decides",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # SUPPRESS: the top-level parser holds the defaults (see orchestration/cli.py build_parser).
    p.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="pipeline config (default: pipeline.yml)")
    p.add_argument("--days", type=str, required=True, help="number of days to simulate (1 to 60)")
    p.add_argument("--drift", action="append", default=[], metavar="KIND",
                   help="drift to inject into every simulated day (repeatable): "
                        + "; ".join(f"{k}: {v}" for k, v in DRIFTS.items()).replace("%", "%%"))
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="print tracebacks of internal errors")
    return p


def parse_options(args: argparse.Namespace) -> SimulationOptions:
    """Options from the command line; a bad value raises SimulationError naming it."""
    try:
        days = int(args.days)
    except ValueError:
        raise SimulationError(f"--days must be a whole number of days, got {args.days!r}") from None
    return SimulationOptions(days=days, drifts=tuple(args.drift))


def main(args: argparse.Namespace, cfg: PipelineConfig, run_pipeline: Callable[[], tuple[str, int]]) -> int:
    """The ``simulate`` command: one-line errors. ``run_pipeline`` runs the DAG once (which writes
    the report) and returns its run id and exit code."""
    try:
        opts = parse_options(args)
        return simulate(cfg, opts, run_pipeline, lambda m: print(m, flush=True))
    except SimulationError as exc:
        print(f"orchestrate simulate: {exc}", file=sys.stderr)
        return 2 if "--" in str(exc) or "drift kind" in str(exc) else 1
