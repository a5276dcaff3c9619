"""Errors of the monitoring package. Each subclasses a built-in and says how to fix it."""

from __future__ import annotations


class SimulationError(ValueError):
    """A simulation option is invalid or a simulated step failed; the message says which and why."""


class ReplayError(RuntimeError):
    """The replay skew audit could not run (e.g. the bundle that served is not in the registry)."""
