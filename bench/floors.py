"""What the runtimes cost before any feature is computed: the floors under the speed targets.

    python orchestrate.py           # once: a champion (with a fused model)
    python bench/floors.py [--registry artifacts/registry] [--landing data/landing]

Measured in one run on the champion, each next to the figure it bounds:

- DuckDB, in the serving feature engine's own locked-down database (one thread): an empty query,
  a scan of a one-row request, and the bundle's feature SQL on one row, split by DuckDB's
  profiler into binding, optimizing and the rest, then as a prepared statement over a one-row
  temporary table (no binding or optimizing per call). Issue 3's single-record target is 1 ms.
- The model alone on 10,000 feature rows next to the feature SQL on the same rows: the SQL path's
  10,000-record batch is at least their sum (issue 3's target: 50 ms).
- ONNX Runtime, one thread: the model alone on one row; a graph with the fused model's raw inputs
  and a single node (the price of feeding one input per raw field); the cost of one more node
  (chains of 10 and 60 additions); the fused graph itself. Issue 10's target is 30 us, or three
  times the model alone. Then 10,000 rows through the fused graph and the model alone, and the
  model alone on every core: the fused graph holds the same trees, so it cannot go faster
  (issue 10's target: 1,000,000 rows/s).

Prints one table; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import onnx
import onnxruntime as ort
import pyarrow.parquet as pq
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.timing import entity_inputs, session, timings  # noqa: E402
from serving.bundle import load_bundle  # noqa: E402
from serving.features import FeatureEngine  # noqa: E402
from serving.fused import encode_inputs  # noqa: E402
from serving.registry import resolve_bundle_path  # noqa: E402
from serving.schema import arrow_to_request_table  # noqa: E402

from training.fused.compiler import ONNX_TYPES as _ONNX_TYPES  # noqa: E402 (the fused graph's input types)


def p50(run: Callable[[], object], repeat: int) -> float:
    """Median seconds of ``run`` after a warm-up."""
    return float(np.median(timings(run, repeat)))


def graph_bytes(nodes: list, inputs: list, output: str, output_type: int, initializers: tuple = (),
                opset: int = 17) -> bytes:
    graph = helper.make_graph(nodes, "floor", inputs, [helper.make_tensor_value_info(output, output_type, [None])],
                              list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()


def add_chain(length: int) -> bytes:
    nodes, last = [], "x"
    for i in range(length):
        nodes.append(helper.make_node("Add", [last, "one"], [f"y{i}"]))
        last = f"y{i}"
    return graph_bytes(nodes, [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [None])], last, TensorProto.DOUBLE,
                       (helper.make_tensor("one", TensorProto.DOUBLE, [1], [1.0]),))


def duckdb_profile(cursor, sql: str) -> dict[str, float]:
    """DuckDB's own split of one run of ``sql``: binding, optimizing, total latency (seconds)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "profile.json"
        cursor.execute("pragma enable_profiling = 'json'")
        cursor.execute("pragma profiling_mode = 'detailed'")
        cursor.execute(f"pragma profiling_output = '{out}'")
        cursor.execute(sql).fetchall()
        cursor.execute("pragma disable_profiling")
        profile = json.loads(out.read_text())
    return {"binding": profile["planner_binding"], "optimizer": profile["all_optimizers"], "latency": profile["latency"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--registry", type=Path, default=Path("artifacts/registry"))
    parser.add_argument("--landing", type=Path, default=Path("data/landing"))
    parser.add_argument("--repeat", type=int, default=2000, help="repetitions of each sub-millisecond measure (default 2000)")
    args = parser.parse_args(argv)
    bundle = load_bundle(resolve_bundle_path(args.registry))
    fields = bundle.manifest.input_schema
    raw = pq.read_table(sorted((args.landing / "transactions").glob("*.parquet"))[-1], columns=[f.name for f in fields])
    request = arrow_to_request_table(raw.slice(0, 10_000), fields)
    one = request.slice(0, 1)
    rows: list[tuple[str, str]] = []
    slow = max(5, args.repeat // 100)

    # DuckDB: an unlocked copy of the serving database (same frozen tables, one thread), so the
    # profiler and a temporary table can be used; the locked engine runs the same queries.
    engine = FeatureEngine.for_bundle(bundle)
    relations, event_feeds = entity_inputs(bundle, request)
    one_relations, one_events = entity_inputs(bundle, one)
    db = duckdb.connect(":memory:", config={"threads": 1})
    for name, table in bundle.tables.items():
        db.register("__frozen", table)
        db.execute(f'create table "{name}" as select * from __frozen')
        db.unregister("__frozen")
    db.register("request", one)
    for name, table in one_relations.items():
        db.register(name, table)
    ms = lambda s: f"{s * 1e3:.3f} ms"  # noqa: E731
    rows.append(("DuckDB: select 1", ms(p50(lambda: db.execute("select 1").fetchall(), args.repeat // 4))))
    rows.append(("DuckDB: scan a one-row request", ms(p50(lambda: db.execute("select * from request").fetchall(), args.repeat // 4))))
    rows.append(("SQL path: feature SQL, one row (the engine)", ms(p50(lambda: engine.features_table(one, one_relations), slow * 4))))
    prof = duckdb_profile(db, bundle.serving_sql)
    rows.append(("  of which binding / optimizing (DuckDB profiler)", f"{ms(prof['binding'])} / {ms(prof['optimizer'])}"))
    db.execute("create temp table request_rows as select * from request")
    db.execute("prepare features_of_rows as " + bundle.serving_sql.replace("from request", "from request_rows"))
    rows.append(("  as a prepared statement (plan reused)", ms(p50(lambda: db.execute("execute features_of_rows").fetchall(), slow * 4))))
    cols = ", ".join("?" for _ in one.column_names)
    values = [one.column(c)[0].as_py() for c in one.column_names]

    def insert_one() -> None:
        db.execute("delete from request_rows")
        db.execute(f"insert into request_rows values ({cols})", values)

    rows.append(("  plus putting the record in its table", ms(p50(insert_one, slow * 4))))

    model = session(bundle.model_bytes)
    model_input = model.get_inputs()[0].name
    matrix = engine.feature_matrix(engine.features_table(request, relations))
    sql_10k = p50(lambda: engine.features_table(request, relations), slow)
    model_10k = p50(lambda: model.run(None, {model_input: matrix}), slow)
    rows.append(("SQL path 10,000 rows: feature SQL + model alone", f"{ms(sql_10k)} + {ms(model_10k)} = {ms(sql_10k + model_10k)}"))
    engine.close()
    db.close()

    us = lambda s: f"{s * 1e6:.1f} us"  # noqa: E731
    model_one = p50(lambda: model.run(None, {model_input: matrix[:1]}), args.repeat)
    rows.append(("ONNX Runtime: model alone, one row", us(model_one)))
    if bundle.fused_bytes is not None and bundle.manifest.fused is not None:
        by_name = {f.name: f for f in fields}
        fused_fields = [by_name[n] for n in bundle.manifest.fused["inputs"]]
        raw_feeds = encode_inputs(one, fused_fields)
        feeds = {**raw_feeds, **one_events}  # the fused graph also takes the entity's events
        first = fused_fields[0].name
        inputs_only = graph_bytes([helper.make_node("Identity", [first], ["out"])],
                                  [helper.make_tensor_value_info(f.name, _ONNX_TYPES[f.type], [None]) for f in fused_fields],
                                  "out", _ONNX_TYPES[fused_fields[0].type])
        feed_cost = p50(lambda s=session(inputs_only): s.run(None, raw_feeds), args.repeat)
        rows.append((f"  a graph of the fused inputs ({len(fused_fields)}) and one node", us(feed_cost)))
        x = np.zeros(1, dtype=np.float64)
        short, long_ = session(add_chain(10)), session(add_chain(60))
        per_node = (p50(lambda: long_.run(None, {"x": x}), args.repeat) - p50(lambda: short.run(None, {"x": x}), args.repeat)) / 50
        rows.append(("  one more node (chains of 60 and 10 additions)", us(per_node)))
        fused = session(bundle.fused_bytes)
        graph = onnx.load_from_string(bundle.fused_bytes).graph
        feature_nodes = sum(1 for n in graph.node if n.domain != "ai.onnx.ml")
        fused_one = p50(lambda: fused.run(None, feeds), args.repeat)
        rows.append((f"  fused graph, one row ({feature_nodes} feature nodes)",
                     f"{us(fused_one)} = {fused_one / model_one:.1f}x the model alone"))
        one_input = graph_bytes([helper.make_node("Identity", ["x"], ["out"])],
                                [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, matrix.shape[1]])],
                                "out", TensorProto.FLOAT)
        call = p50(lambda s=session(one_input): s.run(None, {"x": matrix[:1]}), args.repeat)
        trees = max(model_one - call, 0.0)
        rows.append(("  floor: fused inputs + trees (model alone - a one-input call) + nodes x one node",
                     f"{us(feed_cost)} + {us(trees)} + {feature_nodes} x {us(per_node)} = "
                     f"{us(feed_cost + trees + feature_nodes * per_node)}"))
        all_feeds = {**encode_inputs(request, fused_fields), **event_feeds}
        fused_10k = p50(lambda: fused.run(None, all_feeds), slow)
        rows.append(("  10,000 rows: fused / model alone (rows/s)", f"{1e4 / fused_10k:,.0f} / {1e4 / model_10k:,.0f}"))
        cores = len(os.sched_getaffinity(0))
        if cores > 1:
            parallel = session(bundle.model_bytes, cores)
            model_parallel = p50(lambda: parallel.run(None, {model_input: matrix}), slow)
            rows.append((f"  10,000 rows: model alone on {cores} intra-op threads (rows/s)", f"{1e4 / model_parallel:,.0f}"))

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"machine: {os.cpu_count()} cores, {cpu}, duckdb {duckdb.__version__}, onnxruntime {ort.__version__}")
    print(f"model:   {bundle.manifest.bundle_id[:12]}, {len(bundle.manifest.feature_names)} features")
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
