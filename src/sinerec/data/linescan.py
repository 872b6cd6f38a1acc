"""The authority on what a malformed line is: the exact, line-by-line check of a delimited body in Python.

The streaming parser (``sinerec.data.delimited``) only calls it on the one block whose fast parse looked
wrong, so a malformed line costs a rescan of that block, not of the file. :func:`scan` returns the bad
records as :data:`BadLine` tuples; :func:`report_bad_lines` turns them into the error or the warning.
"""

from __future__ import annotations

import csv
import math
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import pandas as pd

from sinerec.errors import DataFormatError

__all__ = ["MAX_ID_LENGTH", "TIMESTAMP_LIMIT", "BadLine", "Block", "Field", "check_value",
           "parse_datetimes", "records", "report_bad_lines", "scan", "split_fields", "without_lines"]

# A number as a CSV parser accepts it (no "nan"/"inf": a timestamp or rating must be finite).
_NUMBER_RE = re.compile(r"\s*[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)\s*")
# How many skipped lines one warning spells out.
_WARN_SHOWN = 5
# The package whose frames a warning skips to point at the user's call.
_DATA_PACKAGE = Path(__file__).resolve().parent

#: A malformed record: (first line, last line, content, reason); lines are 1-based in the file.
BadLine = tuple[int, int, str, str]


@dataclass(frozen=True)
class Field:
    """What one column of a delimited file must hold: ``index`` is its 0-based position, ``label`` its name in
    messages ("missing user id"), and

    kind: "id" (non-empty; int64 if every value is an integer, else str), "num" (finite float),
    "time" (finite number; int64 when every value is integral, else float64; with ``datetime`` also ISO 8601
    strings, converted to unix seconds), "choice" (one of ``choices``), "text" (anything, empty -> "").

    ``compact`` asks for the smallest storage of the same values: an integer id or time column is int32 when
    every value fits (else int64), a choice column a pandas Categorical of the sorted choices (one byte per
    line instead of a str object).
    """

    index: int
    kind: str
    label: str
    choices: frozenset[str] = frozenset()
    datetime: bool = False
    compact: bool = False


@dataclass(frozen=True)
class Block:
    """A run of whole records of a file: ``data`` starts at file line ``first_line``; ``last`` is whether it
    ends the file (then a missing final newline means a truncated file)."""

    data: bytes
    first_line: int
    sep: str
    n_fields: int
    quoting: bool
    encoding: str
    last: bool = True


def split_fields(text: str, sep: str, quoting: bool) -> list[str]:
    """One line's fields (csv-quoted when ``quoting``; a line the csv module rejects is split plainly)."""
    if quoting:
        try:
            return next(csv.reader([text], delimiter=sep, strict=True))
        except (csv.Error, StopIteration):
            return text.split(sep)
    return text.split(sep)


def _is_number(value: str) -> bool:
    return _NUMBER_RE.fullmatch(value) is not None and math.isfinite(float(value))


