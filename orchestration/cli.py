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

from orchestration import demo_data, promotion, records
from orchestration.config import PipelineConfig, load_config
from orchestration.context import RunContext
from orchestration.engine import Engine, StageDecision, Selection, landing_digest, with_retries
from orchestration.errors import ConfigError, StageError
from orchestration.monitoring import simulate
from orchestration.scaffold import command as init_command
from orchestration.monitoring.report import write_report
from orchestration.notify import Alert, notify
from orchestration.runlock import RunLocked, run_lock
from orchestration.stages import STAGES
from serving import registry
from serving.errors import RegistryError
from training import tracking


W = max(len(s.name) for s in STAGES)
"""Width of the stage column in tables."""


def _echo(message: str) -> None:
    print(message, flush=True)


def _summary(ctx: RunContext, done: list[tuple[StageDecision, float, dict]], seconds: float) -> str:
    by_stage = {d.stage: summary for d, _, summary in done}
    lines = ["", "pipeline finished", f"  {'stage':<{W}} {'status':<8} {'seconds':>8}  detail"]
    for decision, secs, summary in done:
        status = "ran" if decision.run else "skipped"
        detail = decision.reason if not decision.run else ", ".join(
            f"{k} {v}" for k, v in list(summary.items())[:4] if not isinstance(v, (dict, list)))
        lines.append(f"  {decision.stage:<{W}} {status:<8} {secs:>8.1f}  {detail[:100]}")
    lines.append("")
    if "ingest" in by_stage and by_stage["ingest"]:
        ing = by_stage["ingest"]
        lines.append(f"  landed rows     {ing.get('landed_rows', 0):,} in {ing.get('partitions', 0)} partitions "
                     f"({ing.get('new_partitions', 0)} new)")
    if by_stage.get("publish"):
        lines.append(f"  feature rows    {by_stage['publish'].get('feature_rows', 0):,}")
    if by_stage.get("validate"):
        v = by_stage["validate"]
        lines.append(f"  checks          {v['checks']} recorded: {v['passed']} passed, {v['warnings']} warnings "
                     "(validation.check_results)")
    if "evaluate" in ctx.durations:
        m = ctx.state["metrics"]
        for split in ("validation", "test"):
            if split in m:
                shown = {k: v for k, v in m[split].items() if k not in ("rows", "threshold", "positive_rate")}
                lines.append(f"  {split:<15} " + "  ".join(f"{k} {v:.4f}" for k, v in shown.items()))
    if "deploy" in ctx.durations:
        lines.append(f"  deployed model  {ctx.state['bundle_id']}")
        lines.append(f"  bundle          {registry.find_bundle(ctx.cfg.registry, ctx.state['bundle_id'])}")
    else:
        champion = registry.read_champion(ctx.cfg.registry)
        lines.append(f"  champion        {champion['bundle_id'] if champion else 'none'} (unchanged)")
    lines.append(f"  duration        {seconds:.1f}s ({sum(d.run for d, _, _ in done)} stage(s) ran, "
                 f"{sum(not d.run for d, _, _ in done)} skipped; ops.stage_runs)")
    return "\n".join(lines)


def _execute(args: argparse.Namespace, cfg: PipelineConfig, selection: Selection, command: str,
             backfill: tuple[dt.date, dt.date] | None = None) -> int:
    """Run the DAG once; return the exit code."""
    return _run_once(args, cfg, selection, command, backfill)[1]


