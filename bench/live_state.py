"""Live traffic against the warehouse: is what is served what the gates approved?

    python bench/live_state.py --config pipeline.yml --days 3 [--store embedded|redis] [--workers 2]

The pipeline's champion (the run is made first when there is none) serves ``--days`` new days of
transactions through the real HTTP server, one record per request, in event order, as live
traffic; after each day its partition (with labels) lands and the pipeline runs (ingest,
validation, publish, materialize, monitor; the retrain policy is held off so one champion serves
throughout). Then every served score is compared with what the same bundle's model gives on the
warehouse's point-in-time features for that transaction (``fct_transaction_features``), day by
day: the share equal within 1e-5, and ROC AUC of both. Prints a table and, with ``--out``, JSON.

It works on a copy of the config's state (``--work DIR``, a temporary folder by default), so the
config's warehouse, registry and store are left as they are. ``--store redis`` starts a real
``redis-server`` on 127.0.0.1 for the run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from orchestration.config import load_config  # noqa: E402
from orchestration.monitoring.simulate import Server, _free_port, generate_day  # noqa: E402
from serving.bundle import load_bundle  # noqa: E402
from serving.predictor import ModelScorer  # noqa: E402
from serving.prediction_log import logged_predictions  # noqa: E402
from serving.registry import read_champion, resolve_bundle_path  # noqa: E402
from training.dbt_manifest import feature_spec, load_manifest  # noqa: E402
from training.metrics import task_metrics  # noqa: E402

SCORE_ATOL = 1e-5


def _run(*args: str, config: Path) -> None:
    result = subprocess.run([sys.executable, str(REPO / "orchestrate.py"), *args, "--config", str(config)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"orchestrate.py {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def _work_config(source: Path, work: Path, store_url: str) -> Path:
    """A copy of the config with its state under ``work``, the split frozen where the champion's
    was (new days must not move the fitted statistics), and the retrain policy held off."""
    cfg = load_config(source)
    data = yaml.safe_load(source.read_text()) or {}
    shutil.copy(cfg.warehouse, work / "warehouse.duckdb")
    shutil.copytree(cfg.landing, work / "landing")
    shutil.copytree(cfg.artifacts, work / "artifacts", ignore=shutil.ignore_patterns("prediction_logs", "online_store"))
    champion = resolve_bundle_path(cfg.registry)
    split = load_bundle(champion).manifest.lineage["split"]
    data["paths"] = {"warehouse": str(work / "warehouse.duckdb"), "landing": str(work / "landing"),
                     "artifacts": str(work / "artifacts")}
    data["dbt"] = {**data.get("dbt", {}), "project_dir": str(cfg.dbt_project)}
    data["split"] = {"train_end": split["train_end"], "valid_end": split["valid_end"]}
    data["monitoring"] = {**data.get("monitoring", {}), "drift_psi_threshold": 1e9, "max_model_age_days": 100000,
                          "min_new_labelled_rows": 10**12, "max_auc_drop": 0.999}
    data["online_store"] = {"url": store_url}
    data["demo_data"] = {**data.get("demo_data", {}), "generate_if_empty": False}
    path = work / "pipeline.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def _serve_day(port: int, records: list[dict]) -> float:
    """One request per record, in order, on one connection; seconds taken."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    started = time.perf_counter()
    for record in records:
        conn.request("POST", "/predict", body=orjson.dumps(record), headers={"content-type": "application/json"})
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise SystemExit(f"the server answered {response.status}: {body[:300]!r}")
    conn.close()
    return time.perf_counter() - started


