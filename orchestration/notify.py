"""Alerts, sent through pluggable notifiers: an explicit registry, chosen in ``alerts.notifiers``.

    stderr    one line per alert on standard error
    table     one row in validation.alerts (the warehouse)
    webhook   POST the alert as JSON to the URL in $PIPELINE_ALERT_WEBHOOK (if set)
    command   run the shell command in $PIPELINE_ALERT_COMMAND (if set) with the alert as JSON on
              stdin and PIPELINE_ALERT_* variables in its environment

A notifier that fails is reported on stderr and never hides the alert or the run's outcome.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from orchestration.checks import record_alert

WEBHOOK_ENV = "PIPELINE_ALERT_WEBHOOK"
COMMAND_ENV = "PIPELINE_ALERT_COMMAND"
TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Alert:
    """One thing a person should know about."""

    run_id: str
    severity: str
    """error (the run halted) or warn (it went on)."""
    stage: str | None
    message: str
    checks: tuple[str, ...] = ()
    """Labels of the failing checks or gates, when that is the cause."""


def _stderr(alert: Alert, warehouse: Path) -> None:
    what = f"{len(alert.checks)} failing check(s): {', '.join(alert.checks)}" if alert.checks else alert.message
    print(f"orchestrate: {'ALERT' if alert.severity == 'error' else 'WARNING'} run {alert.run_id}"
          f"{f' stage {alert.stage}' if alert.stage else ''}: {what}", file=sys.stderr, flush=True)


def _table(alert: Alert, warehouse: Path) -> None:
    record_alert(warehouse, alert.run_id, stage=alert.stage, severity=alert.severity,
                 checks=alert.checks or (f"stage {alert.stage}",), message=alert.message)


def _webhook(alert: Alert, warehouse: Path) -> None:
    url = os.environ.get(WEBHOOK_ENV)
    if not url:
        return
    request = urllib.request.Request(url, data=json.dumps(dataclasses.asdict(alert)).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        if response.status >= 300:
            raise OSError(f"{url} answered HTTP {response.status}")


def _command(alert: Alert, warehouse: Path) -> None:
    command = os.environ.get(COMMAND_ENV)
    if not command:
        return
    env = {**os.environ, "PIPELINE_ALERT_SEVERITY": alert.severity, "PIPELINE_ALERT_RUN_ID": alert.run_id,
           "PIPELINE_ALERT_STAGE": alert.stage or "", "PIPELINE_ALERT_MESSAGE": alert.message}
    proc = subprocess.run(command, shell=True, input=json.dumps(dataclasses.asdict(alert)), text=True, env=env,
                          capture_output=True, timeout=TIMEOUT_S)
    if proc.returncode != 0:
        raise OSError(f"`{command}` exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[:300]}")


NOTIFIERS: dict[str, Callable[[Alert, Path], None]] = {
    "stderr": _stderr,
    "table": _table,
    "webhook": _webhook,
    "command": _command,
}


def notify(alert: Alert, notifiers: tuple[str, ...], warehouse: Path) -> None:
    """Send ``alert`` through each configured notifier; a notifier's failure is said, not raised."""
    for name in notifiers:
        try:
            NOTIFIERS[name](alert, warehouse)
        except (OSError, urllib.error.URLError, subprocess.SubprocessError, duckdb.Error, ValueError) as exc:
            print(f"orchestrate: notifier {name!r} could not send the alert of run {alert.run_id}: {exc}",
                  file=sys.stderr, flush=True)