def _run_once(args: argparse.Namespace, cfg: PipelineConfig, selection: Selection, command: str,
              backfill: tuple[dt.date, dt.date] | None = None) -> tuple[str, int]:
    """Run the DAG once, then write the report whatever happened; return (run id, exit code)."""
    ctx = RunContext(cfg=cfg, run_id=uuid.uuid4().hex[:12], echo=_echo, backfill=backfill)
    try:
        with run_lock(cfg.warehouse, command, wait=bool(getattr(args, "wait", False)), echo=_echo):
            try:
                if killed := records.mark_killed(cfg.warehouse, ctx.run_id):
                    _echo(f"marked {killed} earlier run(s) that died while running as killed (ops.pipeline_runs)")
            except duckdb.Error as exc:
                print(f"orchestrate: could not mark dead runs as killed in {cfg.warehouse}: {exc}", file=sys.stderr)
            code = _run(args, ctx, selection, command)
            try:
                _echo(f"report: {write_report(cfg, ctx.run_id)}")
            except (OSError, duckdb.Error) as exc:
                print(f"orchestrate: the report could not be written: {exc}", file=sys.stderr)
    except RunLocked as exc:
        print(f"orchestrate: {exc}", file=sys.stderr)
        return ctx.run_id, 1
    return ctx.run_id, code


def _run(args: argparse.Namespace, ctx: RunContext, selection: Selection, command: str) -> int:
    """Run the stages: records, alerts, summary. Returns the exit code."""
    cfg, started = ctx.cfg, time.perf_counter()
    _echo(f"run {ctx.run_id}: warehouse {cfg.warehouse}, landing {cfg.landing}, registry {cfg.registry}")
    try:
        engine = Engine(ctx, STAGES, selection)
        with_retries(lambda: records.start_pipeline(cfg.warehouse, ctx.run_id, command), cfg.retries.default,
                     "records", _echo)
        done = engine.run()
    except StageError as exc:
        _track(ctx, str(exc))
        _finish(ctx, "failed", str(exc))
        print(f"orchestrate: FAILED: {exc}", file=sys.stderr)
        notify(Alert(ctx.run_id, "error", exc.stage, str(exc), tuple(exc.checks)), cfg.alerts.notifiers, cfg.warehouse)
        print("orchestrate: nothing was deployed; the current champion (if any) is unchanged", file=sys.stderr)
        return 1
    except Exception as exc:  # an unexpected bug: still one clear line, the traceback on request
        if args.debug:
            traceback.print_exc()
        _finish(ctx, "failed", f"internal error: {exc!r}")
        print(f"orchestrate: FAILED with an internal error ({type(exc).__name__}): {exc}"
              + ("" if args.debug else " (rerun with --debug for the traceback)"), file=sys.stderr)
        return 1
    _track(ctx, None)
    _finish(ctx, "succeeded", None)
    _echo(_summary(ctx, done, time.perf_counter() - started))
    for warning in dict.get(ctx.state, "warnings") or []:
        print(f"orchestrate: WARNING: {warning}", file=sys.stderr)
    for warning in ctx.warnings:
        notify(Alert(ctx.run_id, "warn", None, warning), cfg.alerts.notifiers, cfg.warehouse)
    return 0


def _finish(ctx: RunContext, status: str, error: str | None) -> None:
    try:
        records.finish_pipeline(ctx.cfg.warehouse, ctx.run_id, status, error)
    except (duckdb.Error, OSError) as err:
        print(f"orchestrate: run {ctx.run_id} could not be recorded in ops.pipeline_runs: {err}", file=sys.stderr)


def _selection(args: argparse.Namespace) -> Selection:
    return Selection(force=args.force, from_stage=args.from_stage, only=args.only)


def _cmd_run(args: argparse.Namespace, cfg: PipelineConfig) -> int:
    return _execute(args, cfg, _selection(args), "run")


