"""Exceptions raised for bad user input (files, settings). The CLI prints them without a traceback."""

from __future__ import annotations


class SinerecError(Exception):
    """Base class: a problem the user can fix (a file, a setting, an id)."""


class DataFormatError(SinerecError):
    """A malformed row in an input file. The message names the file, the 1-based line and the content."""

    def __init__(self, path: str, line: int, content: str, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.content = content
        self.reason = reason
        shown = content if len(content) <= 200 else content[:200] + "..."
        super().__init__(f"{self.path}, line {line}: {reason}: {shown!r}")


class ConfigError(SinerecError):
    """A bad configuration key or value. The message names the key and the value."""


class DataError(SinerecError):
    """Data a run cannot use (nothing left after the filters, nobody to evaluate). The message names the
    dataset and the counts."""
