"""The pipeline config (``pipeline.yml``): parsed into frozen dataclasses, every key validated."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from orchestration.errors import ConfigError
from orchestration.notify import NOTIFIERS

TASKS = ("binary", "multiclass", "regression")


@dataclass(frozen=True)
class Paths:
    """Where state lives. Relative paths are resolved against the config file's folder."""

    warehouse: Path = Path("data/warehouse.duckdb")
    """The DuckDB warehouse file (env WAREHOUSE_PATH overrides)."""
    landing: Path = Path("data/landing")
    """Landing folder with ``<table>/YYYY-MM-DD.parquet`` (or ``.csv``) partitions, or hive-style
    ``<table>/date=YYYY-MM-DD/`` folders (env LANDING_PATH overrides)."""
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
    """Time-based split by landing day: by fractions of the days, or by explicit dates."""

    train_fraction: float = 0.70
    """Share of days used for training (and for fitted statistics)."""
    valid_fraction: float = 0.15
    """Share of days used for validation and the decision threshold; the rest is test."""
    train_end: dt.date | None = None
    """First validation day; set together with valid_end to override the fractions."""
    valid_end: dt.date | None = None
    """First test day."""


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
class Monitoring:
    """Monitoring and the retraining policy (``orchestration/monitoring/``). Drift is judged by
    effect size (population stability index over the deployed model's frozen bins), never by
    p-values, which flag everything on large samples."""

    drift_psi_threshold: float = 0.2
    """PSI at or above which a monitored column counts as drifted (0.1 is usually read as a
    moderate shift, 0.25 as a large one). Passed to dbt as var ``drift_psi_threshold``."""
    important_features: tuple[str, ...] = ()
    """Monitored fields (the source's names, as they land) or model features (the features mart's
    names, drift over 7 days of landed data) whose drift can trigger a retrain; the others are
    only reported. Empty: drift triggers nothing (list the fields and features to watch; a
    feature that grows with history, such as a 30-day count, drifts by construction)."""
    lookback_days: int = 3
    """The policy reads the newest this many days after the champion's training data."""
    max_auc_drop: float = 0.05
    """Retrain when ROC AUC on labelled served predictions (lookback days) is this far below the
    champion's test ROC AUC."""
    min_positive_labels: int = 30
    """Positive labels needed in the lookback before the performance trigger is judged."""
    min_new_labelled_rows: int = 1_000_000
    """Retrain once this many labelled rows have landed after the champion's training data."""
    max_model_age_days: int = 30
    """Retrain when the newest landed or served day is this many days past the champion's data."""
    replay_rows: int = 5_000
    """Logged predictions (seeded sample) the replay skew audit re-runs per run."""
    label_delay_days: int = 1
    """Simulation: a day's labelled partition lands this many days after its traffic is served."""


@dataclass(frozen=True)
class Model:
    """Model family and its hyperparameters."""

    family: str = "hist_gradient_boosting"
    """hist_gradient_boosting, random_forest or linear (see ``training.model.MODEL_FAMILIES``)."""
    params: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the estimator; unknown ones are named when the model is built."""


@dataclass(frozen=True)
class Search:
    """Optional random hyperparameter search, scored on the validation split."""

    enabled: bool = False
    """Run the search before the final fit."""
    time_budget_seconds: float = 60.0
    """Stop starting new trials after this long."""
    max_trials: int = 20
    """Upper bound on trials."""
    space: dict[str, Any] = field(default_factory=dict)
    """Parameter -> list of candidate values; each trial draws one per parameter (seeded)."""


@dataclass(frozen=True)
class Training:
    """How much data the fit may hold in memory."""

    max_rows: int = 5_000_000
    """Above this many training rows, train on a seeded, hash-based sample of this size."""


@dataclass(frozen=True)
class Parity:
    """The training/serving parity check run before every deploy."""

    rows: int = 10_000
    """Held-out raw rows replayed through the serving path (all of them if there are fewer)."""
    feature_rtol: float = 1e-9
    """Relative tolerance for float features; integers and nulls must match exactly."""
    score_atol: float = 1e-6
    """Absolute tolerance between served scores and offline ONNX scores on the mart rows."""


@dataclass(frozen=True)
class Slice:
    """A known-difficult slice of the scored holdout, with its own metric thresholds."""

    name: str
    """Shown in the gate report."""
    where: str | None = None
    """SQL predicate over the holdout's columns (features, label, ``score``), e.g. ``is_night = 1``."""
    by: str | None = None
    """Or a column: one slice per distinct value (e.g. every merchant category)."""
    thresholds: dict[str, float] = field(default_factory=dict)
    """Metric -> minimum (maximum for rmse, mae, log_loss, brier)."""
    min_rows: int = 200
    """Slices with fewer rows (or a single class) are reported as not evaluable and do not block."""


