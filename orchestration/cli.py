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

from orchestration import demo_data
from orchestration.checks import record_alert
from orchestration.config import load_config
from orchestration.errors import ConfigError, StageError
from orchestration.stages import STAGES, RunContext, run_stages


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
            s = m[split]
            lines.append(f"  {split:<15} roc_auc {s['roc_auc']:.4f}  pr_auc {s['pr_auc']:.4f}  "
                         f"precision {s['precision']:.3f}  recall {s['recall']:.3f}")
    if "bundle_id" in ctx.state:
        lines.append(f"  deployed model  {ctx.state['bundle_id']}")
        lines.append(f"  bundle          {ctx.state['bundle_path']}")
    lines.append(f"  duration        {seconds:.1f}s")
    lines.append("  stages          " + ", ".join(f"{n} {s:.1f}s" for n, s, _ in done))
    return "\n".join(lines)


def _cmd_run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"orchestrate: bad config: {exc}", file=sys.stderr)
        return 2
    ctx = RunContext(cfg=cfg, run_id=uuid.uuid4().hex[:12], echo=_echo)
    _echo(f"run {ctx.run_id}: warehouse {cfg.warehouse}, landing {cfg.landing}, registry {cfg.registry}")
    try:
        done = run_stages(ctx, STAGES)
    except StageError as exc:
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
    _echo(_summary(ctx, done, time.perf_counter() - started))
    for warning in ctx.state.get("warnings", []):
        print(f"orchestrate: WARNING: {warning}", file=sys.stderr)
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
    return _cmd_run(args)