def _cmd_plan(args: argparse.Namespace, cfg: PipelineConfig) -> int:
    ctx = RunContext(cfg=cfg, run_id="plan", echo=_echo)
    try:
        decisions = Engine(ctx, STAGES, _selection(args)).plan()
    except (StageError, duckdb.Error, OSError, LookupError, ValueError) as exc:
        print(f"orchestrate plan: {exc}", file=sys.stderr)
        return 1
    by_name = {s.name: s for s in STAGES}
    _echo(f"plan for warehouse {cfg.warehouse} (nothing is run)")
    _echo(f"  {'stage':<{W}} {'would':<6} {'key':<12}  why")
    for d in decisions:
        _echo(f"  {d.stage:<{W}} {'run' if d.run else 'skip':<6} {(d.key or '?')[:12]:<12}  {d.reason}")
        stage = by_name[d.stage]
        reads = ", ".join([*stage.inputs, *(f"<{s}>" for s in stage.sources), *(f"config.{c}" for c in stage.config)])
        _echo(f"  {'':<{W}} reads: {reads or '-'}; writes: {', '.join([*stage.outputs, *stage.effects]) or '-'}")
    return 0


def _cmd_backfill(args: argparse.Namespace, cfg: PipelineConfig) -> int:
    if args.end < args.start:
        print(f"orchestrate backfill: --end {args.end} is before --start {args.start}", file=sys.stderr)
        return 2
    _echo(f"backfill {args.start} .. {args.end}: reloading those landing partitions and rebuilding features")
    forced = ("ingest", "dbt_build", "dbt_test", "freshness", "validate", "publish")
    return _execute(args, cfg, Selection(stages=forced), f"backfill {args.start} {args.end}", (args.start, args.end))


def _cmd_watch(args: argparse.Namespace, cfg: PipelineConfig) -> int:
    """Poll the landing folder; run when its partitions change (and once at start)."""
    if args.interval <= 0:
        print(f"orchestrate watch: --interval must be > 0 seconds, got {args.interval}", file=sys.stderr)
        return 2
    runs, seen, code = 0, None, 0
    _echo(f"watching {cfg.landing} every {args.interval:g}s (Ctrl-C to stop)")
    try:
        while args.max_runs is None or runs < args.max_runs:
            current = landing_digest(cfg)
            if current != seen:
                _echo(f"watch: landing partitions {'found' if seen is None else 'changed'}: running the pipeline")
                # What this run sees; a partition landing while it runs is new at the next poll.
                seen = current
                code = _execute(args, cfg, Selection(), "watch")
                runs += 1
                if args.max_runs is not None and runs >= args.max_runs:
                    break
            time.sleep(args.interval)
    except KeyboardInterrupt:
        _echo("watch: stopped")
    return code


def _track(ctx: RunContext, error: str | None) -> None:
    if "train" not in ctx.durations:
        return  # no model trained in this run: nothing to track
    from orchestration.release import run_record  # noqa: PLC0415 (model-side imports only when needed)

    tracking.record_run(ctx.cfg.warehouse, run_record(ctx, error))


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
    if not record["changed"]:
        _echo(f"{record['bundle_id']} is already the champion; nothing changed and nothing was recorded")
        return 0
    _echo(f"champion is now {record['bundle_id']} (was {record['previous_bundle_id'] or 'none'}); "
          f"recorded: by {record['by']}, reason: {record['reason']}")
    return 0


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