def compare(config: Path, days: list[dt.date]) -> list[dict]:
    """Per day: served scores against the bundle's model on the warehouse's point-in-time features."""
    cfg = load_config(config)
    spec = feature_spec(load_manifest(cfg.artifacts / "dbt" / "target" / "manifest.json"), cfg.dbt.features_model)
    served = {}
    for p in logged_predictions(sorted((cfg.artifacts / "prediction_logs").glob("*.jsonl"))):
        served[str(p["inputs"]["txn_id"])] = (p["model_id"], float(p["score"]))
    keys = list(served)
    columns = ", ".join(f'"{c}"' for c in spec.features)
    with duckdb.connect(str(cfg.warehouse), read_only=True) as con:
        con.register("keys", pa.table({"k": keys}))
        table = con.execute(f'select "{spec.key}", cast("{spec.timestamp}" as date), "{spec.label}", {columns} '
                            f'from {spec.relation} where "{spec.key}" in (select k from keys)').fetch_arrow_table()
    out = []
    bundles: dict[str, ModelScorer] = {}
    key_col, day_col, label_col = (table.column(i).to_pylist() for i in range(3))
    matrix = np.column_stack([table.column(3 + j).to_numpy(zero_copy_only=False).astype(np.float64)
                              for j in range(len(spec.features))]).astype(np.float32)
    for day in days:
        rows = [i for i, d in enumerate(day_col) if d == day]
        if not rows:
            continue
        model_ids = {served[key_col[i]][0] for i in rows}
        pit = np.empty(len(rows))
        for model_id in model_ids:
            scorer = bundles.setdefault(model_id, ModelScorer(load_bundle(cfg.registry / "bundles" / model_id)))
            idx = [j for j, i in enumerate(rows) if served[key_col[i]][0] == model_id]
            pit[idx] = scorer.scores(matrix[[rows[j] for j in idx]])
        got = np.array([served[key_col[i]][1] for i in rows])
        y = np.array([int(label_col[i]) for i in rows])
        auc = (lambda s: task_metrics("binary", y, np.column_stack([1 - s, s]))["roc_auc"]) if len(set(y)) == 2 else None
        out.append({"day": day.isoformat(), "served": len(rows), "models": len(model_ids),
                    "equal_share": float(np.mean(np.abs(got - pit) <= SCORE_ATOL)),
                    "served_roc_auc": auc(got) if auc else None, "point_in_time_roc_auc": auc(pit) if auc else None})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/live_state.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "pipeline.yml", help="the pipeline config (default: pipeline.yml)")
    parser.add_argument("--days", type=int, default=3, help="days of live traffic (default: 3)")
    parser.add_argument("--store", choices=("embedded", "redis"), default="embedded", help="online store (default: embedded)")
    parser.add_argument("--workers", type=int, default=1, help="server processes (default: 1)")
    parser.add_argument("--work", type=Path, help="folder for the copy of the state (default: a temporary one)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here too")
    args = parser.parse_args(argv)
    if read_champion(load_config(args.config).registry) is None:
        print("no champion yet: running the pipeline first", flush=True)
        _run(config=args.config)
    work = args.work or Path(tempfile.mkdtemp(prefix="live-state-"))
    work.mkdir(parents=True, exist_ok=True)
    redis = None
    try:
        if args.store == "redis":
            port = _free_port()
            redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no"], stdout=subprocess.DEVNULL)
            time.sleep(0.5)
            store_url = f"redis://127.0.0.1:{port}/0"
        else:
            store_url = "embedded:online_store"
        config = _work_config(args.config, work, store_url)
        print(f"live traffic on a copy of the state in {work} ({args.store} store, {args.workers} worker(s))", flush=True)
        _run("--only", "materialize", config=config)  # the store starts from the landed history
        cfg = load_config(config)
        newest = max(dt.date.fromisoformat(p.stem) for p in (cfg.landing / "transactions").glob("*.parquet"))
        server = Server(cfg, workers=args.workers)
        days = []
        try:
            for i in range(1, args.days + 1):
                day = newest + dt.timedelta(days=i)
                table = generate_day(cfg, day, ()).sort_by("txn_ts")
                records = table.drop_columns(["is_fraud"]).to_pylist()
                for r in records:
                    r["txn_ts"] = r["txn_ts"].isoformat() + "Z"
                seconds = _serve_day(server.port, records)
                print(f"{day}: served {len(records):,} records one at a time in {seconds:.1f} s "
                      f"({len(records) / seconds:,.0f} req/s); landing the day and running the pipeline", flush=True)
                pq.write_table(table, cfg.landing / "transactions" / f"{day}.parquet")
                _run(config=config)
                days.append(day)
        finally:
            server.stop()
        figures = compare(config, days)
    finally:
        if redis is not None:
            redis.terminate()
            redis.wait(timeout=10)
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{'day':<12}{'served':>8}  {'equal (1e-5)':>12}  {'served AUC':>10}  {'point-in-time AUC':>17}")
    for f in figures:
        auc = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
        print(f"{f['day']:<12}{f['served']:>8}  {f['equal_share']:>12.4%}  {auc(f['served_roc_auc']):>10}  "
              f"{auc(f['point_in_time_roc_auc']):>17}")
    result = {"store": args.store, "workers": args.workers, "days": figures}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
