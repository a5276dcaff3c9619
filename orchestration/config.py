"""The pipeline config (``pipeline.yml``): parsed into frozen dataclasses, every key validated."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from orchestration.errors import ConfigError

TASKS = ("binary",)


@dataclass(frozen=True)
class Paths:
    """Where state lives. Relative paths are resolved against the config file's folder."""

    warehouse: Path = Path("data/warehouse.duckdb")
    """The DuckDB warehouse file (env WAREHOUSE_PATH overrides)."""
    landing: Path = Path("data/landing")
    """Landing folder with ``<table>/YYYY-MM-DD.parquet`` partitions (env LANDING_PATH overrides)."""
    artifacts: Path = Path("artifacts")
    """Registry, dbt target and logs (env ARTIFACTS_PATH overrides)."""


@dataclass(frozen=True)
class DemoData:
    """Seeded demo data, generated when the landing folder is empty."""

    generate_if_empty: bool = True
    """Generate demo data into an empty landing folder instead of failing."""
    rows: int = 1_000_000
    """Number of transactions."""
    days: int = 60
    """Number of daily partitions."""
    seed: int = 7
    """Generator seed: same seed, same bytes."""


@dataclass(frozen=True)
class Dbt:
    """The dbt project and the nodes the pipeline reads from it."""

    project_dir: Path = Path("dbt_project")
    """dbt project folder (holds dbt_project.yml and profiles.yml)."""
    source: str = "bank.transactions"
    """``source_name.table`` whose declared columns are the raw input schema."""
    features_model: str = "fct_transaction_features"
    """The features mart; its column meta says key, timestamp, label and features."""
    serving_macro: str = "serving_features"
    """Macro compiled into the bundle's serving SQL."""


@dataclass(frozen=True)
class Split:
    """Time-based split by landing day."""

    train_fraction: float = 0.70
    """Share of days used for training (and for fitted statistics)."""
    valid_fraction: float = 0.15
    """Share of days used for validation and the decision threshold; the rest is test."""


FRESHNESS_CLOCKS = ("latest_partition_end", "now")


@dataclass(frozen=True)
class Validation:
    """Run-level settings of data validation. Each check's threshold and severity live with the
    check, in the dbt yml (see dbt_project/models/staging/bank/_bank__models.yml)."""

    freshness_as_of: str = "latest_partition_end"
    """Clock that dbt source freshness measures the landing data's age against:
    ``latest_partition_end`` (midnight after the newest landing partition's day; fits data with
    fixed dates, such as the demo, and catches a newest day that is empty or stops early),
    ``now`` (the wall clock, for production), or an ISO timestamp (replays and backfills)."""


@dataclass(frozen=True)
class Model:
    """Model family and its hyperparameters."""

    family: str = "hist_gradient_boosting"
    """Registered model family (see ``training.model.MODEL_FAMILIES``)."""
    params: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the estimator."""


@dataclass(frozen=True)
class PipelineConfig:
    """The whole pipeline config."""

    root: Path = Path(".")
    """Folder the config file lives in; relative paths resolve against it."""
    paths: Paths = Paths()
    demo_data: DemoData = DemoData()
    dbt: Dbt = Dbt()
    split: Split = Split()
    model: Model = Model()
    validation: Validation = Validation()
    task: str = "binary"
    """binary (multiclass and regression come with the training issue)."""
    seed: int = 42
    """Seed for everything random in training."""
    source_text: str = ""
    """The config file's text, hashed into lineage."""

    def path(self, p: Path) -> Path:
        return p if p.is_absolute() else (self.root / p).resolve()

    @property
    def warehouse(self) -> Path:
        return self.path(Path(os.environ.get("WAREHOUSE_PATH") or self.paths.warehouse))

    @property
    def landing(self) -> Path:
        return self.path(Path(os.environ.get("LANDING_PATH") or self.paths.landing))

    @property
    def artifacts(self) -> Path:
        return self.path(Path(os.environ.get("ARTIFACTS_PATH") or self.paths.artifacts))

    @property
    def registry(self) -> Path:
        return self.artifacts / "registry"

    @property
    def dbt_project(self) -> Path:
        return self.path(self.dbt.project_dir)


def _build(cls: type, data: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a mapping, naming any unknown key or mistyped value."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in ("root", "source_text")}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(fields)}")
    values = {}
    for name, value in data.items():
        f = fields[name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        key = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(default):
            values[name] = _build(type(default), value, key)
        elif isinstance(default, Path):
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{key}: expected a path string, got {value!r}")
            values[name] = Path(value)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{key}: expected true or false, got {value!r}")
            values[name] = value
        elif isinstance(default, (int, float)) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(default, int) and not isinstance(value, int)):
                raise ConfigError(f"{key}: expected {type(default).__name__}, got {value!r}")
            values[name] = value
        elif isinstance(default, str):
            if not isinstance(value, str):
                raise ConfigError(f"{key}: expected a string, got {value!r}")
            values[name] = value
        elif isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: expected a mapping, got {value!r}")
            values[name] = value
    return cls(**values)


def _validate(cfg: PipelineConfig) -> None:
    if cfg.task not in TASKS:
        raise ConfigError(f"task: {cfg.task!r} is not supported; expected one of {TASKS}")
    s = cfg.split
    if not (0 < s.train_fraction < 1 and 0 < s.valid_fraction < 1 and s.train_fraction + s.valid_fraction < 1):
        raise ConfigError(
            f"split: train_fraction ({s.train_fraction}) and valid_fraction ({s.valid_fraction}) must be in (0, 1) "
            "and sum to less than 1, leaving days for the test split"
        )
    if cfg.demo_data.rows < 100 or cfg.demo_data.days < 3:
        raise ConfigError(f"demo_data: needs rows >= 100 and days >= 3, got rows={cfg.demo_data.rows}, days={cfg.demo_data.days}")
    as_of = cfg.validation.freshness_as_of
    if as_of not in FRESHNESS_CLOCKS:
        try:
            dt.datetime.fromisoformat(as_of)
        except ValueError:
            raise ConfigError(
                f"validation.freshness_as_of: expected one of {FRESHNESS_CLOCKS} or an ISO timestamp, got {as_of!r}"
            ) from None
    if "." not in cfg.dbt.source:
        raise ConfigError(f"dbt.source: expected 'source_name.table', got {cfg.dbt.source!r}")


def load_config(path: Path) -> PipelineConfig:
    """Read and validate the pipeline config at ``path``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found; pass --config PATH (the default is pipeline.yml)")
    text = path.read_text()
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    try:
        cfg = _build(PipelineConfig, data, "")
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    cfg = dataclasses.replace(cfg, root=path.resolve().parent, source_text=text)
    try:
        _validate(cfg)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return cfg
