from pathlib import Path

import pytest

from orchestration.config import load_config
from orchestration.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_repository_config_loads_with_documented_defaults() -> None:
    cfg = load_config(REPO / "pipeline.yml")
    assert cfg.demo_data.rows >= 1_000_000 and cfg.demo_data.days >= 60
    assert cfg.warehouse == (REPO / "data" / "warehouse.duckdb")
    assert cfg.model.family == "hist_gradient_boosting"


def test_environment_overrides_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAREHOUSE_PATH", str(tmp_path / "w.duckdb"))
    assert load_config(REPO / "pipeline.yml").warehouse == tmp_path / "w.duckdb"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("modle: {}", r"unknown key\(s\) \['modle'\]"),
        ("split: {train_fractoin: 0.5}", r"split: unknown key\(s\) \['train_fractoin'\]"),
        ("seed: forty-two", "seed: expected int, got 'forty-two'"),
        ("demo_data: {generate_if_empty: 'yes'}", "demo_data.generate_if_empty: expected true or false"),
        ("split: {train_fraction: 0.9, valid_fraction: 0.2}", "must be in \\(0, 1\\) and sum to less than 1"),
        ("task: ranking", "task: 'ranking' is not supported"),
        ("split: {train_end: 2026-02-01}", "set both train_end and valid_end"),
        ("split: {train_end: 2026-02-01, valid_end: 2026-01-01}", "must be before valid_end"),
        ("split: {train_end: tomorrow, valid_end: 2026-01-01}", "split.train_end: expected a date like 2026-02-12, got 'tomorrow'"),
        ("search: {enabled: true}", "search: when enabled, needs"),
        ("search: {space: {max_iter: 5}}", "search.space: each parameter needs a non-empty list"),
        ("training: {max_rows: 5}", "training.max_rows: must be at least 100"),
        ("validation: {freshness_as_of: yesterday}", "validation.freshness_as_of: expected one of .* or an ISO timestamp"),
        ("[1, 2]", "expected a mapping"),
        ("a: [", "not valid YAML"),
    ],
)
def test_bad_config_names_the_key_and_value(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "pipeline.yml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_missing_config_file_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--config"):
        load_config(tmp_path / "nope.yml")


def test_freshness_clock_accepts_an_iso_timestamp(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yml"
    path.write_text("validation: {freshness_as_of: '2026-03-02T06:00:00'}\n")
    assert load_config(path).validation.freshness_as_of == "2026-03-02T06:00:00"
