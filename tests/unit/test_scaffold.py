"""`orchestrate.py init`'s inference and plan: types, roles, default features, and errors that
name the column or file and what was expected."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from orchestration.landing_layout import partition_day, partition_files, partition_name
from orchestration.scaffold.errors import ScaffoldError
from orchestration.scaffold.inference import InitOptions, infer
from orchestration.scaffold.recipes import identifier
from orchestration.scaffold.writer import plan, render

DAYS = [dt.date(2026, 5, 1) + dt.timedelta(days=d) for d in range(8)]


def _table(n: int = 40) -> pa.Table:
    return pa.table({
        "id": [f"r{i}" for i in range(n)],
        "at": pa.array([dt.datetime(2026, 5, 1, i % 24) for i in range(n)], pa.timestamp("us")),
        "Sepal.Length": [i % 7 + 0.5 for i in range(n)],
        "colour": [["red", "blue"][i % 2] for i in range(n)],
        "flag": [i % 3 == 0 for i in range(n)],
        "y": [i % 2 for i in range(n)],
    })


def _daily(tmp_path: Path, fmt: str = "parquet") -> Path:
    landing = tmp_path / "landing" / "things"
    landing.mkdir(parents=True)
    for day in DAYS:
        (pq.write_table if fmt == "parquet" else pacsv.write_csv)(_table(), landing / f"{day}.{fmt}")
    return landing


def test_names_become_unique_identifiers_never_keywords() -> None:
    taken: set[str] = set()
    assert [identifier(n, taken) for n in ["Sepal.Length", "petalWidth", "order", "1st", "Sepal Length"]] == [
        "sepal_length", "petal_width", "order_value", "c_1st", "sepal_length_2"]


def test_layouts_name_and_date_every_file(tmp_path: Path) -> None:
    (tmp_path / "t" / "date=2026-05-02").mkdir(parents=True)
    (tmp_path / "t" / "date=2026-05-02" / "part-0.csv").write_text("a\n1\n")
    (tmp_path / "t" / "2026-05-01.parquet").write_bytes(b"")
    files = partition_files(tmp_path, "t")
    assert [partition_name(f) for f in files] == ["2026-05-01.parquet", "date=2026-05-02/part-0.csv"]
    assert [partition_day(f) for f in files] == [dt.date(2026, 5, 1), dt.date(2026, 5, 2)]


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_types_and_roles_are_inferred(tmp_path: Path, fmt: str) -> None:
    schema = infer(InitOptions(landing=_daily(tmp_path, fmt), label="y", key="id"))
    assert {c.name: c.kind for c in schema.columns} == {
        "id": "string", "at": "timestamp", "Sepal.Length": "double", "colour": "string", "flag": "boolean",
        "y": "integer"}
    assert (schema.task, schema.timestamp, schema.key, schema.table) == ("binary", "at", "id", "things")
    p = plan(schema)
    assert [f.name for f in p.features] == ["at_value_hour", "at_value_day_of_week", "sepal_length", "sepal_length_z",
                                            "colour_index", "flag"]
    files = render(p, tmp_path / "out")
    assert 'cast("Sepal.Length" as double) as sepal_length' in files["dbt_project/macros/staging/things_columns.sql"]
    assert "/" not in files["pipeline.yml"].split("landing:")[1].split("\n")[0].strip(" ./"), "landing path is relative"


def test_without_key_or_timestamp_the_hash_and_the_partition_day_stand_in(tmp_path: Path) -> None:
    landing = tmp_path / "landing" / "things"
    landing.mkdir(parents=True)
    for day in DAYS:
        pacsv.write_csv(_table().drop_columns(["id", "at"]), landing / f"{day}.csv")
    p = plan(infer(InitOptions(landing=landing, label="y", task="regression")))
    assert (p.key, p.time, p.schema.task) == ("record_key", "landed_at", "regression")
    files = render(p, tmp_path / "out")
    assert "md5(concat_ws(" in files["dbt_project/macros/staging/things_columns.sql"]
    assert "regexp_extract(filename" in files["dbt_project/models/staging/landing/stg_landing__things.sql"]
    assert "event_key" not in files["dbt_project/models/staging/landing/_landing__sources.yml"]


@pytest.mark.parametrize(("options", "message"), [
    ({"label": "nope"}, "--label 'nope' is not a column of .*; its columns are"),
    ({"label": "y", "timestamp": "colour"}, "--timestamp 'colour' is string, expected a timestamp column"),
    ({"label": "colour", "task": "binary"}, "--label 'colour' for a binary task must be boolean or 0/1"),
    ({"label": "y", "key": "flag"}, "--key 'flag' is boolean, expected text or an integer id"),
])
def test_bad_options_name_the_column_and_what_was_expected(tmp_path: Path, options: dict, message: str) -> None:
    with pytest.raises(ScaffoldError, match=message):
        infer(InitOptions(landing=_daily(tmp_path), **options))


def test_bad_folders_say_what_layout_was_expected(tmp_path: Path) -> None:
    with pytest.raises(ScaffoldError, match="not a folder"):
        infer(InitOptions(landing=tmp_path / "missing", label="y"))
    (tmp_path / "Bad-Name").mkdir()
    with pytest.raises(ScaffoldError, match="rename the folder to lower-case"):
        infer(InitOptions(landing=tmp_path / "Bad-Name", label="y"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScaffoldError, match="expected YYYY-MM-DD.parquet or YYYY-MM-DD.csv files, or hive-style"):
        infer(InitOptions(landing=tmp_path / "empty", label="y"))
    (tmp_path / "few").mkdir()
    pq.write_table(_table(), tmp_path / "few" / "2026-05-01.parquet")
    with pytest.raises(ScaffoldError, match="1 day\\(s\\) landed; the time-based split needs at least 7"):
        infer(InitOptions(landing=tmp_path / "few", label="y"))


def test_init_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from orchestration.cli import main

    landing = _daily(tmp_path)
    args = ["init", "--landing", str(landing), "--label", "y", "--out", str(tmp_path / "out")]
    assert main(args) == 0
    assert "next:" in capsys.readouterr().out
    assert main(args) == 2
    assert "would be overwritten" in capsys.readouterr().err
