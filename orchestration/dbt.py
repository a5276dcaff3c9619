"""Invoke dbt as a subprocess, so its DuckDB connection is closed when it exits (one writer).

dbt's target and log folders live under the artifacts folder, not in the project, so several
warehouses (tests, backfills) never share or dirty ``dbt_project/``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestration.errors import DbtError, os_cause
from orchestration.faults import pause_point

PROGRESS_MARKERS = (" OK created ", " ERROR ", " FAIL ", " WARN ", "Completed", "Done. PASS=")


@dataclass(frozen=True)
class DbtContext:
    """Everything a dbt invocation needs to find its project and warehouse."""

    project_dir: Path
    warehouse: Path
    landing: Path
    target_dir: Path
    log_dir: Path
    vars: dict[str, Any]

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "WAREHOUSE_PATH": str(self.warehouse),
            "LANDING_PATH": str(self.landing),
            "DBT_TARGET_PATH": str(self.target_dir),
            "DBT_LOG_PATH": str(self.log_dir),
            "DBT_PROFILES_DIR": str(self.project_dir),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "DBT_USE_COLORS": "false",
        }

    @property
    def manifest_path(self) -> Path:
        return self.target_dir / "manifest.json"


def _dbt_executable() -> list[str]:
    sibling = Path(sys.executable).with_name("dbt")
    if sibling.exists():
        return [str(sibling)]
    found = shutil.which("dbt")
    if not found:
        raise DbtError("dbt is not installed in this environment; run `pip install -e .`")
    return [found]


def _failures(ctx: DbtContext) -> list[str]:
    path = ctx.target_dir / "run_results.json"
    if not path.exists():
        return []
    results = json.loads(path.read_text()).get("results", [])
    lines = []
    for r in results:
        if r.get("status") in ("error", "fail", "runtime error"):
            node = r.get("unique_id", "?").split(".", 2)[-1]
            message = " ".join(str(r.get("message") or "").split())[:400]
            lines.append(f"{node}: {r['status']}: {message}")
    return lines


_FULL_MARKERS = ("No space left on device", "Disk quota exceeded")
LOW_SPACE_BYTES = 1 << 20
"""Free space under which a folder dbt writes is named as the full one."""


def _full_disk(ctx: DbtContext, output: str) -> str | None:
    """The cause when dbt died of a full disk (its output names ENOSPC, mostly in a logging
    traceback that hides it): which of the folders it writes is out of space, and what to do."""
    if not any(marker in output for marker in _FULL_MARKERS):
        return None
    folders = {"target folder": ctx.target_dir, "log folder": ctx.log_dir, "warehouse folder": ctx.warehouse.parent}
    full = []
    for name, folder in folders.items():
        try:
            free = shutil.disk_usage(folder if folder.exists() else folder.parent).free
        except OSError:
            continue
        if free < LOW_SPACE_BYTES:
            full.append(f"dbt's {name} {folder} is full ({free:,} bytes free)")
    where = "; ".join(full) if full else (f"a disk dbt writes to is full (its target folder {ctx.target_dir}, "
                                          f"log folder {ctx.log_dir} or the warehouse {ctx.warehouse})")
    return (f"no space left on the device: {where}. Free space there (or point paths.artifacts or "
            "paths.warehouse at a disk with room) and rerun")


def run_dbt(ctx: DbtContext, args: Sequence[str], *, echo: Callable[[str], None] | None = None) -> str:
    """Run ``dbt <args>`` in the project; return stdout; raise ``DbtError`` naming what failed."""
    command = [*_dbt_executable(), *args, *(["--vars", json.dumps(ctx.vars)] if ctx.vars else [])]
    try:
        ctx.target_dir.mkdir(parents=True, exist_ok=True)
        (ctx.target_dir / "run_results.json").unlink(missing_ok=True)
    except OSError as exc:
        raise DbtError(f"dbt's target folder {ctx.target_dir} cannot be prepared: {os_cause(exc)}") from exc
    proc = subprocess.Popen(
        command, cwd=ctx.project_dir, env=ctx.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    out = []
    assert proc.stdout is not None
    for line in proc.stdout:
        out.append(line)
        if echo and any(m in line for m in PROGRESS_MARKERS):
            echo(line.rstrip())
        if " OK created " in line:
            pause_point("dbt")  # tests kill the run here: dbt has replaced some tables, not all
    code = proc.wait()
    text = "".join(out)
    if code != 0:
        full = _full_disk(ctx, text)
        if full:
            raise DbtError(f"`dbt {' '.join(args[:1])}` failed (exit {code}): {full}")
        failures = _failures(ctx)
        detail = "\n  ".join(failures) if failures else "\n  ".join(text.strip().splitlines()[-15:])
        raise DbtError(f"`dbt {' '.join(args[:1])}` failed (exit {code}):\n  {detail}")
    return text


def compile_inline(ctx: DbtContext, jinja: str) -> str:
    """Compile a Jinja snippet with the project's macros, e.g. ``{{ serving_features() }}``."""
    out = run_dbt(ctx, ["compile", "--inline", jinja, "--output", "json", "--quiet"])
    start = out.find("{")
    try:
        return json.loads(out[start:])["compiled"]
    except (ValueError, KeyError) as exc:
        raise DbtError(f"`dbt compile --inline {jinja}` printed no compiled SQL: {out[-500:]}") from exc
