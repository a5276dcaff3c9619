"""The DAG engine: content-addressed keys, skip and resume, retries, run records, progress.

A stage's key is the sha256 of its key parts:

    code              the pipeline's Python source and pyproject.toml
    config            the config sections the stage declares
    source:<name>     external inputs it declares (landing files' checksums, dbt project files)
    input:<name>      the digest of each state value it reads, as its producer left it

A stage is skipped when its latest execution (``ops.stage_runs``) succeeded with the same key and
its persisted outputs are still there; otherwise it runs, and the reason says which part changed.
A run killed mid-stage leaves that stage ``running`` in the records, so the next run reruns it
and skips the finished stages before it: it resumes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from orchestration import records
from orchestration.config import PipelineConfig, Retry
from orchestration.context import RunContext, Stage
from orchestration.errors import StageError, os_cause
from orchestration.ingest import partition_files, stray_checks
from serving.registry import read_champion
from orchestration.outputs import CODECS, MONITORING_TAG, OutputStore, canonical, dbt_logic_digest, digest, sha256

REPO = Path(__file__).resolve().parent.parent
CODE_DIRS = ("orchestration", "training", "serving")
DBT_IGNORED = {"target", "logs", "dbt_packages", ".user.yml", "package-lock.yml"}
PROGRESS_EVERY_S = 15.0
"""Seconds between ``still running`` lines of a long stage."""
STAGE_ERRORS = (ValueError, RuntimeError, LookupError, OSError, duckdb.Error)
"""Errors a stage raises on bad input or a failing check; anything else is a bug (traceback with --debug)."""


def _hash_files(paths: list[Path], root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(f"{path.relative_to(root)}\0".encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def code_digest(root: Path = REPO) -> str:
    """The code version: every Python file of the pipeline's packages, orchestrate.py, pyproject.toml."""
    files = [p for d in CODE_DIRS for p in (root / d).rglob("*.py")]
    files += [p for p in (root / "orchestrate.py", root / "pyproject.toml") if p.exists()]
    return _hash_files(files, root)


def landing_digest(cfg: PipelineConfig) -> str:
    """Checksums of the landing partitions: what `watch` polls and ingest's key holds."""
    table = cfg.dbt.source.split(".", 1)[1]
    paths = partition_files(cfg.landing, table)
    # Entries that look like data but are not partitions change the key too: ingest names them.
    strays = sorted(c.table for c in stray_checks(cfg.landing, table))
    digest = _hash_files(paths, cfg.landing) if paths else "empty"
    return digest if not strays else hashlib.sha256("\n".join([digest, *strays]).encode()).hexdigest()


def _landing(ctx: RunContext) -> str:
    return landing_digest(ctx.cfg)


def _dbt_project(ctx: RunContext) -> str:
    root = ctx.cfg.dbt_project
    files = [p for p in root.rglob("*") if p.is_file() and not DBT_IGNORED & set(p.relative_to(root).parts)]
    return _hash_files(files, root)


def _dbt_monitoring(ctx: RunContext) -> str:
    return dbt_logic_digest(ctx.state["manifest"], tag=MONITORING_TAG)


