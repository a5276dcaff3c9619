"""Errors raised by the orchestrator. Each subclasses a built-in and says how to fix it."""


class ConfigError(ValueError):
    """The pipeline config has an unknown key or a bad value."""


class LandingError(ValueError):
    """The landing folder is empty, or a landing file is unreadable, misnamed or off-schema."""


class DbtError(RuntimeError):
    """A dbt invocation failed; the message names the failing models and tests."""


class StageError(RuntimeError):
    """A pipeline stage failed; the message names the stage and the cause."""
