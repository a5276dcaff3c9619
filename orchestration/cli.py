"""Command line of the pipeline: ``python orchestrate.py [run|demo-data] ...``."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
import traceback
import uuid
from pathlib import Path

import duckdb

from orchestration import demo_data, promotion
from orchestration.checks import record_alert
from orchestration.config import PipelineConfig, load_config
from orchestration.errors import ConfigError, StageError
from orchestration.context import RunContext
from orchestration.release import run_record
from orchestration.stages import STAGES, run_stages
from orchestration.monitoring import report as monitoring_report, simulate as monitoring_simulate
from serving.errors import RegistryError
from training import tracking


def _echo(message: str) -> None:
    print(message, flush=True)


def _summary(ctx: RunContext, done: list, seconds: float) -> str:
    by_stage = {name: summary for name, _, summary in done}
    m = ctx.state.get("metrics", {})
    lines = [
        "",
        "pipeline finished",
        f"  landed rows     {by_stage.get('ingest', {}).get('landed_rows', 0):,} in "
        f"{by_stage.get('ingest', {}).get('partitions', 0)} partitions",
        f"  feature rows    {by_stage.get('publish', {}).get('feature_rows', 0):,}",
    ]
    if "validate" in by_stage:
        v = by_stage["validate"]
        lines.append(f"  checks          {v['checks']} recorded: {v['passed']} passed, {v['warnings']} warnings "
                     "(validation.check_results)")
    for split in ("validation", "test"):
        if split in m:
            shown = {k: v for k, v in m[split].items() if k not in ("rows", "threshold", "positive_rate")}
            lines.append(f"  {split:<15} " + "  ".join(f"{k} {v:.4f}" for k, v in shown.items()))
    if "bundle_id" in ctx.state:
        lines.append(f"  deployed model  {ctx.state['bundle_id']}")
        lines.append(f"  bundle          {ctx.state['bundle_path']}")
    lines.append(f"  duration        {seconds:.1f}s")
    lines.append("  stages          " + ", ".join(f"{n} {s:.1f}s" for n, s, _ in done))
    return "\n".join(lines)


def _cmd_run(args: argparse.Namespace, cfg: PipelineConfig) -> int:
    started = time.perf_counter()
    ctx = RunContext(cfg=cfg, run_id=uuid.uuid4().hex[:12], echo=_echo)
    _echo(f"run {ctx.run_id}: warehouse {cfg.warehouse}, landing {cfg.landing}, registry {cfg.registry}")
    try:
        done = run_stages(ctx, STAGES)
    except StageError as exc:
        _track(ctx, str(exc))
        print(f"orchestrate: FAILED: {exc}", file=sys.stderr)
        _alert(ctx, exc)
        print("orchestrate: nothing was deployed; the current champion (if any) is unchanged", file=sys.stderr)
        return 1
    except Exception as exc:  # an unexpected bug: still one clear line, the traceback on request
        if args.debug:
            traceback.print_exc()
        print(f"orchestrate: FAILED with an internal error ({type(exc).__name__}): {exc}"
              + ("" if args.debug else " (rerun with --debug for the traceback)"), file=sys.stderr)
        return 1
    _track(ctx, None)
    _echo(_summary(ctx, done, time.perf_counter() - started))
    for warning in ctx.state.get("warnings", []):
        print(f"orchestrate: WARNING: {warning}", file=sys.stderr)
    return 0


def _track(ctx: RunContext, error: str | None) -> None:
    record = run_record(ctx, error)
    if record is not None:
        tracking.record_run(ctx.cfg.warehouse, record)


def _cmd_runs(args: argparse.Namespace, cfg: PipelineConfig) -> int:
    if not cfg.warehouse.exists():
        print(f"orchestrate runs: no warehouse at {cfg.warehouse}; run `python orchestrate.py` first", file=sys.stderr)
        return 1
    if args.compare:
        try:
            rows = tracking.compare_runs(cfg.warehouse, *args.compare)
        except LookupError as exc:
            print(f"orchestrate runs: {exc}", file=sys.stderr)
            return 1
        a, b = args.compare
        width = max(len(k) for k, _, _ in rows)
        _echo(f"{'':<{width}}  {a:<40}  {b}")
        for key, va, vb in rows:
            mark = " " if va == vb else "*"
            _echo(f"{key:<{width}}{mark} {str(va)[:40]:<40}  {str(vb)[:40]}")
        return 0
    runs = tracking.list_runs(cfg.warehouse, args.limit)
    if not runs:
        _echo("no training runs recorded yet")
        return 0
    _echo(f"{'run_id':<12}  {'recorded_at':<19}  {'status':<24}  {'task':<10}  {'family':<22}  {'test metric':>11}  bundle")
    for run_id, at, status, task, family, metric, bundle in runs:
        shown = f"{metric:.4f}" if metric is not None else "-"
        _echo(f"{run_id:<12}  {str(at)[:19]:<19}  {status[:24]:<24}  {task or '-':<10}  {family or '-':<22}  "
              f"{shown:>11}  {(bundle or '-')[:12]}")
    return 0


def _cmd_registry(args: argparse.Namespace, cfg: PipelineConfig) -> int:
    try:
        if args.command == "promote":
            record = promotion.manual_promote(cfg, args.bundle_id, args.reason)
        else:
            record = promotion.rollback(cfg, args.reason)
    except RegistryError as exc:
        print(f"orchestrate {args.command}: {exc}", file=sys.stderr)
        return 1
    _echo(f"champion is now {record['bundle_id']} (was {record['previous_bundle_id'] or 'none'}); "
          f"recorded: by {record['by']}, reason: {record['reason']}")
    return 0


def _alert(ctx: RunContext, exc: StageError) -> None:
    """Record the halt in validation.alerts; a warehouse that cannot take it is said, not hidden."""
    checks = exc.checks or (f"stage {exc.stage}",)
    try:
        record_alert(ctx.cfg.warehouse, ctx.run_id, stage=exc.stage, severity="error", checks=checks, message=str(exc))
    except (duckdb.Error, OSError) as err:
        print(f"orchestrate: the alert could not be recorded in {ctx.cfg.warehouse}: {err}", file=sys.stderr)
        return
    print(f"orchestrate: ALERT run {ctx.run_id}: {len(checks)} failing check(s): {', '.join(checks)} "
          "(recorded in validation.alerts)", file=sys.stderr)


def _cmd_demo_data(args: argparse.Namespace) -> int:
    try:
        start = dt.date(2026, 1, 1)
        fault = None
        if args.fault:
            day = args.fault_day or start + dt.timedelta(days=args.days - 1)
            fault = demo_data.Fault(args.fault, day)
        elif args.fault_day:
            raise ValueError("--fault-day needs --fault KIND")
        opts = demo_data.DemoDataOptions(rows=args.rows, days=args.days, seed=args.seed, start_date=start, fault=fault)
    except ValueError as exc:
        print(f"orchestrate demo-data: {exc}", file=sys.stderr)
        return 2
    paths = demo_data.generate(args.landing, opts)
    _echo(f"wrote {len(paths)} daily partitions to {args.landing / 'transactions'}")
    if fault:
        _echo(f"injected fault {fault.kind} on {fault.day}: {demo_data.FAULTS[fault.kind]}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchestrate.py",
        description="Run the pipeline: " + " -> ".join(s.name for s in STAGES) + ".",
        epilog="Stages:\n" + "\n".join(f"  {s.name:<10} {s.description}" for s in STAGES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command")

    def add_run_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", type=Path, default=Path("pipeline.yml"), help="pipeline config (default: pipeline.yml)")
        p.add_argument("--debug", action="store_true", help="print tracebacks of internal errors")

    add_run_args(parser)
    run = sub.add_parser("run", help="run every stage (the default command)")
    add_run_args(run)
    runs = sub.add_parser("runs", help="list training runs, or compare two side by side")
    runs.add_argument("--config", type=Path, default=Path("pipeline.yml"), help="pipeline config (default: pipeline.yml)")
    runs.add_argument("--limit", type=int, default=20, help="how many recent runs to list (default: 20)")
    runs.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"), help="compare two runs (id prefixes work)")
    prom = sub.add_parser("promote", help="make a bundle (or a kept candidate) the champion: a recorded manual override")
    prom.add_argument("bundle_id", help="bundle id or a unique prefix of it")
    prom.add_argument("--reason", required=True, help="why; recorded in the promotion history")
    prom.add_argument("--config", type=Path, default=Path("pipeline.yml"), help="pipeline config (default: pipeline.yml)")
    back = sub.add_parser("rollback", help="restore the previous champion (recorded)")
    back.add_argument("--reason", default="manual rollback", help="why; recorded in the promotion history")
    back.add_argument("--config", type=Path, default=Path("pipeline.yml"), help="pipeline config (default: pipeline.yml)")
    monitoring_simulate.add_parser(sub)  # monitoring (issue 9)
    demo = sub.add_parser("demo-data", help="write seeded demo partitions to a landing folder")
    demo.add_argument("--landing", type=Path, default=Path("data/landing"), help="landing folder (default: data/landing)")
    demo.add_argument("--rows", type=int, default=1_000_000, help="number of transactions (default: 1000000)")
    demo.add_argument("--days", type=int, default=60, help="number of daily partitions (default: 60)")
    demo.add_argument("--seed", type=int, default=7, help="random seed (default: 7)")
    demo.add_argument("--fault", choices=sorted(demo_data.FAULTS), metavar="KIND",
                      help="inject a fault into one day's partition: "
                           + "; ".join(f"{k}: {v}" for k, v in demo_data.FAULTS.items()).replace("%", "%%"))
    demo.add_argument("--fault-day", type=dt.date.fromisoformat, metavar="YYYY-MM-DD",
                      help="day of the faulty partition (default: the last generated day)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo-data":
        return _cmd_demo_data(args)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"orchestrate{' ' + args.command if args.command else ''}: bad config: {exc}", file=sys.stderr)
        return 2
    if args.command == "runs":
        return _cmd_runs(args, cfg)
    if args.command in ("promote", "rollback"):
        return _cmd_registry(args, cfg)
    if args.command == "simulate":  # monitoring (issue 9)
        return monitoring_simulate.main(args, cfg, lambda: _cmd_run(args, cfg))
    code = _cmd_run(args, cfg)
    _write_report(cfg)  # monitoring (issue 9): the report is written after every run, success or failure
    return code


def _write_report(cfg: PipelineConfig) -> None:
    try:
        path = monitoring_report.write_report(cfg)
    except (OSError, duckdb.Error) as exc:
        print(f"orchestrate: the report could not be written: {exc}", file=sys.stderr)
        return
    _echo(f"report: {path}")
