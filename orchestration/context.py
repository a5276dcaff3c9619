"""What stages share: the run context, the stage record and the state between stages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orchestration.config import PipelineConfig
from orchestration.dbt import DbtContext
from training.data import SplitBoundaries


class RunState(dict):
    """Values stages hand each other. A value missing from this run (its producer was skipped) is
    loaded on first read by ``loader``; every read is noted, so the engine can refuse a stage that
    reads what it did not declare (an undeclared input would not be in its key)."""

    def __init__(self) -> None:
        super().__init__()
        self.loader: Callable[[str], Any] | None = None
        self.reads: set[str] = set()

    def __getitem__(self, name: str) -> Any:
        self.reads.add(name)
        return super().__getitem__(name)

    def __missing__(self, name: str) -> Any:
        if self.loader is None:
            raise KeyError(name)
        saved = set(self.reads)
        value = self.loader(name)  # what a loader reads (spec needs the manifest) is not the stage's read
        self.reads = saved
        self[name] = value
        return value

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default


@dataclass
class RunContext:
    """What one pipeline run shares between stages."""

    cfg: PipelineConfig
    run_id: str
    echo: Callable[[str], None]
    state: RunState = field(default_factory=RunState)
    durations: dict[str, float] = field(default_factory=dict)
    """Seconds per stage that ran in this run."""
    current_stage: str | None = None
    warnings: list[str] = field(default_factory=list)
    """Pipeline-health and other warnings raised during the run (sent as alerts at its end)."""
    backfill: tuple[Any, Any] | None = None
    """(start, end) days to reload from the landing folder, for ``orchestrate.py backfill``."""

    @property
    def source_table(self) -> str:
        return self.cfg.dbt.source.split(".", 1)[1]

    def dbt(self, split: SplitBoundaries | None = None, dbt_vars: dict[str, Any] | None = None) -> DbtContext:
        """A dbt invocation's context; stages that build pass the split and the vars ingest set."""
        return DbtContext(
            project_dir=self.cfg.dbt_project,
            warehouse=self.cfg.warehouse,
            landing=self.cfg.landing,
            target_dir=self.cfg.artifacts / "dbt" / "target",
            log_dir=self.cfg.artifacts / "dbt" / "logs",
            vars={**({"train_end": split.train_end.isoformat(), "valid_end": split.valid_end.isoformat()} if split else {}),
                  **(dbt_vars or {})},
        )


@dataclass(frozen=True)
class Stage:
    """One node of the DAG. Its key hashes everything it reads, so an unchanged stage is skipped."""

    name: str
    """Stage name, used on the command line and in messages."""
    description: str
    """One line for `plan` and `--help`."""
    inputs: tuple[str, ...]
    """State values it reads (see ``orchestration/outputs.py``); their digests are in its key."""
    outputs: tuple[str, ...]
    """State values it writes; persisted so later runs can skip it."""
    run: Callable[[RunContext], dict[str, Any]]
    covered: tuple[str, ...] = ()
    """State values it reads whose relevant part is already in its key through another input
    (evaluate reads the manifest; its key holds the features' lineage digest, not the whole project)."""
    sources: tuple[str, ...] = ()
    """External inputs hashed into its key (``orchestration.engine.SOURCES``): landing files, dbt files."""
    config: tuple[str, ...] = ()
    """Config sections hashed into its key."""
    effects: tuple[str, ...] = ()
    """What it changes outside the run state (warehouse schemas, registry), for `plan` and docs."""
    when: Callable[[RunContext], str | None] | None = None
    """Returns a reason to skip it in this run (e.g. the landing folder already has data), or None."""
