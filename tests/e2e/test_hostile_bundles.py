"""Hostile bundles: a real pipeline bundle, edited and rehashed as serving/bundle.py computes the
id (so the integrity check passes), is refused on load with a message, on every feature path."""

import json
import shutil
from pathlib import Path

import pytest

from serving import Predictor
from serving.bundle import GATE_REPORT, MANIFEST, SQL_FILE, content_digest, load_bundle
from serving.errors import BundleError
from serving.registry import resolve_bundle_path
from tests.conftest import PipelineRun

pytestmark = pytest.mark.slow


def rehash(bundle: Path, out: Path, sql: str | None = None, manifest: dict | None = None) -> Path:
    """Copy ``bundle`` with serving.sql and manifest fields replaced, renamed to its new content id."""
    tmp = Path(shutil.copytree(bundle, out / "tmp"))
    (tmp / GATE_REPORT).unlink(missing_ok=True)
    if sql is not None:
        (tmp / SQL_FILE).write_text(sql)
    raw = json.loads((tmp / MANIFEST).read_text())
    raw.update(manifest or {})
    body = {k: v for k, v in raw.items() if k != "bundle_id"}
    names = [*raw["frozen_tables"].values(), "model.onnx", SQL_FILE, *(["fused.onnx"] if raw.get("fused") else [])]
    files = {n: (tmp / n).read_bytes() for n in names if (tmp / n).is_file()}
    raw["bundle_id"] = content_digest(files, body)
    (tmp / MANIFEST).write_text(json.dumps(raw, indent=2, sort_keys=True))
    return Path(shutil.move(tmp, out / raw["bundle_id"]))


@pytest.fixture
def champion(pipeline_run: PipelineRun) -> Path:
    return resolve_bundle_path(pipeline_run.registry)


def _sql(champion: Path) -> str:
    return (champion / SQL_FILE).read_text()


def _refused(bundle: Path, match: str) -> None:
    with pytest.raises(BundleError, match=match):
        load_bundle(bundle)
    for path in ("auto", "sql", "fused"):
        with pytest.raises(BundleError, match=match):
            Predictor.load(bundle, path=path, store=f"embedded:{bundle.parent / 'store'}")


def test_a_rehashed_copy_loads(champion: Path, tmp_path: Path) -> None:
    """The rehash is right: an unedited copy loads, so each refusal below is the edit's."""
    copy = rehash(champion, tmp_path)
    assert load_bundle(copy).manifest.bundle_id == copy.name


@pytest.mark.parametrize("prefix, kinds", [
    ("copy (select * from fitted_user_state_snapshot) to '.tmp/exfil.csv';\n", r"\['COPY', 'SELECT'\]"),
    ("update fitted_category_vocab set merchant_category = 'x';\n", r"\['UPDATE', 'SELECT'\]"),
    ("attach ':memory:' as m;\n", r"\['ATTACH', 'SELECT'\]"),
    ("pragma enable_profiling;\n", r"\['PRAGMA', 'SELECT'\]"),
    ("set memory_limit = '100GB';\n", r"\['SET', 'SELECT'\]"),
])
def test_statements_before_the_select_are_refused(champion: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  prefix: str, kinds: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".tmp").mkdir()
    bundle = rehash(champion, tmp_path, sql=prefix + _sql(champion))
    _refused(bundle, f"serving.sql holds statements {kinds}, expected exactly one SELECT")
    assert not list((tmp_path / ".tmp").iterdir())  # nothing was exfiltrated


def test_a_second_statement_after_the_select_is_refused(champion: Path, tmp_path: Path) -> None:
    bundle = rehash(champion, tmp_path, sql=_sql(champion).rstrip().rstrip(";") + ";\nselect 42;")
    _refused(bundle, r"\['SELECT', 'SELECT'\], expected exactly one SELECT")


@pytest.mark.parametrize("sql, what", [
    ("select * from read_csv('/etc/passwd')", "table function read_csv"),
    ("select * from '/etc/passwd'", "relation '/etc/passwd'"),
    ("select * from warehouse.main.transactions", "another schema"),
    ("select * from request, duckdb_settings()", "table function duckdb_settings"),
])
def test_a_select_reading_anything_else_is_refused(champion: Path, tmp_path: Path, sql: str, what: str) -> None:
    _refused(rehash(champion, tmp_path, sql=sql), f"reads what a bundle may not: .*{what}")


def test_an_injected_frozen_table_name_is_refused(champion: Path, tmp_path: Path) -> None:
    raw = json.loads((champion / MANIFEST).read_text())
    name, rel = sorted(raw["frozen_tables"].items())[0]
    evil = "x\" as select * from __frozen; set memory_limit='100GB'; create table \"y"
    frozen = {**{k: v for k, v in raw["frozen_tables"].items() if k != name}, evil: rel}
    _refused(rehash(champion, tmp_path, manifest={"frozen_tables": frozen}), "frozen_tables key .* is not a plain identifier")


def test_a_frozen_table_outside_tables_is_refused(champion: Path, tmp_path: Path) -> None:
    raw = json.loads((champion / MANIFEST).read_text())
    name, rel = sorted(raw["frozen_tables"].items())[0]
    frozen = {**raw["frozen_tables"], name: rel.replace("tables/", "tables/../tables/")}
    _refused(rehash(champion, tmp_path, manifest={"frozen_tables": frozen}), f"expected 'tables/{name}.parquet'")


def test_frozen_tables_are_read_only(champion: Path, tmp_path: Path) -> None:
    predictor = Predictor.load(champion, path="sql", store=f"embedded:{tmp_path / 'store'}")
    try:
        name = sorted(predictor.bundle.tables)[0]
        with pytest.raises(Exception, match="(?i)update|base table|catalog"):
            predictor._engine.cursor().execute(f'update "{name}" set rowid = 0')
        assert predictor._engine.cursor().execute("select current_setting('temp_directory')").fetchone()[0] == ""
    finally:
        predictor.close()


def test_the_gate_report_decides_nothing(champion: Path, tmp_path: Path) -> None:
    """gate_report.json sits outside the id: editing it does not change the served path."""
    copy = rehash(champion, tmp_path)
    before = Predictor.load(copy, store=f"embedded:{tmp_path / 'store'}")
    path = before.feature_path
    before.close()
    (copy / GATE_REPORT).write_text(json.dumps([{"gate": "fused ONNX parity", "passed": path != "fused"}]))
    after = Predictor.load(copy, store=f"embedded:{tmp_path / 'store'}")
    try:
        assert after.feature_path == path
    finally:
        after.close()
