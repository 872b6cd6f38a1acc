"""The schema-driven parser of delimited text: one file body + a declared schema -> typed columns.

The interface is narrow on purpose (a reader describes a file with :class:`DelimitedFile` and calls
:func:`parse_delimited`), so that the engine below can be replaced without touching any format:

* :class:`Field` declares what one column must hold (an id, a number, a timestamp, one of some choices, text);
* :func:`parse_delimited` returns the declared columns, typed, by field index, and the 1-based line numbers it
  skipped. It raises :class:`~sinerec.errors.DataFormatError` naming the file, the line number and the line
  for the first malformed record (wrong number of fields, missing id, unparseable number or timestamp,
  unknown choice, invalid encoding), or, with ``skip_bad_lines=True``, skips every malformed record with one
  ``warnings.warn`` naming the file and the lines. A last line cut short in a file without a final newline
  is reported as a truncated file.

How it stays fast: the body is parsed once by pandas' C engine (multi-character separators such as ML-1M's
``::`` are first replaced by a one-byte separator, since ``sep="::"`` would force the slow Python engine).
Only when that result looks wrong (a parser error, a missing value, a column of the wrong type) is the body
scanned line by line in Python, to find and report the offending line. The scan is the authority: when it
finds nothing wrong, the fast result is used.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import numpy as np
import pandas as pd

from sinerec.errors import DataFormatError, SinerecError

__all__ = ["MAX_ID_LENGTH", "TIMESTAMP_LIMIT",
           "BadLine", "DelimitedFile", "Field", "check_value", "integral_or_float", "parse_datetimes",
           "parse_delimited", "read_header", "report_bad_lines", "split_fields"]

# A number as pandas' C parser accepts it (no "nan"/"inf": a timestamp or rating must be finite).
_NUMBER_RE = re.compile(r"\s*[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)\s*")
#: The longest id accepted (characters): longer ones are refused, naming the file and line.
MAX_ID_LENGTH = 256
#: Timestamps are seconds that fit int64: |t| < 2**63 (a finite number; 1e300 is refused).
TIMESTAMP_LIMIT = 2.0**63
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
    """

    index: int
    kind: str
    label: str
    choices: frozenset[str] = frozenset()
    datetime: bool = False


class _Suspicious(Exception):
    """The fast parse cannot be trusted as it is: scan the lines."""


@dataclass
class DelimitedFile:
    """A delimited body to parse (the lines after any header) and its schema.

    ``sep`` may be several characters (``::``); ``quoting`` allows csv-quoted fields (one-character ``sep``
    only); ``first_line`` is the file line number of the body's first line (2 after a header), so that
    errors name lines of the file; ``fields`` declares the columns to return, ``n_fields`` how many every
    record has.
    """

    path: Path
    data: bytes
    sep: str
    n_fields: int
    fields: Sequence[Field]
    first_line: int = 1
    quoting: bool = False
    encoding: str = "utf-8"


def _split_first_line(data: bytes) -> tuple[bytes, bytes]:
    """(first line without its line end, the rest)."""
    end = data.find(b"\n")
    if end < 0:
        return data.rstrip(b"\r"), b""
    return data[:end].rstrip(b"\r"), data[end + 1 :]


def split_fields(text: str, sep: str, quoting: bool) -> list[str]:
    if quoting:
        try:
            return next(csv.reader([text], delimiter=sep, strict=True))
        except (csv.Error, StopIteration):
            return text.split(sep)
    return text.split(sep)


def read_header(path: Path, data: bytes, sep: str, quoting: bool, encoding: str) -> tuple[list[str], bytes]:
    """The header's column names and the body that follows it."""
    first, body = _split_first_line(data)
    if not first.strip():
        raise SinerecError(f"{path}: empty file, expected a header line")
    try:
        text = first.decode(encoding)
    except UnicodeDecodeError:
        raise DataFormatError(
            str(path), 1, first.decode(encoding, "replace"), f"not valid {encoding}"
        ) from None
    return [name.strip() for name in split_fields(text, sep, quoting)], body