def _prediction_logs(ctx: RunContext) -> str:
    # Names, sizes and times: logs are append-only and can be large, so their bytes are not hashed.
    folder = ctx.cfg.artifacts / "prediction_logs"
    files = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    return sha256(canonical([[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]))


def _champion(ctx: RunContext) -> str:
    champion = read_champion(ctx.cfg.registry)
    return champion["bundle_id"] if champion else "none"


def _today(ctx: RunContext) -> str:
    return dt.datetime.now(dt.timezone.utc).date().isoformat()


def _online_store(ctx: RunContext) -> str:
    from orchestration.materialize import store_digest  # noqa: PLC0415

    return store_digest(ctx.cfg.online_store_url)


SOURCES: dict[str, Callable[[RunContext], str]] = {
    "online_store": _online_store,
    "landing": _landing,
    "dbt_project": _dbt_project,
    "dbt_monitoring": _dbt_monitoring,
    "prediction_logs": _prediction_logs,
    "champion": _champion,
    "today": _today,
}
"""External inputs a stage can declare; each hashes what it names."""


def config_digest(cfg: PipelineConfig, sections: tuple[str, ...]) -> str:
    return sha256(canonical({s: _plain(getattr(cfg, s)) for s in sections}))


def _plain(value: Any) -> Any:
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


# --- transient errors ------------------------------------------------------------------------

LOCK = re.compile(r"Could not set lock on file|Conflicting lock is held")


def _process(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return f"PID {pid}"
    return f"PID {pid} ({cmd[:160]})" if cmd else f"PID {pid}"


def transient_cause(exc: BaseException) -> str | None:
    """What made ``exc`` transient (a DuckDB file lock, naming its holder when DuckDB says), else None."""
    text = str(exc)
    if not LOCK.search(text):
        return None
    pid = re.search(r"\(PID (\d+)\)", text)
    return ("the warehouse file is locked by another process" +
            (f": {_process(int(pid.group(1)))}" if pid else " (DuckDB did not name it; `fuser <warehouse>` will)"))


def with_retries(fn: Callable[[], Any], retry: Retry, what: str, echo: Callable[[str], None]) -> tuple[Any, int]:
    """Call ``fn``; retry transient errors with doubling backoff; return (result, attempts)."""
    for attempt in range(1, retry.attempts + 1):
        try:
            return fn(), attempt
        except STAGE_ERRORS as exc:
            cause = transient_cause(exc)
            if cause is None:
                raise
            if attempt == retry.attempts:
                raise type(exc)(f"{cause}; gave up after {attempt} attempt(s) over the retry budget "
                                f"(retries.default / retries.stages.{what} in the config). Stop that process "
                                f"or wait for it, then rerun. Last error: {exc}") from exc
            wait = retry.backoff_seconds * 2 ** (attempt - 1)
            echo(f"[{what}] transient error: {cause}; attempt {attempt + 1}/{retry.attempts} in {wait:g}s")
            time.sleep(wait)
    raise AssertionError("unreachable")


# --- planning --------------------------------------------------------------------------------

@dataclass(frozen=True)
class StageDecision:
    """Whether a stage runs in this run, and why."""

    stage: str
    run: bool
    reason: str
    key: str | None
    """None when it cannot be known before upstream stages run (their outputs are in it)."""


@dataclass(frozen=True)
class Selection:
    """Which stages the command line forces or limits the run to."""

    force: bool = False
    """Rerun every stage whatever its key."""
    from_stage: str | None = None
    """Rerun this stage and every one after it; take earlier stages' outputs as they are."""
    only: str | None = None
    """Run just this stage, with its inputs as earlier stages last left them."""
    stages: tuple[str, ...] = ()
    """Rerun these stages (a backfill's ingest-to-publish); the others follow their keys."""

    def forced(self, names: list[str], name: str) -> bool:
        if self.force or self.only == name or name in self.stages:
            return True
        return self.from_stage is not None and names.index(name) >= names.index(self.from_stage)

    def hydrate_only(self, names: list[str], name: str) -> bool:
        """Stages taken as they are: before --from, or all but the --only one."""
        if self.only is not None:
            return name != self.only
        return self.from_stage is not None and names.index(name) < names.index(self.from_stage)


def _changed(prev: dict[str, str], now: dict[str, str]) -> str:
    parts = sorted(k for k in set(prev) | set(now) if prev.get(k) != now.get(k))
    return "changed: " + ", ".join(parts) if parts else "changed"


class Engine:
    """Runs ``stages`` in order for one run context."""

    def __init__(self, ctx: RunContext, stages: tuple[Stage, ...], selection: Selection = Selection()) -> None:
        self.ctx, self.stages, self.selection = ctx, stages, selection
        self.names = [s.name for s in stages]
        for name in (selection.from_stage, selection.only):
            if name is not None and name not in self.names:
                raise StageError(f"unknown stage {name!r}; stages are: {', '.join(self.names)}")
        unknown = sorted(set(ctx.cfg.retries.stages) - set(self.names))
        if unknown:
            raise StageError(f"retries.stages names unknown stage(s) {unknown}; stages are: {', '.join(self.names)}")
        self.store = OutputStore(ctx.cfg.artifacts / "stages")
        self.code = code_digest()
        try:
            self.last, _ = with_retries(lambda: records.last_executions(ctx.cfg.warehouse), ctx.cfg.retries.default,
                                        "records", ctx.echo)
        except STAGE_ERRORS as exc:
            raise StageError(f"cannot read the run records (ops.stage_runs) in {ctx.cfg.warehouse}: {exc}") from exc
        self.location: dict[str, tuple[str, str]] = {}
        """State value -> (stage, key) of the execution whose persisted outputs hold it."""
        self.digests: dict[str, str] = {}
        """State value -> digest, as its latest producer left it."""
        self._files: dict[tuple[str, str], dict[str, Any]] = {}
        self._own: dict[str, dict[str, str | None]] = {}
        self._skipped: list[tuple[str, str, dict[str, str], str]] = []
        """Skipped stages not yet recorded: written together, before the next stage runs."""
        ctx.state.loader = self._load

    # keys

    def own_parts(self, stage: Stage) -> dict[str, str | None]:
        """Key parts that do not come from other stages: code, config, external sources (computed
        once per stage and run: hashing the landing files is the costliest of them)."""
        if stage.name not in self._own:
            self._own[stage.name] = self._compute_own_parts(stage)
        return self._own[stage.name]

    def _compute_own_parts(self, stage: Stage) -> dict[str, str | None]:
        parts = {"code": self.code, "config": config_digest(self.ctx.cfg, stage.config)}
        for source in stage.sources:
            try:
                parts[f"source:{source}"] = SOURCES[source](self.ctx)
            except KeyError:  # derived from a value a stage that runs first has not produced yet (plan)
                parts[f"source:{source}"] = None
        return parts

    def key_parts(self, stage: Stage) -> dict[str, str] | None:
        """The stage's key parts, or None when an input's digest is not known yet."""
        parts = dict(self.own_parts(stage))
        if None in parts.values():
            return None
        for name in stage.inputs:
            if name not in self.digests:
                return None
            parts[f"input:{name}"] = self.digests[name]
        return parts

    @staticmethod
    def key_of(stage: Stage, parts: dict[str, str]) -> str:
        return sha256(canonical({"stage": stage.name, **parts}))

    def decide(self, stage: Stage) -> StageDecision:
        parts = self.key_parts(stage)
        key = None if parts is None else self.key_of(stage, parts)
        # An explicit --force/--from/--only outranks a stage's `when` (e.g. the retrain policy).
        if self.selection.forced(self.names, stage.name):
            return StageDecision(stage.name, True, "forced (--force, --from or --only)", key)
        try:
            skip = stage.when(self.ctx) if stage.when else None
        except KeyError as missing:  # plan: it depends on a value a stage that runs first will produce
            return StageDecision(stage.name, True, f"decided in the run, once {missing} is known", key)
        if skip:
            return StageDecision(stage.name, False, skip, key)
        prev = self.last.get(stage.name)
        if prev is None:
            return StageDecision(stage.name, True, "never ran", key)
        if prev.status in ("running", "killed"):
            return StageDecision(stage.name, True, f"interrupted in run {prev.run_id}: resuming", key)
        if prev.status == "failed":
            return StageDecision(stage.name, True, f"failed in run {prev.run_id}", key)
        if parts is None:
            own = self.own_parts(stage)
            changed = [k for k in own if own[k] is not None and prev.key_parts.get(k) != own[k]]
            waiting = [i for i in stage.inputs if i not in self.digests]
            return StageDecision(stage.name, True, (f"changed: {', '.join(changed)}; " if changed else "")
                            + f"reads {', '.join(waiting)} from a stage that runs first: runs if that changed", None)
        if prev.key != key:
            return StageDecision(stage.name, True, _changed(prev.key_parts, parts), key)
        if not self.store.has(stage.name, key):
            return StageDecision(stage.name, True, f"its outputs are missing from {self.store.root}", key)
        return StageDecision(stage.name, False, f"unchanged since run {prev.run_id}", key)

    def _adopt(self, stage: Stage, key: str, output_digests: dict[str, str]) -> None:
        """Take the outputs of ``stage``'s execution ``key`` as this run's (without loading them)."""
        for name in stage.outputs:
            self.location[name] = (stage.name, key)
            dict.pop(self.ctx.state, name, None)  # a value from an earlier stage is superseded
            if name in output_digests:
                self.digests[name] = output_digests[name]

    def _load(self, name: str) -> Any:
        if name not in self.location:
            raise KeyError(name)
        stage, key = self.location[name]
        if (stage, key) not in self._files:
            self._files[(stage, key)] = self.store.read(stage, key)
        return CODECS[name].load(self._files[(stage, key)].get(name), self.ctx)

    # planning

    def plan(self) -> list[StageDecision]:
        """What a run would do, without running anything: inputs produced by a stage that would run
        are unknown until it runs, so its consumers show as "runs if it changed"."""
        decisions = []
        for stage in self.stages:
            if self.selection.hydrate_only(self.names, stage.name):
                decisions.append(self._hydrate(stage, plan=True))
                continue
            decision = self.decide(stage)
            decisions.append(decision)
            prev = self.last.get(stage.name)
            if not decision.run and decision.key and prev and prev.key == decision.key:
                self._adopt(stage, decision.key, prev.output_digests)
            else:
                for name in stage.outputs:
                    self.digests.pop(name, None)
        return decisions

    def _hydrate(self, stage: Stage, plan: bool = False) -> StageDecision:
        prev = self.last.get(stage.name)
        if not stage.outputs:
            return StageDecision(stage.name, False, "not run (--from/--only); it hands nothing on", None)
        if prev is None or prev.status != "succeeded":
            if plan:
                return StageDecision(stage.name, False, "taken as is, but it has no successful execution", None)
            raise StageError(
                f"stage {stage.name!r} has no successful execution to take its outputs from "
                f"({'never ran' if prev is None else prev.status + ' in run ' + prev.run_id}); "
                f"run `python orchestrate.py --from {stage.name}` or a full run first", stage=stage.name)
        self._adopt(stage, prev.key, prev.output_digests)
        return StageDecision(stage.name, False, f"taken as run {prev.run_id} left it (--from/--only)", prev.key)

    # running

    def run(self) -> list[tuple[StageDecision, float, dict[str, Any]]]:
        """Run the stages; a failure raises ``StageError`` naming the stage and the cause."""
        ctx, done = self.ctx, []
        for stage in self.stages:
            if self.selection.hydrate_only(self.names, stage.name):
                if self.selection.only is None or stage.name in self._upstream_of(self.selection.only):
                    decision = self._hydrate(stage)
                    ctx.echo(f"[{stage.name}] skipped: {decision.reason}")
                    done.append((decision, 0.0, {}))
                continue
            decision = self.decide(stage)
            parts = self.key_parts(stage) or {}
            key = decision.key or self.key_of(stage, parts)
            if not decision.run:
                ctx.echo(f"[{stage.name}] skipped: {decision.reason}")
                self._skipped.append((stage.name, key, parts, decision.reason))
                prev = self.last.get(stage.name)
                if prev is not None and prev.key == key:
                    self._adopt(stage, key, prev.output_digests)
                else:
                    for name in stage.outputs:
                        self.digests.pop(name, None)
                done.append((decision, 0.0, {}))
                continue
            self._flush_skipped()
            done.append(self._execute(stage, decision, key, parts))
        self._flush_skipped()
        return done

    def _flush_skipped(self) -> None:
        skipped, self._skipped = self._skipped, []
        self._record(lambda: records.skip_stages(self.ctx.cfg.warehouse, self.ctx.run_id, skipped))

    def _upstream_of(self, name: str) -> set[str]:
        """Stages whose outputs ``name`` reads, directly or through others."""
        producers: dict[str, str] = {}
        needed, result = set(self.stages[self.names.index(name)].inputs), set()
        for stage in self.stages[: self.names.index(name)]:
            for out in stage.outputs:
                producers[out] = stage.name
        for stage in reversed(self.stages[: self.names.index(name)]):
            if any(producers.get(i) == stage.name for i in needed):
                result.add(stage.name)
                needed |= set(stage.inputs)
        return result

    def _record(self, fn: Callable[[], None]) -> None:
        with_retries(fn, self.ctx.cfg.retries.default, "records", self.ctx.echo)

    def _execute(self, stage: Stage, decision: StageDecision, key: str,
                 parts: dict[str, str]) -> tuple[StageDecision, float, dict[str, Any]]:
        ctx = self.ctx
        ctx.echo(f"[{stage.name}] {stage.description} ({decision.reason})")
        ctx.current_stage = stage.name
        self._record(lambda: records.start_stage(ctx.cfg.warehouse, ctx.run_id, stage.name, key, parts, decision.reason))
        history = self._history(stage.name)
        started = time.perf_counter()
        ctx.state.reads.clear()
        try:
            with _progress(ctx, stage.name, history):
                summary, attempts = with_retries(lambda: stage.run(ctx), ctx.cfg.retries.for_stage(stage.name),
                                                 stage.name, ctx.echo)
        except STAGE_ERRORS as exc:
            seconds = time.perf_counter() - started
            self._record(lambda: records.finish_stage(
                ctx.cfg.warehouse, ctx.run_id, stage.name, status="failed", duration_s=seconds, rows=None,
                summary=None, error=str(exc)[:4000], output_digests=None, attempts=0))
            raise StageError(f"stage {stage.name!r} failed: {exc}", stage=stage.name,
                             checks=getattr(exc, "checks", ())) from exc
        undeclared = sorted(ctx.state.reads - {*stage.inputs, *stage.covered, *stage.outputs})
        if undeclared:  # a bug in the registry: the key would miss these inputs
            raise RuntimeError(f"stage {stage.name!r} read {undeclared} without declaring them as inputs")
        seconds = time.perf_counter() - started
        dumped = {name: CODECS[name].dump(ctx.state[name]) for name in stage.outputs}
        output_digests = {name: digest(name, value) for name, value in dumped.items()}
        try:
            self.store.write(stage.name, key, dumped)
        except OSError as exc:  # a full disk, say: the stage's work is lost, so it reruns next time
            self._record(lambda: records.finish_stage(
                ctx.cfg.warehouse, ctx.run_id, stage.name, status="failed", duration_s=seconds, rows=None,
                summary=None, error=f"outputs not saved: {exc}"[:4000], output_digests=None, attempts=0))
            cause = os_cause(exc, f"free space in {self.store.root} (or point paths.artifacts at a disk with room) "
                                  "and rerun; the stage runs again")
            raise StageError(f"stage {stage.name!r} finished, but its outputs could not be saved to "
                             f"{self.store.root}: {cause}", stage=stage.name) from exc
        ctx.durations[stage.name] = seconds
        self._record(lambda: records.finish_stage(
            ctx.cfg.warehouse, ctx.run_id, stage.name, status="succeeded", duration_s=seconds,
            rows=_rows(summary), summary=summary, error=None, output_digests=output_digests, attempts=attempts))
        for name in stage.outputs:
            self.location[name] = (stage.name, key)
            self.digests[name] = output_digests[name]
        slow = records.slow_stage_warning(stage.name, seconds, history)
        if slow:
            ctx.warnings.append(slow)
        ctx.echo(f"[{stage.name}] done in {seconds:.1f}s " + json.dumps(summary, default=str))
        return decision, seconds, summary

    def _history(self, stage: str) -> list[float]:
        try:
            return records.stage_history(self.ctx.cfg.warehouse, stage)
        except duckdb.Error:
            return []


def _rows(summary: dict[str, Any]) -> int | None:
    """The row count a stage reports, for ops.stage_runs.rows."""
    for name in ("landed_rows", "feature_rows", "train_rows", "rows"):
        if isinstance(summary.get(name), int):
            return summary[name]
    return None


@contextmanager
def _progress(ctx: RunContext, stage: str, history: list[float]) -> Iterator[None]:
    """Print ``still running`` every PROGRESS_EVERY_S seconds, with the usual duration when known."""
    stop = threading.Event()
    started = time.perf_counter()
    typical = f" (usually {sorted(history)[len(history) // 2]:.0f}s)" if history else ""

    def tick() -> None:
        while not stop.wait(PROGRESS_EVERY_S):
            ctx.echo(f"[{stage}] still running: {time.perf_counter() - started:.0f}s{typical}")

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()