def parse_datetimes(values: pd.Series) -> pd.Series:
    """ISO 8601 strings -> int64 unix seconds (naive times are taken as UTC). Raises ValueError."""
    parsed = pd.to_datetime(values, utc=True, format="ISO8601")
    if parsed.isna().any():
        raise ValueError("missing timestamp")
    return ((parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).astype("int64")


#: The longest id accepted (characters): longer ones are refused, naming the file and line.
MAX_ID_LENGTH = 256
#: Timestamps are seconds that fit int64: |t| < 2**63 (a finite number; 1e300 is refused).
TIMESTAMP_LIMIT = 2.0**63


def check_value(field: Field, value: str) -> str | None:
    """Why ``value`` is not acceptable for ``field``, or None when it is. Ids hold no NUL and at most
    :data:`MAX_ID_LENGTH` characters; timestamps fit int64 seconds (:data:`TIMESTAMP_LIMIT`)."""
    if field.kind == "text":
        return None
    if value == "":
        return f"missing {field.label}"
    if field.kind == "id":
        if "\x00" in value:
            return f"NUL character in {field.label}"
        if len(value) > MAX_ID_LENGTH:
            return f"{field.label} longer than {MAX_ID_LENGTH} characters ({len(value):,})"
        return None
    if field.kind == "choice":
        if value not in field.choices:
            return f"unknown {field.label} {value!r} (expected one of {', '.join(sorted(field.choices))})"
        return None
    if _is_number(value):
        if field.kind == "time" and abs(float(value)) >= TIMESTAMP_LIMIT:
            return f"{field.label} {value.strip()} out of range (seconds must fit int64: |t| < 2**63)"
        return None
    if field.kind == "time" and field.datetime:
        try:
            parse_datetimes(pd.Series([value]))
            return None
        except (ValueError, TypeError, OverflowError):
            return f"unparseable {field.label} {value!r} (expected unix seconds or an ISO 8601 date-time)"
    return f"unparseable {field.label} {value!r} (expected a number)"


def records(block: Block) -> Iterator[tuple[int, int, str, list[str] | None, str | None]]:
    """(first line, last line, raw text, fields or None, decoding problem or None) per non-blank record."""
    lines = block.data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if not block.quoting or len(block.sep) > 1:
        for i, raw in enumerate(lines):
            raw = raw[:-1] if raw.endswith(b"\r") else raw
            if not raw:
                continue
            number = block.first_line + i
            try:
                text = raw.decode(block.encoding)
            except UnicodeDecodeError:
                yield number, number, raw.decode(block.encoding, "replace"), None, f"not valid {block.encoding}"
                continue
            yield number, number, text, text.split(block.sep), None
        return
    yield from _quoted_records(block, lines)


def _quoted_records(
    block: Block, lines: list[bytes]
) -> Iterator[tuple[int, int, str, list[str] | None, str | None]]:
    """Quoted fields may span lines: the csv module splits, and we track the physical lines it read."""
    consumed: list[str] = []
    undecodable: set[int] = set()

    def physical() -> Iterator[str]:
        for i, raw in enumerate(lines):
            try:
                text = raw.decode(block.encoding)
            except UnicodeDecodeError:
                undecodable.add(i)
                text = raw.decode(block.encoding, "replace")
            consumed.append(text.rstrip("\r"))
            yield text + "\n"

    reader = csv.reader(physical(), delimiter=block.sep, strict=True)
    start = 0
    while True:
        consumed.clear()
        problem: str | None = None
        try:
            fields: list[str] | None = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            detail = "a quoted field is never closed" if "end of data" in str(exc) else str(exc)
            fields, problem = None, f"cannot split the line: {detail}"
        end = reader.line_num  # physical lines read so far
        raw_text = "\n".join(consumed)
        if any(i in undecodable for i in range(start, end)):
            fields, problem = None, f"not valid {block.encoding}"
        first = start
        start = end
        if fields == [] and problem is None:
            continue  # blank line
        yield block.first_line + first, block.first_line + end - 1, raw_text, fields, problem


def scan(block: Block, fields: Sequence[Field], collect: bool) -> list[BadLine]:
    """Check every record of ``block``; the bad ones as (first line, last line, content, reason).

    Stops at the first bad record unless ``collect``.
    """
    ends_with_newline = block.data.endswith(b"\n")
    bad: list[BadLine] = []
    last_line = block.first_line + block.data.count(b"\n") - (1 if ends_with_newline else 0)
    for first, last, text, values, problem in records(block):
        reason = problem
        if reason is None and values is not None:
            if len(values) != block.n_fields:
                reason = f"expected {block.n_fields} fields, found {len(values)}"
            else:
                for field in fields:
                    reason = check_value(field, values[field.index])
                    if reason is not None:
                        break
        if reason is None:
            continue
        if block.last and last == last_line and not ends_with_newline:
            reason += (
                "; this is the last line and the file does not end with a newline: the file looks truncated"
                " (cut in the middle of this line)"
            )
        bad.append((first, last, text, reason))
        if not collect:
            break
    return bad


def without_lines(block: Block, bad: list[BadLine]) -> bytes:
    """``block.data`` without the lines of the ``bad`` records (blank lines stand in, so numbers hold)."""
    drop: set[int] = set()
    for first, last, _, _ in bad:
        drop.update(range(first - block.first_line, last - block.first_line + 1))
    lines = block.data.split(b"\n")
    return b"\n".join(b"" if i in drop else line for i, line in enumerate(lines))


def report_bad_lines(path: Path, bad: list[BadLine], skip: bool) -> None:
    """Raise DataFormatError for ``bad[0]``, or (``skip``) warn once naming the file and the skipped lines."""
    if not skip:
        first, _, text, reason = bad[0]
        hint = "" if "skip_bad_lines" in reason else " (pass skip_bad_lines=True to skip malformed lines)"
        if "truncated" in reason:
            hint = " (pass skip_bad_lines=True to skip it)"
        raise DataFormatError(str(path), first, text, reason + hint)
    shown = "; ".join(
        f"line {first}: {reason}: {text[:120]!r}" for first, _, text, reason in bad[:_WARN_SHOWN]
    )
    more = f"; and {len(bad) - _WARN_SHOWN} more" if len(bad) > _WARN_SHOWN else ""
    warnings.warn(
        f"{path}: skipped {len(bad)} malformed line(s): {shown}{more}", stacklevel=_caller_stacklevel()
    )


def _caller_stacklevel() -> int:
    """The ``stacklevel`` pointing a warning at the first frame outside ``sinerec.data`` (the user's call)."""
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and Path(frame.f_code.co_filename).resolve().is_relative_to(_DATA_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level