def _fast_read(spec: DelimitedFile, str_cols: Sequence[int] = ()) -> pd.DataFrame:
    """pandas' C parser over the body; a multi-character separator is first replaced by one unused byte."""
    data, sep, engine = spec.data, spec.sep, "c"
    if len(sep) > 1:
        for candidate in ("\x1f", "\x1e", "\x1d", "\x01"):
            if candidate.encode() not in data:
                data, sep = data.replace(spec.sep.encode(spec.encoding), candidate.encode()), candidate
                break
        else:  # every candidate byte occurs in the file: take the slow but exact road
            sep, engine = re.escape(sep), "python"
    with warnings.catch_warnings():
        # "Length of header or names does not match length of data": pandas would drop fields silently.
        warnings.simplefilter("error", pd.errors.ParserWarning)
        return pd.read_csv(
            io.BytesIO(data),
            sep=sep,
            header=None,
            index_col=False,
            engine=engine,
            quoting=csv.QUOTE_MINIMAL if spec.quoting else csv.QUOTE_NONE,
            keep_default_na=False,
            na_values=[""],
            encoding=spec.encoding,
            skip_blank_lines=True,
            dtype={i: str for i in str_cols} or None,
            # one pass over the whole file, so a column is never typed differently chunk by chunk
            **({"low_memory": False} if engine == "c" else {}),
        )


def _is_number(value: str) -> bool:
    return _NUMBER_RE.fullmatch(value) is not None and math.isfinite(float(value))