def _day(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date like 2026-01-31, got {value!r}") from None


def _seconds(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    stage_names = [s.name for s in STAGES]
    parser = argparse.ArgumentParser(
        prog="orchestrate.py",
        description="Run the pipeline: " + " -> ".join(stage_names) + ". Stages whose inputs did not change "
                    "since they last succeeded are skipped; a killed run resumes where it stopped.",
        epilog="Stages:\n" + "\n".join(f"  {s.name:<{W}} {s.description}" for s in STAGES)
               + "\n\nRun `orchestrate.py COMMAND --help` for each command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    # Subcommands repeat the top-level options with SUPPRESS defaults, so `orchestrate.py --config X
    # plan` and `orchestrate.py plan --config X` both work and a subcommand never resets the other.
    def add_config(p: argparse.ArgumentParser, top: bool = False) -> None:
        p.add_argument("--config", type=Path, default=Path("pipeline.yml") if top else argparse.SUPPRESS,
                       help="pipeline config (default: pipeline.yml)")

    def add_run_args(p: argparse.ArgumentParser, top: bool = False) -> None:
        add_config(p, top)
        p.add_argument("--debug", action="store_true", default=False if top else argparse.SUPPRESS,
                       help="print tracebacks of internal errors")
        p.add_argument("--wait", action="store_true", default=False if top else argparse.SUPPRESS,
                       help="if another run holds the warehouse, wait for it instead of exiting")

    def add_selection(p: argparse.ArgumentParser, top: bool = False) -> None:
        unset = None if top else argparse.SUPPRESS
        group = p.add_mutually_exclusive_group()
        group.add_argument("--from", dest="from_stage", choices=stage_names, metavar="STAGE", default=unset,
                           help="rerun STAGE and every stage after it; earlier stages are taken as they last finished")
        group.add_argument("--only", choices=stage_names, metavar="STAGE", default=unset,
                           help="run just STAGE, with its inputs as earlier stages last left them")
        group.add_argument("--force", action="store_true", default=False if top else argparse.SUPPRESS,
                           help="rerun every stage, whatever its key")

    add_run_args(parser, top=True)
    add_selection(parser, top=True)
    run = sub.add_parser("run", help="run the pipeline, skipping unchanged stages (the default command)")
    add_run_args(run)
    add_selection(run)
    plan = sub.add_parser("plan", help="print the DAG: each stage, whether it would run or be skipped, and why")
    add_config(plan)
    add_selection(plan)
    backfill = sub.add_parser("backfill", help="reload the landing partitions of a range of days and rebuild "
                                              "features and training data from them (idempotent)")
    add_run_args(backfill)
    backfill.add_argument("--start", type=_day, required=True, metavar="YYYY-MM-DD", help="first day to reload")
    backfill.add_argument("--end", type=_day, required=True, metavar="YYYY-MM-DD", help="last day to reload")
    watch = sub.add_parser("watch", help="poll the landing folder and run whenever its partitions change")
    add_run_args(watch)
    watch.add_argument("--interval", type=_seconds, default=60.0, metavar="SECONDS",
                       help="seconds between polls (default: 60)")
    watch.add_argument("--max-runs", type=int, default=None, metavar="N", help="stop after N runs (default: never)")
    runs = sub.add_parser("runs", help="list training runs, or compare two side by side")
    add_config(runs)
    runs.add_argument("--limit", type=int, default=20, help="how many recent runs to list (default: 20)")
    runs.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"), help="compare two runs (id prefixes work)")
    prom = sub.add_parser("promote", help="make a bundle (or a kept candidate) the champion: a recorded manual override")
    prom.add_argument("bundle_id", help="bundle id or a unique prefix of it")
    prom.add_argument("--reason", required=True, help="why; recorded in the promotion history")
    add_config(prom)
    back = sub.add_parser("rollback", help="restore the previous champion (recorded)")
    back.add_argument("--reason", default="manual rollback", help="why; recorded in the promotion history")
    add_config(back)
    simulate.add_parser(sub)
    init_command.add_parser(sub)
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


def _cmd_simulate(args: argparse.Namespace, cfg: PipelineConfig) -> int:
    return simulate.main(args, cfg, lambda: _run_once(args, cfg, Selection(), "simulate"))


COMMANDS = {"simulate": _cmd_simulate, "runs": _cmd_runs, "promote": _cmd_registry, "rollback": _cmd_registry, "plan": _cmd_plan,
            "backfill": _cmd_backfill, "watch": _cmd_watch, "run": _cmd_run, None: _cmd_run}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo-data":
        return _cmd_demo_data(args)
    if args.command == "init":  # makes a config: none to load yet
        return init_command.main(args)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"orchestrate{' ' + args.command if args.command else ''}: bad config: {exc}", file=sys.stderr)
        return 2
    return COMMANDS[args.command](args, cfg)
