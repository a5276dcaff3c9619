"""Notifiers: a real HTTP server on 127.0.0.1 for the webhook, a real shell for the command hook."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pytest

from orchestration.notify import COMMAND_ENV, WEBHOOK_ENV, Alert, notify

ALERT = Alert(run_id="r1", severity="error", stage="validate", message="2 checks failed",
              checks=("not_null on staging.t.amount", "row_count_vs_trailing on staging.t"))


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[str, dict]] = []
    status = 204

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.headers["Content-Type"], json.loads(body)))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def webhook() -> Iterator[tuple[str, type[_Receiver]]]:
    handler = type("Receiver", (_Receiver,), {"received": [], "status": 204})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/alerts", handler
    server.shutdown()
    server.server_close()


def test_every_notifier_delivers_the_alert(tmp_path: Path, webhook: tuple[str, type[_Receiver]],
                                           monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    url, receiver = webhook
    out = tmp_path / "hook.json"
    monkeypatch.setenv(WEBHOOK_ENV, url)
    monkeypatch.setenv(COMMAND_ENV, f'cat > {out} && echo "$PIPELINE_ALERT_SEVERITY $PIPELINE_ALERT_STAGE" >> {out}.env')
    warehouse = tmp_path / "w.duckdb"
    notify(ALERT, ("stderr", "table", "webhook", "command"), warehouse)
    assert receiver.received == [("application/json", {
        "run_id": "r1", "severity": "error", "stage": "validate", "message": "2 checks failed",
        "checks": ["not_null on staging.t.amount", "row_count_vs_trailing on staging.t"]})]
    assert json.loads(out.read_text())["checks"][0] == "not_null on staging.t.amount"
    assert Path(f"{out}.env").read_text().strip() == "error validate"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("select run_id, stage, severity, checks from validation.alerts").fetchall() == [
            ("r1", "validate", "error", ["not_null on staging.t.amount", "row_count_vs_trailing on staging.t"])]
    assert "ALERT run r1 stage validate: 2 failing check(s): not_null on staging.t.amount" in capsys.readouterr().err


def test_a_failing_notifier_is_reported_and_the_others_still_run(tmp_path: Path, webhook: tuple[str, type[_Receiver]],
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    url, receiver = webhook
    receiver.status = 500
    monkeypatch.setenv(WEBHOOK_ENV, url)
    monkeypatch.setenv(COMMAND_ENV, "echo broken >&2; exit 3")
    notify(ALERT, ("webhook", "command", "stderr"), tmp_path / "w.duckdb")
    err = capsys.readouterr().err
    assert "notifier 'webhook' could not send the alert of run r1: HTTP Error 500" in err
    assert "notifier 'command' could not send the alert of run r1: `echo broken >&2; exit 3` exited 3: broken" in err
    assert "ALERT run r1 stage validate" in err


def test_unset_webhook_and_command_are_quiet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(WEBHOOK_ENV, raising=False)
    monkeypatch.delenv(COMMAND_ENV, raising=False)
    notify(ALERT, ("webhook", "command"), tmp_path / "w.duckdb")
    assert capsys.readouterr().err == ""
