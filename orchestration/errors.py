"""Errors raised by the orchestrator. Each subclasses a built-in and says how to fix it."""

from __future__ import annotations


class ConfigError(ValueError):
    """The pipeline config has an unknown key or a bad value."""


class LandingError(ValueError):
    """The landing folder is empty, or a landing file is unreadable, misnamed or off-schema."""


class DbtError(RuntimeError):
    """A dbt invocation failed; the message names the failing models and tests."""


class ValidationError(ValueError):
    """Error-severity data checks failed; the message names each check, column, expected and actual value."""

    def __init__(self, message: str, checks: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.checks = checks
        """Labels of the failing checks, for the alert."""


class PublishError(RuntimeError):
    """Audited tables could not be published, or a consumer found no published version to read."""


class StageError(RuntimeError):
    """A pipeline stage failed; the message names the stage and the cause."""

    def __init__(self, message: str, stage: str | None = None, checks: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.stage = stage
        """The stage that failed."""
        self.checks = checks
        """Labels of the failing checks, when checks made it fail."""
