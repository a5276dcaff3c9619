"""Errors raised by the serving runtime. Each subclasses a built-in and says how to fix it."""

from __future__ import annotations

from dataclasses import dataclass


class BundleError(ValueError):
    """A model bundle is missing, corrupt, unsafe or of an unknown format; it is not loaded."""


class RegistryError(LookupError):
    """The registry has no champion, or its pointer names a bundle that is not there."""


@dataclass(frozen=True)
class FieldProblem:
    """One thing wrong with one field of one input record."""

    record: int
    """Index of the record in the request (0 for a single record)."""
    field: str
    """Name of the raw input field."""
    problem: str
    """What is wrong, with the expected and the actual value or type."""

    def __str__(self) -> str:
        return f"record {self.record}, field {self.field!r}: {self.problem}"


class InputValidationError(ValueError):
    """Records do not match the bundle's raw input schema. Nothing was scored."""

    def __init__(self, problems: list[FieldProblem], *, limit: int = 20) -> None:
        self.problems = problems
        shown = "; ".join(str(p) for p in problems[:limit])
        more = f" (and {len(problems) - limit} more)" if len(problems) > limit else ""
        super().__init__(f"{len(problems)} invalid field(s): {shown}{more}")


class FeatureComputationError(ValueError):
    """The feature SQL raises for these records (DuckDB's own error: a value out of a cast's range,
    the logarithm of zero...), as the warehouse's build would for such data. Nothing was scored."""


@dataclass(frozen=True)
class KeyFileProblem:
    """One thing wrong with an API key file."""

    field: str
    """Where in the file: ``keys.ci.scopes``, say (``$`` for the whole document)."""
    expected: str
    """What belongs there."""
    actual: str
    """What is there."""

    def __str__(self) -> str:
        return f"field {self.field!r}: expected {self.expected}, got {self.actual}"


class KeyFileError(ValueError):
    """An API key file cannot be read or is malformed. At start the server refuses to run; on a
    reload it keeps the keys it had."""

    def __init__(self, path: str, problems: list[KeyFileProblem]) -> None:
        self.path = path
        self.problems = problems
        shown = "; ".join(str(p) for p in problems)
        super().__init__(f"API key file {path}: {shown}. Fix the file (or reissue keys with "
                         "`python -m serving.auth issue --file ...`); see docs/auth.md")
