"""The conventions a dbt project follows so the pipeline can run it, checked once it is parsed.

A project that misses one would otherwise fail later and elsewhere (publish cannot find the
audited schemas), or not fail at all (staging reads every landing file instead of the ingested
partitions). Each problem names the convention, the file it belongs in and how to fix it; the
ones the pipeline cannot run without halt the run, the others are warnings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

GUIDE = "docs/bring-your-own-data.md"


@dataclass(frozen=True)
class Problem:
    """One convention a project does not follow."""

    convention: str
    """Short name, e.g. ``generate_schema_name``."""
    message: str
    """What is wrong, where, and how to fix it."""
    halts: bool
    """True when the pipeline cannot run the project as it is."""

    def describe(self) -> str:
        return f"convention {self.convention}: {self.message} (see {GUIDE})"


def _source_node(manifest: dict[str, Any], source: str) -> dict[str, Any] | None:
    source_name, _, table = source.partition(".")
    return next((n for n in manifest["sources"].values()
                 if n["source_name"] == source_name and n["name"] == table), None)


def check(manifest: dict[str, Any], project_dir: Path, source: str) -> list[Problem]:
    """Every convention the project at ``project_dir`` (parsed into ``manifest``) does not follow."""
    problems: list[Problem] = []
    project = manifest["metadata"]["project_name"]
    schema_macro = manifest["macros"].get(f"macro.{project}.generate_schema_name")
    if schema_macro is None or "wap_schema_suffix" not in schema_macro.get("macro_sql", ""):
        problems.append(Problem(
            "generate_schema_name",
            f"{project_dir}/macros/generate_schema_name.sql is missing or does not append var('wap_schema_suffix'): "
            "the pipeline builds every model into <schema>_audit, checks it there, and publishes it after "
            "(write-audit-publish); copy dbt_project/macros/generate_schema_name.sql into the project", True))
    node = _source_node(manifest, source)
    if node is not None:
        var = source.replace(".", "_") + "_relation"
        path = project_dir / node["original_file_path"]
        text = path.read_text() if path.is_file() else ""
        if var not in text:
            problems.append(Problem(
                "source relation var",
                f"source {source} ({node['original_file_path']}): meta.external_location does not read var "
                f"'{var}', so staging would read the landing files directly (every file, unchecked) instead of "
                f"the partitions ingest checked and loaded; write external_location: \"{{{{ var('{var}', "
                f"\"read_parquet('<landing>/{node['name']}/*.parquet', filename = true)\") }}}}\"", True))
        landing = (node.get("meta") or {}).get("landing") or {}
        missing = [k for k in ("event_key", "event_time") if not landing.get(k)]
        if missing:
            problems.append(Problem(
                "meta.landing",
                f"source {source} ({node['original_file_path']}): meta.landing has no {' or '.join(missing)}; "
                "ingest checks each event key and time against its file, and monitoring and the replay audit "
                "join a served record to what landed by them", False))
    return problems