@dataclass(frozen=True)
class Gates:
    """What a candidate must pass before it is deployed."""

    metrics: dict[str, float] = field(default_factory=dict)
    """Validation metric -> minimum (maximum for rmse, mae, log_loss, brier)."""
    slices: tuple[Slice, ...] = ()
    """Per-slice thresholds on the scored test holdout."""
    max_model_bytes: int = 50_000_000
    """Budget for model.onnx."""
    max_p99_latency_ms: float = 50.0
    """Budget for p99 of single-record predict through the full serving path, on this machine."""
    latency_samples: int = 300
    """Single-record predictions timed for the latency gate."""
    regression_tolerance: float = 0.005
    """How much worse than the champion (primary metric, same holdout) a candidate may be."""


@dataclass(frozen=True)
class Retry:
    """How a stage retries a transient error (a DuckDB file lock held by another process)."""

    attempts: int = 4
    """Tries in all, the first included; 1 means no retry."""
    backoff_seconds: float = 2.0
    """Wait before the second try; each later wait doubles."""


@dataclass(frozen=True)
class Retries:
    """Retry policy: a default and per-stage overrides. Errors that are not transient never retry."""

    default: Retry = Retry()
    stages: dict[str, Any] = field(default_factory=dict)
    """Stage name -> {attempts, backoff_seconds}, e.g. ``{train: {attempts: 1}}``."""

    def for_stage(self, name: str) -> Retry:
        return _build(Retry, {**dataclasses.asdict(self.default), **self.stages.get(name, {})}, f"retries.stages.{name}")


@dataclass(frozen=True)
class Alerts:
    """Where alerts go (see ``orchestration/notify.py``)."""

    notifiers: tuple[str, ...] = ("stderr", "table", "webhook", "command")
    """Any of stderr, table, webhook ($PIPELINE_ALERT_WEBHOOK), command ($PIPELINE_ALERT_COMMAND)."""


@dataclass(frozen=True)
class OnlineStore:
    """Where entity state lives for serving (serving/store/): the materialize stage writes landed
    events there after every publish, and servers read and write it."""

    url: str = "embedded:online_store"
    """``embedded:<folder>`` (LMDB; a relative folder is under the artifacts folder) or
    ``redis://host:port/db``. ``ONLINE_STORE_URL`` overrides it."""


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
    parity: Parity = Parity()
    search: Search = Search()
    training: Training = Training()
    gates: Gates = Gates()
    validation: Validation = Validation()
    retries: Retries = Retries()
    alerts: Alerts = Alerts()
    monitoring: Monitoring = Monitoring()
    online_store: OnlineStore = OnlineStore()
    task: str = "binary"
    """binary, multiclass or regression."""
    label: str | None = None
    """Label column of the features mart (meta role label); None takes the only one."""
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
    def online_store_url(self) -> str:
        """The online store's URL, an embedded folder resolved against the artifacts folder."""
        url = os.environ.get("ONLINE_STORE_URL") or self.online_store.url
        if url.startswith("embedded:"):
            folder = Path(url.removeprefix("embedded:"))
            return f"embedded:{folder if folder.is_absolute() else self.artifacts / folder}"
        return url

    @property
    def dbt_project(self) -> Path:
        return self.path(self.dbt.project_dir)