def parse_datetimes(values: pd.Series) -> pd.Series:
    """ISO 8601 strings -> int64 unix seconds (naive times are taken as UTC). Raises ValueError."""
    parsed = pd.to_datetime(values, utc=True, format="ISO8601")
    if parsed.isna().any():
        raise ValueError("missing timestamp")
    return ((parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).astype(np.int64)


def check_value(field: Field, value: str) -> str | None:
    """Why ``value`` is not acceptable for ``field``, or None when it is."""
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


def _records(spec: DelimitedFile) -> Iterator[tuple[int, int, str, list[str] | None, str | None]]:
    """(first line, last line, raw text, fields or None, decoding problem or None) per non-blank record."""
    lines = spec.data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if not spec.quoting or len(spec.sep) > 1:
        for i, raw in enumerate(lines):
            raw = raw[:-1] if raw.endswith(b"\r") else raw
            if not raw:
                continue
            number = spec.first_line + i
            try:
                text = raw.decode(spec.encoding)
            except UnicodeDecodeError:
                yield number, number, raw.decode(spec.encoding, "replace"), None, f"not valid {spec.encoding}"
                continue
            yield number, number, text, text.split(spec.sep), None
        return
    # Quoted fields may span lines: let the csv module split, and keep track of the physical lines it read.
    consumed: list[str] = []
    undecodable: set[int] = set()

    def physical() -> Iterator[str]:
        for i, raw in enumerate(lines):
            try:
                text = raw.decode(spec.encoding)
            except UnicodeDecodeError:
                undecodable.add(i)
                text = raw.decode(spec.encoding, "replace")
            consumed.append(text.rstrip("\r"))
            yield text + "\n"

    reader = csv.reader(physical(), delimiter=spec.sep, strict=True)
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
            fields, problem = None, f"not valid {spec.encoding}"
        first = start
        start = end
        if fields == [] and problem is None:
            continue  # blank line
        yield spec.first_line + first, spec.first_line + end - 1, raw_text, fields, problem


def _scan(spec: DelimitedFile, collect: bool) -> list[BadLine]:
    """Check every record; return the bad ones as (first line, last line, content, reason).

    Stops at the first bad record unless ``collect``.
    """
    ends_with_newline = spec.data.endswith(b"\n")
    bad: list[BadLine] = []
    last_line = spec.first_line + spec.data.count(b"\n") - (1 if ends_with_newline else 0)
    for first, last, text, fields, problem in _records(spec):
        reason = problem
        if reason is None and fields is not None:
            if len(fields) != spec.n_fields:
                reason = f"expected {spec.n_fields} fields, found {len(fields)}"
            else:
                for field in spec.fields:
                    reason = check_value(field, fields[field.index])
                    if reason is not None:
                        break
        if reason is None:
            continue
        if last == last_line and not ends_with_newline:
            reason += (
                "; this is the last line and the file does not end with a newline: the file looks truncated"
                " (cut in the middle of this line)"
            )
        bad.append((first, last, text, reason))
        if not collect:
            break
    return bad


def _field_counts_ok(spec: DelimitedFile) -> bool:
    """Whether every non-blank line has ``n_fields`` fields, counted with numpy (unquoted files only)."""
    if len(spec.sep) != 1 or (spec.quoting and b'"' in spec.data):
        return False
    buf = np.frombuffer(spec.data, dtype=np.uint8)
    ends = np.flatnonzero(buf == 10)
    if len(buf) and buf[-1] != 10:
        ends = np.append(ends, len(buf))
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts
    # A line holding only "\r" (a CRLF blank line) is blank too.
    has_cr = np.zeros(len(ends), dtype=bool)
    nonempty = lengths > 0
    has_cr[nonempty] = buf[ends[nonempty] - 1] == 13
    blank = (lengths == 0) | ((lengths == 1) & has_cr)
    seps = np.flatnonzero(buf == ord(spec.sep))
    counts = np.searchsorted(seps, ends) - np.searchsorted(seps, starts)
    return bool(np.all(counts[~blank] == spec.n_fields - 1))


def _coerce(spec: DelimitedFile, df: pd.DataFrame, trusted: bool) -> tuple[dict[int, pd.Series], list[int]]:
    """Typed columns of the fast parse, and the id columns to re-read as str.

    Raises _Suspicious when the parse shows signs of a malformed line, unless ``trusted`` (the line scan
    found none, so e.g. a missing value in a text column is an empty text).
    """
    if df.shape[1] != spec.n_fields:
        raise _Suspicious(f"{df.shape[1]} columns")
    declared = {field.index for field in spec.fields}
    unused_missing = any(bool(df[i].isna().any()) for i in df.columns if i not in declared)
    if unused_missing and not trusted and not _field_counts_ok(spec):
        raise _Suspicious("missing value in an unused column")  # may be a short row: let the scan decide
    out: dict[int, pd.Series] = {}
    reread: list[int] = []
    for field in spec.fields:
        col = df[field.index]
        missing = bool(col.isna().any())
        if field.kind == "text":
            if missing and not trusted and not _field_counts_ok(spec):
                raise _Suspicious(f"missing {field.label}")  # may be a short row: let the scan decide
            out[field.index] = col.astype(object).where(col.notna(), "").astype(str).astype(object)
            continue
        if missing:
            raise _Suspicious(f"missing {field.label}")
        if field.kind == "id":
            if col.dtype == np.int64:
                out[field.index] = col
            elif col.dtype == object or pd.api.types.is_string_dtype(col.dtype):
                # pandas' str dtype holds only strings (missing values were ruled out above)
                if col.dtype != object or all(isinstance(v, str) for v in col):
                    out[field.index] = col.astype(object)
                else:  # e.g. an integer beyond int64, parsed as a Python int: keep the text
                    reread.append(field.index)
            else:  # float or bool: keep the ids exactly as written
                reread.append(field.index)
        elif field.kind == "choice":
            values = col.astype(object)
            if not bool(values.isin(field.choices).all()):
                raise _Suspicious(f"unknown {field.label}")
            out[field.index] = values
        else:  # num, time
            if pd.api.types.is_bool_dtype(col.dtype):
                raise _Suspicious(f"bad {field.label}")
            if not pd.api.types.is_numeric_dtype(col.dtype):
                if field.kind == "time" and field.datetime:
                    try:
                        out[field.index] = parse_datetimes(col)
                        continue
                    except (ValueError, TypeError, OverflowError):
                        raise _Suspicious(f"bad {field.label}") from None
                if not trusted:
                    raise _Suspicious(f"bad {field.label}")
                col = pd.to_numeric(col.astype(object))
            values = col.astype(np.float64)
            if not bool(np.isfinite(values.to_numpy()).all()):
                raise _Suspicious(f"non-finite {field.label}")
            if field.kind == "num":
                out[field.index] = values
            else:
                out[field.index] = integral_or_float(col)
    return out, reread


def integral_or_float(col: pd.Series) -> pd.Series:
    """int64 when every value is integral (1e9 stays exact), else float64."""
    if col.dtype == np.int64:
        return col
    values = col.astype(np.float64)
    arr = values.to_numpy()
    if len(arr) == 0 or (np.all(arr == np.floor(arr)) and np.all(np.abs(arr) < 2**62)):
        return values.astype(np.int64)
    return values


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


def _without_lines(spec: DelimitedFile, bad: list[BadLine]) -> bytes:
    drop: set[int] = set()
    for first, last, _, _ in bad:
        drop.update(range(first - spec.first_line, last - spec.first_line + 1))
    lines = spec.data.split(b"\n")
    return b"\n".join(line for i, line in enumerate(lines) if i not in drop)


def _empty_columns(spec: DelimitedFile) -> dict[int, pd.Series]:
    dtypes = {"id": np.int64, "time": np.int64, "num": np.float64}
    return {f.index: pd.Series([], dtype=dtypes.get(f.kind, object)) for f in spec.fields}


def parse_delimited(spec: DelimitedFile, skip_bad_lines: bool) -> tuple[dict[int, pd.Series], list[int]]:
    """Typed columns (by field index) of the body, and the line numbers skipped as malformed.

    Column types: "id" int64 when every value is an integer that fits, else str (object); "num" float64;
    "time" int64 when every value is integral, else float64 (ISO 8601 strings -> int64 unix seconds when the
    field allows date-times); "choice" and "text" str. Raises DataFormatError for the first malformed
    record unless ``skip_bad_lines`` (then one warning; see the module docstring).
    """
    if not spec.data.strip():
        return _empty_columns(spec), []
    error: Exception | None = None
    df: pd.DataFrame | None = None
    try:
        df = _fast_read(spec)
        columns, reread = _coerce(spec, df, trusted=False)
        _reread_as_text(spec, columns, reread)
        _check_limits(spec, columns)
    except (_Suspicious, ValueError, UnicodeDecodeError, pd.errors.ParserWarning) as exc:
        # ParserError and EmptyDataError are ValueErrors.
        error = exc
    else:
        return columns, []
    bad = _scan(spec, collect=skip_bad_lines)
    if bad:
        report_bad_lines(spec.path, bad, skip_bad_lines)
        kept = dataclasses.replace(spec, data=_without_lines(spec, bad))
        columns, _ = parse_delimited(kept, skip_bad_lines=False)
        return columns, [first for first, _, _, _ in bad]
    # The scan found every line well-formed: trust the fast parse, if there is one.
    if df is None or isinstance(error, UnicodeDecodeError):
        raise SinerecError(f"{spec.path}: cannot parse the file: {error}")
    try:
        columns, reread = _coerce(spec, df, trusted=True)
        _reread_as_text(spec, columns, reread)
        _check_limits(spec, columns)
    except (_Suspicious, ValueError, TypeError) as exc:
        raise SinerecError(f"{spec.path}: cannot parse the file: {exc}") from exc
    return columns, []


def _check_limits(spec: DelimitedFile, columns: dict[int, pd.Series]) -> None:
    """Raise _Suspicious when a typed column breaks a limit :func:`check_value` enforces (an id with NUL or
    longer than :data:`MAX_ID_LENGTH`, a timestamp outside int64 seconds): the line scan then names it."""
    for field in spec.fields:
        col = columns[field.index]
        if field.kind == "id" and col.dtype == object and len(col):
            text = col.astype(str)
            if int(text.str.len().max()) > MAX_ID_LENGTH or bool(text.str.contains("\x00", regex=False).any()):
                raise _Suspicious(f"{field.label} beyond the limits")
        elif field.kind == "time" and col.dtype == np.float64 and len(col):
            if bool((np.abs(col.to_numpy()) >= TIMESTAMP_LIMIT).any()):
                raise _Suspicious(f"{field.label} out of range")


def _reread_as_text(spec: DelimitedFile, columns: dict[int, pd.Series], reread: list[int]) -> None:
    """Parse again keeping the ``reread`` id columns as written (they are not all integers)."""
    if reread:
        df = _fast_read(spec, reread)
        for i in reread:
            columns[i] = df[i].astype(object)

