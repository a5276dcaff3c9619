"""A full disk under the pipeline's folders is a named cause and an alert, never a blank or an
internal OSError. Each folder is a real full filesystem: a tiny tmpfs, filled, mounted in a
private mount namespace (``unshare``) around ``orchestrate.py``, so nothing outlives the run."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tests.conftest import REPO, write_config

pytestmark = pytest.mark.slow


def _run_with_full_folder(root: Path, folder: Path) -> subprocess.CompletedProcess[str]:
    """``orchestrate.py`` on ``root``'s config with ``folder`` a full 64 KiB filesystem."""
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is missing: scripts/test's image has it; apt-get install -y util-linux")
    folder.mkdir(parents=True, exist_ok=True)
    script = (f"mount -t tmpfs -o size=64k tmpfs {shlex.quote(str(folder))} && "
              f"{{ cat /dev/zero > {shlex.quote(str(folder / '.fill'))} 2>/dev/null; "
              f"exec {shlex.quote(sys.executable)} {shlex.quote(str(REPO / 'orchestrate.py'))} "
              f"--config {shlex.quote(str(root / 'pipeline.yml'))}; }}")
    # Without root, a user namespace maps us to root inside it, which may mount a tmpfs.
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    env = {k: v for k, v in os.environ.items() if k not in ("WAREHOUSE_PATH", "LANDING_PATH", "ARTIFACTS_PATH")}
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", *user, "sh", "-c", script],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    if "mount:" in result.stderr and "orchestrate" not in result.stderr:
        pytest.fail(f"cannot mount a tmpfs to fill (needs root or user namespaces): {result.stderr}")
    return result


def _alerts(root: Path) -> list[tuple[str, str]]:
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        return con.execute("select stage, message from validation.alerts").fetchall()


def test_a_full_dbt_folder_names_the_full_folder(tmp_path: Path) -> None:
    write_config(tmp_path)
    result = _run_with_full_folder(tmp_path, tmp_path / "artifacts" / "dbt")
    assert result.returncode == 1, result.stdout[-2000:]
    cause = f"no space left on the device: dbt's target folder {tmp_path / 'artifacts' / 'dbt' / 'target'} is full"
    assert f"stage 'parse' failed: `dbt parse` failed (exit 2): {cause}" in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    ((stage, message),) = _alerts(tmp_path)
    assert stage == "parse" and cause in message and "Free space there" in message


def test_a_full_stages_folder_is_a_clear_error_and_an_alert(tmp_path: Path) -> None:
    write_config(tmp_path)
    stages = tmp_path / "artifacts" / "stages"
    result = _run_with_full_folder(tmp_path, stages)
    assert result.returncode == 1, result.stdout[-2000:]
    expected = (f"stage 'demo_data' finished, but its outputs could not be saved to {stages}: no space left on the "
                f"device: free space in {stages}")
    assert expected in result.stderr, result.stderr[-3000:]
    assert "internal error" not in result.stderr and "OSError" not in result.stderr
    ((stage, message),) = _alerts(tmp_path)
    assert stage == "demo_data" and expected in message
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("select status from ops.stage_runs where stage = 'demo_data'").fetchall() == [("failed",)]
