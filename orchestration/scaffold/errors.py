"""Errors of ``orchestrate.py init``: each says what was expected and how to fix it."""


class ScaffoldError(ValueError):
    """The landing folder or the options cannot make a working project (message names the file or column)."""
