"""Errors raised by the orchestrator. Each subclasses a built-in and says how to fix it."""

from __future__ import annotations

import errno


class _NamesChecks(Exception):
    """An error caused by failed checks; ``checks`` names them for the alert."""

    def __init__(self, message: str, checks: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.checks = checks
        """Labels of the failing checks (``check on table.column``)."""


class ConfigError(ValueError):
    """The pipeline config has an unknown key or a bad value."""


class LandingError(_NamesChecks, ValueError):
    """The landing folder is empty, or a landing file is unreadable, misnamed, off-schema or changed."""


class DbtError(RuntimeError):
    """A dbt invocation failed; the message names the failing models and tests."""


class ValidationError(_NamesChecks, ValueError):
    """Error-severity data checks failed; the message names each check, column, expected and actual value."""


class PublishError(RuntimeError):
    """Audited tables could not be published, or a consumer found no published version to read."""


class StageError(_NamesChecks, RuntimeError):
    """A pipeline stage failed; the message names the stage and the cause."""

    def __init__(self, message: str, stage: str | None = None, checks: tuple[str, ...] = ()) -> None:
        super().__init__(message, checks)
        self.stage = stage
        """The stage that failed."""


_FULL = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "the disk quota is exhausted",
         errno.EFBIG: "the file grew past the size limit"}


def os_cause(exc: OSError, fix: str = "free space there, or point the path elsewhere in the config") -> str:
    """An ``OSError`` as a cause a person can act on: a full disk is named as one, with the path
    when the error has it and ``fix`` (what to do about it)."""
    where = f" writing {exc.filename}" if exc.filename else ""
    if exc.errno in _FULL:
        return f"{_FULL[exc.errno]}{where}: {fix}"
    return f"{exc.strerror or exc}{where}"
