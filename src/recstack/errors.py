"""Errors a user can act on: each names the problem (file and line, field and value)."""

from __future__ import annotations


class RecstackError(Exception):
    """Base for every error recstack raises on purpose; the CLI prints it without a traceback."""


class DataError(RecstackError):
    """Bad input data: a file that cannot be parsed, a failed checksum, a value out of range."""

    def __init__(self, message: str, *, path: object = None, line: int | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}"
            if line is not None:
                where += f", line {line}"
            where += ": "
        super().__init__(where + message)
        self.path = path
        self.line = line


class OutputError(RecstackError):
    """A place to write to that holds something recstack did not write (it is never deleted)."""


class ConfigError(RecstackError):
    """A hyperparameter or option with a wrong name, type or value."""


class UnknownIdError(RecstackError, KeyError):
    """A user or item id that the model or data set has never seen."""

    def __str__(self) -> str:  # KeyError would add quotes
        return str(self.args[0]) if self.args else ""


class MissingExtraError(RecstackError, ImportError):
    """An optional dependency group (for example `[deep]` or `[web]`) is not installed."""