def _convert(hint: Any, value: Any, key: str) -> Any:
    """Check ``value`` against the type hint ``hint``; name the key and the value when it does not fit."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, key)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (hint is int and not isinstance(value, int)):
            raise ConfigError(f"{key}: expected {hint.__name__}, got {value!r}")
        return hint(value)
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if hint is Path:
        if isinstance(value, str) and value:
            return Path(value)
        raise ConfigError(f"{key}: expected a path string, got {value!r}")
    if hint is dt.date:
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            raise ConfigError(f"{key}: expected a date like 2026-02-12, got {value!r}") from None
    if origin is dict:
        if isinstance(value, dict):
            return value
        raise ConfigError(f"{key}: expected a mapping, got {value!r}")
    if origin is tuple:
        if isinstance(value, list):
            return tuple(_convert(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
        raise ConfigError(f"{key}: expected a list, got {value!r}")
    raise TypeError(f"config field {key} has an unsupported type {hint}")  # a bug here, not in the config


def _build(cls: type, data: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a mapping, naming any unknown key or mistyped value."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.name not in ("root", "source_text")}
    unknown = sorted(set(data) - fields, key=str)
    if unknown:
        raise ConfigError(f"{where or 'config'}: unknown key(s) {unknown}; expected some of {sorted(fields)}")
    return cls(**{name: _convert(hints[name], value, f"{where}.{name}" if where else name)
                  for name, value in data.items()})


def _validate(cfg: PipelineConfig) -> None:
    if cfg.task not in TASKS:
        raise ConfigError(f"task: {cfg.task!r} is not supported; expected one of {TASKS}")
    s = cfg.split
    if (s.train_end is None) != (s.valid_end is None):
        raise ConfigError(f"split: set both train_end and valid_end, or neither (got {s.train_end}, {s.valid_end})")
    if s.train_end is not None and s.valid_end is not None and not s.train_end < s.valid_end:
        raise ConfigError(f"split: train_end ({s.train_end}) must be before valid_end ({s.valid_end})")
    if not (0 < s.train_fraction < 1 and 0 < s.valid_fraction < 1 and s.train_fraction + s.valid_fraction < 1):
        raise ConfigError(
            f"split: train_fraction ({s.train_fraction}) and valid_fraction ({s.valid_fraction}) must be in (0, 1) "
            "and sum to less than 1, leaving days for the test split"
        )
    if cfg.demo_data.rows < 100 or cfg.demo_data.days < 3:
        raise ConfigError(f"demo_data: needs rows >= 100 and days >= 3, got rows={cfg.demo_data.rows}, days={cfg.demo_data.days}")
    if cfg.parity.rows < 1 or not 0 <= cfg.parity.feature_rtol < 1e-3 or not 0 <= cfg.parity.score_atol < 1e-2:
        raise ConfigError(
            f"parity: rows must be >= 1, feature_rtol in [0, 1e-3) and score_atol in [0, 1e-2); got {cfg.parity}"
        )
    if cfg.training.max_rows < 100:
        raise ConfigError(f"training.max_rows: must be at least 100, got {cfg.training.max_rows}")
    if cfg.search.enabled and (cfg.search.max_trials < 1 or cfg.search.time_budget_seconds <= 0 or not cfg.search.space):
        raise ConfigError("search: when enabled, needs max_trials >= 1, time_budget_seconds > 0 and a non-empty space")
    bad_space = [k for k, v in cfg.search.space.items() if not isinstance(v, list) or not v]
    if bad_space:
        raise ConfigError(f"search.space: each parameter needs a non-empty list of candidates; bad: {bad_space}")
    for i, sl in enumerate(cfg.gates.slices):
        if (sl.where is None) == (sl.by is None) or not sl.thresholds:
            raise ConfigError(f"gates.slices[{i}] ({sl.name!r}): set exactly one of `where` or `by`, and some `thresholds`")
    as_of = cfg.validation.freshness_as_of
    if as_of not in FRESHNESS_CLOCKS:
        try:
            dt.datetime.fromisoformat(as_of)
        except ValueError:
            raise ConfigError(
                f"validation.freshness_as_of: expected one of {FRESHNESS_CLOCKS} or an ISO timestamp, got {as_of!r}"
            ) from None
    for name in cfg.retries.stages:
        retry = cfg.retries.for_stage(name)
        if retry.attempts < 1 or retry.backoff_seconds < 0:
            raise ConfigError(f"retries.stages.{name}: attempts must be >= 1 and backoff_seconds >= 0, got {retry}")
    if cfg.retries.default.attempts < 1 or cfg.retries.default.backoff_seconds < 0:
        raise ConfigError(f"retries.default: attempts must be >= 1 and backoff_seconds >= 0, got {cfg.retries.default}")
    unknown = [n for n in cfg.alerts.notifiers if n not in NOTIFIERS]
    if unknown:
        raise ConfigError(f"alerts.notifiers: unknown notifier(s) {unknown}; expected some of {sorted(NOTIFIERS)}")
    m = cfg.monitoring
    if m.drift_psi_threshold <= 0 or m.lookback_days < 1 or not 0 < m.max_auc_drop < 1 or m.min_positive_labels < 1 \
            or m.min_new_labelled_rows < 1 or m.max_model_age_days < 1 or m.replay_rows < 0 or m.label_delay_days < 0:
        raise ConfigError(
            "monitoring: needs drift_psi_threshold > 0, lookback_days >= 1, max_auc_drop in (0, 1), "
            "min_positive_labels >= 1, min_new_labelled_rows >= 1, max_model_age_days >= 1, replay_rows >= 0 "
            f"and label_delay_days >= 0; got {m}"
        )
    if not cfg.online_store.url.startswith(("embedded:", "redis://", "rediss://")):
        raise ConfigError(f"online_store.url: expected embedded:<folder> or redis://host:port/db, got {cfg.online_store.url!r}")
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
