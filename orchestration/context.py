"""What stages share: the run context and the stage record."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orchestration.config import PipelineConfig
from orchestration.dbt import DbtContext
from training.data import SplitBoundaries


@dataclass
class RunContext:
    """What one pipeline run shares between stages."""

    cfg: PipelineConfig
    run_id: str
    echo: Callable[[str], None]
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def source_table(self) -> str:
        return self.cfg.dbt.source.split(".", 1)[1]

    def dbt(self) -> DbtContext:
        split: SplitBoundaries | None = self.state.get("split")
        return DbtContext(
            project_dir=self.cfg.dbt_project,
            warehouse=self.cfg.warehouse,
            landing=self.cfg.landing,
            target_dir=self.cfg.artifacts / "dbt" / "target",
            log_dir=self.cfg.artifacts / "dbt" / "logs",
            vars={**({"train_end": split.train_end.isoformat(), "valid_end": split.valid_end.isoformat()} if split else {}),
                  **self.state.get("dbt_vars", {})},
        )


@dataclass(frozen=True)
class Stage:
    """One node of the DAG."""

    name: str
    """Stage name, used on the command line and in messages."""
    description: str
    """One line for `plan` and `--help`."""
    inputs: tuple[str, ...]
    """State keys (or external inputs in angle brackets) the stage reads."""
    outputs: tuple[str, ...]
    """State keys (or external outputs in angle brackets) the stage writes."""
    run: Callable[[RunContext], dict[str, Any]]
