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


def _commands(script: Path) -> list[str]:
    """A shell script's command lines: no comments, blank lines, shebang, `set` or `cd` to its repo."""
    lines = [line.strip() for line in script.read_text().splitlines()]
    return [line for line in lines
            if line and not line.startswith("#") and not line.startswith("set ") and not line.startswith("cd ")]


def test_quickstart_has_two_commands_and_ci_runs_exactly_the_test_one() -> None:
    run, test = _quickstart_commands()
    assert "orchestrate.py" in run and "pip install" in run
    # The test command is a script of the repository that does its own set-up, then runs pytest.
    words = test.split()
    script = REPO / (words[1] if words[0] == "bash" else words[0])
    assert len(words) <= 2 and script.is_file() and script.stat().st_mode & 0o111, test
    body = script.read_text()
    assert 'python3 -m venv .venv' in body and '.venv/bin/pip install -e ".[test]"' in body
    assert _commands(script)[-1] == 'exec .venv/bin/python -m pytest "$@"'
    # CI runs that command and nothing else, so a newcomer's machine and CI run the same thing.
    assert _commands(REPO / ".ci" / "run") == [test]


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


def test_no_test_skips_for_want_of_something_the_project_can_install() -> None:
    """scripts/test installs what the suite needs; a test missing it fails and says so."""
    skipping = re.compile(r"pytest\.(skip|importorskip)\(|mark\.skip(if)?\b")
    found = [f"{path.relative_to(REPO)}:{n}" for path in sorted((REPO / "tests").rglob("*.py"))
             for n, line in enumerate(path.read_text().splitlines(), 1) if skipping.search(line)]
    assert not found, found
