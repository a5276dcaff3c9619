"""A dbt project that misses a convention the pipeline relies on is told which, where, and how to
fix it, when it is parsed: here the delivery example, copied and broken one convention at a time."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from orchestration import conventions
from orchestration.dbt import DbtContext, run_dbt
from training.dbt_manifest import load_manifest

BYOD = Path(__file__).resolve().parents[2] / "examples" / "delivery" / "dbt_project"
SOURCES = "models/staging/shop/_shop__sources.yml"


def _problems(tmp_path: Path, break_it) -> list[conventions.Problem]:
    project = tmp_path / "dbt_project"
    shutil.copytree(BYOD, project)
    break_it(project)
    ctx = DbtContext(project, tmp_path / "w.duckdb", tmp_path / "landing", tmp_path / "target", tmp_path / "logs", {})
    run_dbt(ctx, ["parse"])
    return conventions.check(load_manifest(ctx.manifest_path), project, "shop.deliveries")


def test_the_delivery_project_follows_every_convention(tmp_path: Path) -> None:
    assert _problems(tmp_path, lambda project: None) == []


@pytest.mark.parametrize("convention, break_it, says, halts", [
    ("generate_schema_name", lambda p: (p / "macros" / "generate_schema_name.sql").unlink(),
     "macros/generate_schema_name.sql is missing or does not append var('wap_schema_suffix')", True),
    ("source relation var", lambda p: (p / SOURCES).write_text((p / SOURCES).read_text().replace(
        "var('shop_deliveries_relation', ", "(")),
     "source shop.deliveries (models/staging/shop/_shop__sources.yml): meta.external_location does not read "
     "var 'shop_deliveries_relation'", True),
    ("meta.landing", lambda p: (p / SOURCES).write_text((p / SOURCES).read_text().replace(
        ", event_key: order_ref, event_time: placed_ts", "")),
     "meta.landing has no event_key or event_time", False),
])
def test_a_missing_convention_is_named_with_its_file(tmp_path: Path, convention: str, break_it, says: str,
                                                     halts: bool) -> None:
    problems = _problems(tmp_path, break_it)
    assert [(p.convention, p.halts) for p in problems] == [(convention, halts)]
    assert says in problems[0].message
    assert problems[0].describe().endswith("(see docs/bring-your-own-data.md)")
