"""The repository keeps its promises about layout, docs and the light serving runtime."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _quickstart_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    assert readme.lstrip().startswith("# "), "README starts with its title"
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the Quickstart section has exactly one code block"
    return [line for line in blocks[0].splitlines() if line.strip() and not line.startswith("#")]


def test_quickstart_has_two_commands_and_ci_runs_the_test_one() -> None:
    run, test = _quickstart_commands()
    assert "orchestrate.py" in run and "pip install" in run
    assert "pytest" in test and "pip install" in test
    assert test in (REPO / ".ci" / "run").read_text().splitlines()


def test_serving_imports_nothing_from_training_dbt_or_sklearn() -> None:
    code = (
        "import importlib, pkgutil, sys, serving;"
        "[importlib.import_module(f'serving.{m.name}') for m in pkgutil.iter_modules(serving.__path__) if m.name != '__main__'];"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('training', 'orchestration', 'dbt', 'sklearn', 'skl2onnx', 'pandas', 'onnx', 'mlflow'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_state_is_ignored_by_git() -> None:
    ignored = (REPO / ".gitignore").read_text().split()
    for path in ("/data/", "/artifacts/", "dbt_project/target/", "dbt_project/logs/", "*.duckdb"):
        assert path in ignored
