"""Entity state: window aggregates over an entity's recent events (filled in for live state)."""

from __future__ import annotations

from typing import Any

from sqlglot import exp

CONSTRUCTS: tuple = ()


def is_state_select(select: exp.Expression) -> bool:
    return False


def state_scope(c: Any, select: exp.Expression, where: str) -> Any:
    raise NotImplementedError
