"""The monitoring models as a template for another dbt project.

They are written once, in the demo project, for any dataset (see
``dbt_project/macros/monitoring/monitored_project.sql``): their schemas and the ``monitoring``
tag are in their own yml, and what they read about a project comes from four vars. ``init``
copies them into the project it writes, without the demo's dbt unit tests (their fixtures are
the demo's tables), and puts the vars in its ``dbt_project.yml``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

DEMO_PROJECT = Path(__file__).resolve().parents[2] / "dbt_project"
FOLDERS = ("macros/monitoring", "models/staging/serving", "models/marts/monitoring")
"""Everything monitoring needs, relative to a dbt project; nothing else in the demo is read."""


def project_vars(source: str, features_model: str, task: str, label: str | None = None) -> dict[str, Any]:
    """The vars a project's ``dbt_project.yml`` sets for the monitoring models (the orchestrator
    passes the same from the pipeline config; these serve a standalone ``dbt build``)."""
    return {"ml_source": source, "ml_features_model": features_model, "ml_label": label, "ml_task": task,
            "prediction_logs_path": None, "drift_psi_threshold": 0.2}


def _without_unit_tests(text: str) -> str:
    head, found, _ = text.partition("\nunit_tests:\n")
    return head.rstrip("\n") + "\n" if found else text


def copy_monitoring(project_dir: Path, demo: Path = DEMO_PROJECT) -> list[Path]:
    """Write the monitoring macros and models into ``project_dir``; return the files written."""
    written = []
    for folder in FOLDERS:
        for path in sorted((demo / folder).iterdir()):
            if path.suffix not in (".sql", ".yml"):
                continue
            target = project_dir / folder / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            text = path.read_text()
            target.write_text(_without_unit_tests(text) if path.suffix == ".yml" else text)
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestration.monitoring.template",
                                     description="Copy the monitoring models into a dbt project.")
    parser.add_argument("project_dir", type=Path, help="the dbt project (holds dbt_project.yml)")
    args = parser.parse_args(argv)
    if not (args.project_dir / "dbt_project.yml").is_file():
        parser.error(f"{args.project_dir} holds no dbt_project.yml: pass the dbt project's folder")
    written = copy_monitoring(args.project_dir)
    print(f"wrote {len(written)} files under {args.project_dir}; set the vars ml_source, ml_features_model, "
          "ml_label and ml_task in its dbt_project.yml (see docs/monitoring.md#monitoring-models)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
