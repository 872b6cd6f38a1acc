"""Readers: one function per file format, each returning an :class:`~sinerec.data.frame.Interactions`.

Every reader

* keeps the events in file order (no sorting, no filtering beyond what its arguments ask for);
* reads ``.gz`` files transparently (detected from the gzip magic bytes, so the suffix does not matter);
* gives ids as int64 when every id of the column is an integer, else as str (object dtype);
* raises :class:`~sinerec.errors.DataFormatError` naming the file, the 1-based line number and the line for
  the first malformed row (wrong number of fields, missing id, unparseable number or timestamp, unknown
  behaviour type...), or, with ``skip_bad_lines=True``, skips every malformed row with one
  ``warnings.warn`` naming the file and the lines (their numbers are also kept in ``meta["skipped_lines"]``);
* sets ``Interactions.name`` (overridable with ``name=``) and ``Interactions.source`` (the paths read).

How it stays fast: a delimited file is parsed once by pandas' C engine (multi-character separators such as
ML-1M's ``::`` are first replaced by a one-byte separator, since ``sep="::"`` would force the slow Python
engine). Only when that result looks wrong (a parser error, a missing value, a column of the wrong type) is
the file scanned line by line in Python, to find and report the offending line. The scan is the authority:
when it finds nothing wrong, the fast result is used.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import json
import math
import re
import sys
import warnings
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import numpy as np
import pandas as pd

from sinerec.data.frame import BEHAVIOR, CATEGORY, ITEM, TIMESTAMP, USER, Interactions
from sinerec.errors import DataFormatError, SinerecError

__all__ = [
    "TAOBAO_BEHAVIORS",
    "read_comirec",
    "read_ml1m",
    "read_movielens_csv",
    "read_recbole",
    "read_sequences",
    "read_table",
    "read_taobao",
]

#: Behaviour types of the Taobao UserBehavior file (page view, purchase, add to cart, favourite).
TAOBAO_BEHAVIORS: tuple[str, ...] = ("pv", "buy", "cart", "fav")

#: MovieLens' label for a movie without genres; it becomes an empty tuple of categories.
_NO_GENRES = "(no genres listed)"

_GZIP_MAGIC = b"\x1f\x8b"
_UTF8_BOM = b"\xef\xbb\xbf"
# A number as pandas' C parser accepts it (no "nan"/"inf": a timestamp or rating must be finite).
_NUMBER_RE = re.compile(r"\s*[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)\s*")
# How many skipped lines one warning spells out.
_WARN_SHOWN = 5

PathLike = str | Path


# ----------------------------------------------------------------------------------------------------------
# File access
# ----------------------------------------------------------------------------------------------------------


def _load_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when it is gzip data, without a UTF-8 byte order mark."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SinerecError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SinerecError(f"{path}: is a folder, expected a file") from None
    except OSError as exc:
        raise SinerecError(f"{path}: cannot read: {exc}") from exc
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise SinerecError(f"{path}: corrupt or truncated gzip data: {exc}") from exc
    if raw.startswith(_UTF8_BOM):
        raw = raw[len(_UTF8_BOM) :]
    return raw


def _find_file(folder: Path, name: str) -> Path:
    """``folder/name``, else ``folder/name.gz``; a SinerecError naming both when neither exists."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    if not folder.is_dir():
        raise SinerecError(f"{folder}: no such folder")
    raise SinerecError(f"{folder}: missing file {name!r} (or {name + '.gz'!r})")


# ----------------------------------------------------------------------------------------------------------
# Delimited files: fast path, line scan, coercion
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    """What one column of a delimited file must hold.

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
class _Delimited:
    """How to split the body of a delimited file (the lines after any header)."""

    path: Path
    data: bytes
    sep: str
    n_fields: int
    fields: Sequence[_Field]
    first_line: int = 1
    quoting: bool = False
    encoding: str = "utf-8"


def _split_first_line(data: bytes) -> tuple[bytes, bytes]:
    """(first line without its line end, the rest)."""
    end = data.find(b"\n")
    if end < 0:
        return data.rstrip(b"\r"), b""
    return data[:end].rstrip(b"\r"), data[end + 1 :]


def _split_fields(text: str, sep: str, quoting: bool) -> list[str]:
    if quoting:
        try:
            return next(csv.reader([text], delimiter=sep, strict=True))
        except (csv.Error, StopIteration):
            return text.split(sep)
    return text.split(sep)


def _read_header(path: Path, data: bytes, sep: str, quoting: bool, encoding: str) -> tuple[list[str], bytes]:
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
    return [name.strip() for name in _split_fields(text, sep, quoting)], body


def _fast_read(spec: _Delimited, str_cols: Sequence[int] = ()) -> pd.DataFrame:
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


def _parse_datetimes(values: pd.Series) -> pd.Series:
    """ISO 8601 strings -> int64 unix seconds (naive times are taken as UTC). Raises ValueError."""
    parsed = pd.to_datetime(values, utc=True, format="ISO8601")
    if parsed.isna().any():
        raise ValueError("missing timestamp")
    return ((parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).astype(np.int64)


def _check_value(field: _Field, value: str) -> str | None:
    """Why ``value`` is not acceptable for ``field``, or None when it is."""
    if field.kind == "text":
        return None
    if value == "":
        return f"missing {field.label}"
    if field.kind == "id":
        return None
    if field.kind == "choice":
        if value not in field.choices:
            return f"unknown {field.label} {value!r} (expected one of {', '.join(sorted(field.choices))})"
        return None
    if _is_number(value):
        return None
    if field.kind == "time" and field.datetime:
        try:
            _parse_datetimes(pd.Series([value]))
            return None
        except (ValueError, TypeError, OverflowError):
            return f"unparseable {field.label} {value!r} (expected unix seconds or an ISO 8601 date-time)"
    return f"unparseable {field.label} {value!r} (expected a number)"


def _records(spec: _Delimited) -> Iterator[tuple[int, int, str, list[str] | None, str | None]]:
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


def _scan(spec: _Delimited, collect: bool) -> list[tuple[int, int, str, str]]:
    """Check every record; return the bad ones as (first line, last line, content, reason).

    Stops at the first bad record unless ``collect``.
    """
    ends_with_newline = spec.data.endswith(b"\n")
    bad: list[tuple[int, int, str, str]] = []
    last_line = spec.first_line + spec.data.count(b"\n") - (1 if ends_with_newline else 0)
    for first, last, text, fields, problem in _records(spec):
        reason = problem
        if reason is None and fields is not None:
            if len(fields) != spec.n_fields:
                reason = f"expected {spec.n_fields} fields, found {len(fields)}"
            else:
                for field in spec.fields:
                    reason = _check_value(field, fields[field.index])
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


def _field_counts_ok(spec: _Delimited) -> bool:
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


def _coerce(spec: _Delimited, df: pd.DataFrame, trusted: bool) -> tuple[dict[int, pd.Series], list[int]]:
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
                        out[field.index] = _parse_datetimes(col)
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
                out[field.index] = _integral_or_float(col)
    return out, reread


def _integral_or_float(col: pd.Series) -> pd.Series:
    """int64 when every value is integral (1e9 stays exact), else float64."""
    if col.dtype == np.int64:
        return col
    values = col.astype(np.float64)
    arr = values.to_numpy()
    if len(arr) == 0 or (np.all(arr == np.floor(arr)) and np.all(np.abs(arr) < 2**62)):
        return values.astype(np.int64)
    return values


def _raise_or_warn(spec: _Delimited, bad: list[tuple[int, int, str, str]], skip: bool) -> None:
    if not skip:
        first, _, text, reason = bad[0]
        hint = "" if "skip_bad_lines" in reason else " (pass skip_bad_lines=True to skip malformed lines)"
        if "truncated" in reason:
            hint = " (pass skip_bad_lines=True to skip it)"
        raise DataFormatError(str(spec.path), first, text, reason + hint)
    shown = "; ".join(
        f"line {first}: {reason}: {text[:120]!r}" for first, _, text, reason in bad[:_WARN_SHOWN]
    )
    more = f"; and {len(bad) - _WARN_SHOWN} more" if len(bad) > _WARN_SHOWN else ""
    warnings.warn(
        f"{spec.path}: skipped {len(bad)} malformed line(s): {shown}{more}", stacklevel=_caller_stacklevel()
    )


def _caller_stacklevel() -> int:
    """The ``stacklevel`` pointing a warning at the first frame outside ``sinerec.data`` (the user's call)."""
    here = str(Path(__file__).resolve().parent)
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and str(Path(frame.f_code.co_filename).resolve().parent) == here:
        frame, level = frame.f_back, level + 1
    return level


def _without_lines(spec: _Delimited, bad: list[tuple[int, int, str, str]]) -> bytes:
    drop: set[int] = set()
    for first, last, _, _ in bad:
        drop.update(range(first - spec.first_line, last - spec.first_line + 1))
    lines = spec.data.split(b"\n")
    return b"\n".join(line for i, line in enumerate(lines) if i not in drop)


def _empty_columns(spec: _Delimited) -> dict[int, pd.Series]:
    dtypes = {"id": np.int64, "time": np.int64, "num": np.float64}
    return {f.index: pd.Series([], dtype=dtypes.get(f.kind, object)) for f in spec.fields}


def _parse_delimited(spec: _Delimited, skip_bad_lines: bool) -> tuple[dict[int, pd.Series], list[int]]:
    """Typed columns (by field index) of the body, and the line numbers skipped as malformed."""
    if not spec.data.strip():
        return _empty_columns(spec), []
    error: Exception | None = None
    df: pd.DataFrame | None = None
    try:
        df = _fast_read(spec)
        columns, reread = _coerce(spec, df, trusted=False)
    except (_Suspicious, ValueError, UnicodeDecodeError, pd.errors.ParserWarning) as exc:
        # ParserError and EmptyDataError are ValueErrors.
        error = exc
    else:
        _reread_as_text(spec, columns, reread)
        return columns, []
    bad = _scan(spec, collect=skip_bad_lines)
    if bad:
        _raise_or_warn(spec, bad, skip_bad_lines)
        kept = dataclasses.replace(spec, data=_without_lines(spec, bad))
        columns, _ = _parse_delimited(kept, skip_bad_lines=False)
        return columns, [first for first, _, _, _ in bad]
    # The scan found every line well-formed: trust the fast parse, if there is one.
    if df is None or isinstance(error, UnicodeDecodeError):
        raise SinerecError(f"{spec.path}: cannot parse the file: {error}")
    try:
        columns, reread = _coerce(spec, df, trusted=True)
    except (_Suspicious, ValueError, TypeError) as exc:
        raise SinerecError(f"{spec.path}: cannot parse the file: {exc}") from exc
    _reread_as_text(spec, columns, reread)
    return columns, []


def _reread_as_text(spec: _Delimited, columns: dict[int, pd.Series], reread: list[int]) -> None:
    """Parse again keeping the ``reread`` id columns as written (they are not all integers)."""
    if reread:
        df = _fast_read(spec, reread)
        for i in reread:
            columns[i] = df[i].astype(object)


# ----------------------------------------------------------------------------------------------------------
# Building the result
# ----------------------------------------------------------------------------------------------------------


def _ids_from_strings(values: Sequence[str] | np.ndarray) -> pd.Series:
    """int64 when every string is an integer that fits, else str (object)."""
    arr = np.asarray(values, dtype=object)
    try:
        as_int = np.array([int(v) for v in arr], dtype=np.int64) if len(arr) else np.array([], dtype=np.int64)
    except (ValueError, OverflowError, TypeError):
        return pd.Series(arr, dtype=object)
    return pd.Series(as_int, dtype=np.int64)


def _normalize_ids(col: pd.Series) -> pd.Series:
    """Ids of any dtype (Parquet, JSON keys) -> int64 when all are integral, else str (object)."""
    if pd.api.types.is_integer_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        if col.dtype == np.uint64 and len(col) and int(col.max()) >= 2**63:
            return col.astype(str).astype(object)
        return col.astype(np.int64)
    if pd.api.types.is_float_dtype(col.dtype):
        arr = col.to_numpy(dtype=np.float64)
        if np.all(arr == np.floor(arr)) and np.all(np.abs(arr) < 2**62):
            return col.astype(np.int64)
        return col.astype(str).astype(object)
    text = [str(v) for v in col]
    if all(re.fullmatch(r"[+-]?\d+", v) for v in text):
        return _ids_from_strings(text).set_axis(col.index)
    return pd.Series(text, index=col.index, dtype=object)


def _align_items(events: pd.DataFrame, items: pd.DataFrame | None) -> pd.DataFrame | None:
    """Give ``items`` an index of the dtype of ``events.item``.

    int64 events with str item ids: the ids that are not integers cannot match any event, so they are dropped.
    """
    if items is None:
        return None
    index = items.index
    if events[ITEM].dtype == np.int64 and index.dtype != np.int64:
        keep = [bool(re.fullmatch(r"\s*[+-]?\d+\s*", str(v))) for v in index]
        items = items[keep]
        items.index = pd.Index([int(str(v)) for v in items.index], dtype=np.int64)
    elif events[ITEM].dtype != np.int64 and index.dtype != object:
        items = items.copy()
        items.index = pd.Index([str(v) for v in index], dtype=object)
    items = items[~items.index.duplicated(keep="first")]
    items.index.name = ITEM
    return items


def _genres(values: pd.Series, sep: str = "|") -> list[tuple[str, ...]]:
    """'A|B' -> ('A', 'B'); '' and MovieLens' '(no genres listed)' -> ()."""
    out: list[tuple[str, ...]] = []
    for value in values:
        value = value.strip()
        if not value or value == _NO_GENRES:
            out.append(())
        else:
            out.append(tuple(g for g in value.split(sep) if g))
    return out


def _items_frame(
    ids: pd.Series, title: pd.Series | None = None, categories: list | None = None
) -> pd.DataFrame:
    data: dict[str, object] = {}
    if title is not None:
        data["title"] = title.to_numpy(dtype=object)
    if categories is not None:
        data["categories"] = pd.Series(categories, dtype=object).to_numpy()
    frame = pd.DataFrame(data, index=pd.Index(ids.to_numpy(), name=ITEM, dtype=ids.dtype))
    return frame[~frame.index.duplicated(keep="first")]


def _first_category_items(items: pd.Series, categories: pd.Series) -> pd.DataFrame:
    """Items table from per-event categories: each item gets (its first seen category,)."""
    frame = pd.DataFrame({ITEM: items.to_numpy(), CATEGORY: categories.to_numpy()}).drop_duplicates(ITEM)
    cats = [(str(c),) for c in frame[CATEGORY]]
    return _items_frame(frame[ITEM].astype(items.dtype), categories=cats)


def _events(columns: dict[str, pd.Series]) -> pd.DataFrame:
    return pd.DataFrame({k: v.reset_index(drop=True) for k, v in columns.items()})


def _meta(skipped: list[int]) -> dict[str, object]:
    return {"skipped_lines": skipped} if skipped else {}


# ----------------------------------------------------------------------------------------------------------
# Readers
# ----------------------------------------------------------------------------------------------------------


def read_ml1m(folder: PathLike, *, name: str = "ml-1m", skip_bad_lines: bool = False) -> Interactions:
    """MovieLens-1M as GroupLens publishes it: ``ratings.dat`` and ``movies.dat`` in ``folder``.

    ``ratings.dat``: ``UserID::MovieID::Rating::Timestamp``; ``movies.dat``: ``MovieID::Title::Genres``
    in latin-1, genres joined by ``|``. Either may be gzipped (``ratings.dat.gz``).

    Returns events with columns user, item, timestamp (int64 unix seconds), rating (float64), in file order
    (which is by user, not by time); items indexed by movie id with ``title`` and ``categories`` (genres).
    """
    folder = Path(folder)
    ratings_path, movies_path = _find_file(folder, "ratings.dat"), _find_file(folder, "movies.dat")
    spec = _Delimited(
        ratings_path,
        _load_bytes(ratings_path),
        sep="::",
        n_fields=4,
        fields=(
            _Field(0, "id", "user id"),
            _Field(1, "id", "movie id"),
            _Field(2, "num", "rating"),
            _Field(3, "time", "timestamp"),
        ),
        encoding="latin-1",
    )
    cols, skipped = _parse_delimited(spec, skip_bad_lines)
    events = _events({USER: cols[0], ITEM: cols[1], TIMESTAMP: cols[3], "rating": cols[2]})
    mspec = _Delimited(
        movies_path,
        _load_bytes(movies_path),
        sep="::",
        n_fields=3,
        fields=(_Field(0, "id", "movie id"), _Field(1, "text", "title"), _Field(2, "text", "genres")),
        encoding="latin-1",
    )
    mcols, mskipped = _parse_delimited(mspec, skip_bad_lines)
    items = _items_frame(mcols[0], title=mcols[1], categories=_genres(mcols[2]))
    meta = _meta(skipped)
    if mskipped:
        meta["skipped_item_lines"] = mskipped
    return Interactions(
        events, _align_items(events, items), name=name, source=f"{ratings_path}, {movies_path}", meta=meta
    )


def _header_positions(path: Path, header: list[str], wanted: Sequence[str]) -> list[int]:
    missing = [w for w in wanted if w not in header]
    if missing:
        raise DataFormatError(
            str(path), 1, ",".join(header), f"unexpected header: missing column(s) {', '.join(missing)}"
        )
    return [header.index(w) for w in wanted]


def read_movielens_csv(
    folder: PathLike, *, name: str | None = None, skip_bad_lines: bool = False
) -> Interactions:
    """A MovieLens CSV release (ml-latest-small, ml-latest, ml-20m, ml-25m, ml-32m): ``ratings.csv`` and
    ``movies.csv`` in ``folder`` (either may be gzipped).

    ``ratings.csv``: header ``userId,movieId,rating,timestamp``; ``movies.csv``: header
    ``movieId,title,genres``, quoted titles may hold commas, genre ``(no genres listed)`` -> ``()``.
    Columns are found by header name. Returns events user, item, timestamp (int64), rating (float64) in file
    order; items indexed by movie id with ``title`` and ``categories``. ``name`` defaults to the folder name.
    """
    folder = Path(folder)
    ratings_path, movies_path = _find_file(folder, "ratings.csv"), _find_file(folder, "movies.csv")
    header, body = _read_header(ratings_path, _load_bytes(ratings_path), ",", True, "utf-8")
    u, i, r, t = _header_positions(ratings_path, header, ["userId", "movieId", "rating", "timestamp"])
    spec = _Delimited(
        ratings_path,
        body,
        sep=",",
        n_fields=len(header),
        first_line=2,
        quoting=True,
        fields=(
            _Field(u, "id", "user id"),
            _Field(i, "id", "movie id"),
            _Field(r, "num", "rating"),
            _Field(t, "time", "timestamp"),
        ),
    )
    cols, skipped = _parse_delimited(spec, skip_bad_lines)
    events = _events({USER: cols[u], ITEM: cols[i], TIMESTAMP: cols[t], "rating": cols[r]})

    mheader, mbody = _read_header(movies_path, _load_bytes(movies_path), ",", True, "utf-8")
    mi, mt, mg = _header_positions(movies_path, mheader, ["movieId", "title", "genres"])
    mspec = _Delimited(
        movies_path,
        mbody,
        sep=",",
        n_fields=len(mheader),
        first_line=2,
        quoting=True,
        fields=(_Field(mi, "id", "movie id"), _Field(mt, "text", "title"), _Field(mg, "text", "genres")),
    )
    mcols, mskipped = _parse_delimited(mspec, skip_bad_lines)
    items = _items_frame(mcols[mi], title=mcols[mt], categories=_genres(mcols[mg]))
    meta = _meta(skipped)
    if mskipped:
        meta["skipped_item_lines"] = mskipped
    return Interactions(
        events,
        _align_items(events, items),
        name=name or folder.resolve().name,
        source=f"{ratings_path}, {movies_path}",
        meta=meta,
    )


def _default_sep(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return "\t" if suffixes and suffixes[-1] in (".tsv", ".tab") else ","


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".parquet", ".pq", ".csv", ".tsv", ".tab", ".txt", ".inter"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name or path.name


def read_table(
    path: PathLike,
    user_col: str | int,
    item_col: str | int,
    timestamp_col: str | int | None = None,
    category_col: str | int | None = None,
    behavior_col: str | int | None = None,
    sep: str | None = None,
    header: bool = True,
    fmt: str | None = None,
    *,
    name: str | None = None,
    skip_bad_lines: bool = False,
) -> Interactions:
    """A generic interaction table: a delimited text file (csv, tsv, any one-character ``sep``) or Parquet.

    Args:
        path: the file; ``.gz`` text is read transparently.
        user_col, item_col, timestamp_col, category_col, behavior_col: with ``header=True`` column names (an
            int is taken as a 0-based position too); with ``header=False`` 0-based positions. Parquet columns
            are named (or positions in the schema).
        sep: field separator; default tab for ``.tsv``/``.tab`` files, else comma. Quoted fields are allowed.
        header: whether the first line holds column names.
        fmt: "csv" (any delimited text) or "parquet"; default from the suffix (``.parquet``/``.pq``).

    Returns events user, item [, timestamp] [, behavior] [, category] in file order. Timestamps: int64 (or
    float64 when fractional) unix seconds; ISO 8601 date-time strings are converted to int64 unix seconds
    (naive ones taken as UTC). With ``category_col``, ``items.categories`` is (the item's first seen
    category,) as str. Raises SinerecError naming a missing column and the existing ones.
    """
    path = Path(path)
    if fmt is None:
        fmt = "parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv"
    if fmt not in ("csv", "parquet"):
        raise SinerecError(f"read_table: unknown fmt {fmt!r} (expected 'csv' or 'parquet')")
    given = {
        USER: user_col,
        ITEM: item_col,
        TIMESTAMP: timestamp_col,
        CATEGORY: category_col,
        BEHAVIOR: behavior_col,
    }
    wanted = {k: v for k, v in given.items() if v is not None}
    if fmt == "parquet":
        cols = _read_parquet(path, wanted)
        skipped: list[int] = []
    else:
        cols, skipped = _read_delimited_table(path, wanted, sep or _default_sep(path), header, skip_bad_lines)
    events = _events({k: cols[k] for k in (USER, ITEM, TIMESTAMP, BEHAVIOR, CATEGORY) if k in cols})
    items = _first_category_items(events[ITEM], events[CATEGORY]) if CATEGORY in events else None
    return Interactions(
        events, _align_items(events, items), name=name or _stem(path), source=str(path), meta=_meta(skipped)
    )


_KINDS = {
    USER: ("id", "user id"),
    ITEM: ("id", "item id"),
    TIMESTAMP: ("time", "timestamp"),
    CATEGORY: ("id", "category"),
    BEHAVIOR: ("text", "behavior"),
}


def _column_position(path: Path, column: str | int, header: list[str] | None, n_fields: int) -> int:
    if isinstance(column, bool) or not isinstance(column, (int, str)):
        raise SinerecError(f"{path}: a column is a name or a 0-based position, got {column!r}")
    if isinstance(column, int):
        if not 0 <= column < n_fields:
            raise SinerecError(
                f"{path}: column position {column} out of range: the file has {n_fields} columns "
                f"(positions 0..{n_fields - 1})"
            )
        return column
    if header is None:
        raise SinerecError(
            f"{path}: column {column!r} given by name but header=False: give 0-based positions"
        )
    if column not in header:
        raise SinerecError(f"{path}: no column {column!r}; the columns are: {', '.join(map(repr, header))}")
    return header.index(column)


def _read_delimited_table(
    path: Path, wanted: dict[str, str | int], sep: str, header: bool, skip_bad_lines: bool
) -> tuple[dict[str, pd.Series], list[int]]:
    if len(sep) != 1:
        raise SinerecError(f"read_table: sep must be one character, got {sep!r}")
    data = _load_bytes(path)
    names: list[str] | None = None
    first_line = 1
    if header:
        names, data = _read_header(path, data, sep, True, "utf-8")
        n_fields, first_line = len(names), 2
    else:
        n_fields = _usual_field_count(data, sep, wanted)
    positions = {k: _column_position(path, c, names, n_fields) for k, c in wanted.items()}
    fields: dict[int, _Field] = {}
    for key, pos in positions.items():  # a column named twice (say user and category) is checked once
        fields.setdefault(pos, _Field(pos, _KINDS[key][0], _KINDS[key][1], datetime=(key == TIMESTAMP)))
    spec = _Delimited(
        path,
        data,
        sep=sep,
        n_fields=n_fields,
        fields=list(fields.values()),
        first_line=first_line,
        quoting=True,
    )
    cols, skipped = _parse_delimited(spec, skip_bad_lines)
    return {k: cols[pos] for k, pos in positions.items()}, skipped


def _usual_field_count(data: bytes, sep: str, wanted: dict[str, str | int]) -> int:
    """A header-less file's number of fields: the most common count among its first lines, so that one
    malformed first line is reported as such rather than every line after it."""
    head = data[: 1 << 20].split(b"\n")[:1000]
    if len(head) > 1 and len(data) > 1 << 20:
        head.pop()  # maybe cut by the slice
    counts = Counter(
        len(_split_fields(line.rstrip(b"\r").decode("utf-8", "replace"), sep, True))
        for line in head
        if line.rstrip(b"\r")
    )
    if counts:
        return counts.most_common(1)[0][0]
    # An empty file: any position asked for exists (there is nothing to read anyway).
    positions = [c for c in wanted.values() if isinstance(c, int) and not isinstance(c, bool)]
    return max(positions, default=-1) + 1


def _read_parquet(path: Path, wanted: dict[str, str | int]) -> dict[str, pd.Series]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise SinerecError(f'{path}: reading Parquet needs pyarrow: pip install "sinerec[parquet]"') from None
    try:
        schema_names = list(pq.read_schema(path).names)
    except FileNotFoundError:
        raise SinerecError(f"{path}: no such file") from None
    except Exception as exc:  # pyarrow raises its own types (ArrowInvalid...) for files that are not Parquet
        raise SinerecError(f"{path}: cannot read as Parquet: {exc}") from exc
    names = {
        k: schema_names[_column_position(path, c, schema_names, len(schema_names))] for k, c in wanted.items()
    }
    table = pq.read_table(path, columns=list(dict.fromkeys(names.values())))
    frame = table.to_pandas()
    out: dict[str, pd.Series] = {}
    for key, column in names.items():
        col = frame[column]
        kind, label = _KINDS[key]
        if kind != "text" and bool(col.isna().any()):
            row = int(np.flatnonzero(col.isna().to_numpy())[0])
            content = ", ".join(f"{c}={frame[c].iloc[row]!r}" for c in frame.columns)
            raise DataFormatError(str(path), row + 1, content, f"missing {label} (Parquet row {row + 1})")
        if kind == "id":
            out[key] = _normalize_ids(col)
        elif kind == "time":
            out[key] = _parquet_time(path, col, frame)
        else:
            out[key] = col.astype(object).where(col.notna(), "").astype(str).astype(object)
    return out


def _parquet_time(path: Path, col: pd.Series, frame: pd.DataFrame) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        if getattr(col.dt, "tz", None) is None:
            col = col.dt.tz_localize("UTC")
        return ((col - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).astype(np.int64)
    if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        return _integral_or_float(col)
    try:
        return _parse_datetimes(col.astype(str))
    except (ValueError, TypeError, OverflowError):
        for row, value in enumerate(col):
            if _check_value(_Field(0, "time", "timestamp", datetime=True), str(value)) is not None:
                content = ", ".join(f"{c}={frame[c].iloc[row]!r}" for c in frame.columns)
                raise DataFormatError(
                    str(path), row + 1, content, f"unparseable timestamp {value!r} (Parquet row {row + 1})"
                ) from None
        raise


def _recbole_header(path: Path, header: list[str]) -> tuple[list[str], list[str]]:
    """RecBole's ``name:type`` header -> (names, types)."""
    names, types = [], []
    for i, column in enumerate(header):
        base, colon, kind = column.partition(":")
        if not colon or kind not in ("token", "token_seq", "float", "float_seq"):
            raise DataFormatError(
                str(path),
                1,
                "\t".join(header),
                f"column {i + 1} {column!r} is not a RecBole 'name:type' field "
                "(type token, token_seq, float or float_seq)",
            )
        names.append(base)
        types.append(kind)
    return names, types


def read_recbole(
    inter_path: PathLike,
    item_path: PathLike | None = None,
    *,
    user_field: str = "user_id",
    item_field: str = "item_id",
    time_field: str = "timestamp",
    name: str | None = None,
    skip_bad_lines: bool = False,
) -> Interactions:
    """RecBole atomic files: ``.inter`` and optionally ``.item`` (tab-separated, ``name:type`` header).

    ``.inter``: needs ``user_field`` and ``item_field``; ``time_field`` (a ``:float``) becomes ``timestamp``
    when present (else no timestamp column: file order is the order); a ``rating`` field is kept as float64.
    ``.item``: ``item_field`` plus, when present, a title (``title``, ``movie_title`` or ``item_title``) and
    categories (``genre``, ``categories``, ``class`` or ``category``; ``token_seq`` values are space-separated
    tokens) -> ``items``. ``name`` defaults to the file's stem (RecBole's dataset name).
    """
    inter_path = Path(inter_path)
    header, body = _read_header(inter_path, _load_bytes(inter_path), "\t", False, "utf-8")
    names, _ = _recbole_header(inter_path, header)
    for field_name in (user_field, item_field):
        if field_name not in names:
            raise SinerecError(f"{inter_path}: no field {field_name!r}; the fields are: {', '.join(header)}")
    u, i = names.index(user_field), names.index(item_field)
    fields = [_Field(u, "id", "user id"), _Field(i, "id", "item id")]
    t = names.index(time_field) if time_field in names else None
    r = names.index("rating") if "rating" in names else None
    if t is not None:
        fields.append(_Field(t, "time", "timestamp"))
    if r is not None:
        fields.append(_Field(r, "num", "rating"))
    spec = _Delimited(inter_path, body, sep="\t", n_fields=len(names), fields=fields, first_line=2)
    cols, skipped = _parse_delimited(spec, skip_bad_lines)
    event_cols = {USER: cols[u], ITEM: cols[i]}
    if t is not None:
        event_cols[TIMESTAMP] = cols[t]
    if r is not None:
        event_cols["rating"] = cols[r]
    events = _events(event_cols)
    items = None
    sources = [str(inter_path)]
    meta = _meta(skipped)
    if item_path is not None:
        item_path = Path(item_path)
        sources.append(str(item_path))
        items, iskipped = _read_recbole_items(item_path, item_field, skip_bad_lines)
        if iskipped:
            meta["skipped_item_lines"] = iskipped
    return Interactions(
        events,
        _align_items(events, items),
        name=name or _stem(inter_path),
        source=", ".join(sources),
        meta=meta,
    )


def _read_recbole_items(
    path: Path, item_field: str, skip_bad_lines: bool
) -> tuple[pd.DataFrame | None, list[int]]:
    header, body = _read_header(path, _load_bytes(path), "\t", False, "utf-8")
    names, types = _recbole_header(path, header)
    if item_field not in names:
        raise SinerecError(f"{path}: no field {item_field!r}; the fields are: {', '.join(header)}")
    i = names.index(item_field)
    title = next((names.index(n) for n in ("title", "movie_title", "item_title") if n in names), None)
    cat = next((names.index(n) for n in ("genre", "categories", "class", "category") if n in names), None)
    fields = [_Field(i, "id", "item id")]
    fields += [_Field(c, "text", names[c]) for c in (title, cat) if c is not None]
    spec = _Delimited(path, body, sep="\t", n_fields=len(names), fields=fields, first_line=2)
    cols, skipped = _parse_delimited(spec, skip_bad_lines)
    if title is None and cat is None:
        return None, skipped
    categories = None
    if cat is not None:
        if types[cat].endswith("_seq"):
            categories = [tuple(v.split()) for v in cols[cat]]
        else:
            categories = [(v,) if v else () for v in cols[cat]]
    return _items_frame(
        cols[i], title=cols[title] if title is not None else None, categories=categories
    ), skipped


def read_comirec(
    path: PathLike,
    category_path: PathLike | None = None,
    *,
    name: str | None = None,
    skip_bad_lines: bool = False,
) -> Interactions:
    """ComiRec / SINE data files: lines ``user,item,timestamp`` (no header); optional ``item,category`` file.

    Returns events user, item, timestamp in file order; with ``category_path``, ``items.categories`` =
    (category,) as str. ``name`` defaults to the file's stem (e.g. ``book_train``).
    """
    path = Path(path)
    spec = _Delimited(
        path,
        _load_bytes(path),
        sep=",",
        n_fields=3,
        fields=(_Field(0, "id", "user id"), _Field(1, "id", "item id"), _Field(2, "time", "timestamp")),
    )
    cols, skipped = _parse_delimited(spec, skip_bad_lines)
    events = _events({USER: cols[0], ITEM: cols[1], TIMESTAMP: cols[2]})
    items = None
    sources = [str(path)]
    meta = _meta(skipped)
    if category_path is not None:
        category_path = Path(category_path)
        sources.append(str(category_path))
        cspec = _Delimited(
            category_path,
            _load_bytes(category_path),
            sep=",",
            n_fields=2,
            fields=(_Field(0, "id", "item id"), _Field(1, "id", "category")),
        )
        ccols, cskipped = _parse_delimited(cspec, skip_bad_lines)
        items = _items_frame(ccols[0], categories=[(str(c),) for c in ccols[1]])
        if cskipped:
            meta["skipped_item_lines"] = cskipped
    return Interactions(
        events, _align_items(events, items), name=name or _stem(path), source=", ".join(sources), meta=meta
    )


def read_sequences(
    path: PathLike,
    attributes_path: PathLike | None = None,
    *,
    name: str | None = None,
    skip_bad_lines: bool = False,
) -> Interactions:
    """One sequence per line, ``user item1 item2 ...`` separated by white space (SASRec / S3-Rec format).

    There are no timestamps: the events have columns user, item only, in file order, which is each user's
    chronological order. A line needs a user and at least one item (a lone token usually means the file
    uses another separator, so it is reported). ``attributes_path``: a JSON object item id -> list of
    attribute ids (S3-Rec's ``item2attributes.json``) -> ``items.categories`` as tuples of str.
    ``name`` defaults to the file's stem.
    """
    path = Path(path)
    data = _load_bytes(path)
    users: list[str] = []
    items_: list[str] = []
    bad: list[tuple[int, int, str, str]] = []
    lines = data.split(b"\n")
    ends_with_newline = data.endswith(b"\n")
    if ends_with_newline:
        lines.pop()
    for number, raw in enumerate(lines, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            bad.append((number, number, raw.decode("utf-8", "replace"), "not valid utf-8"))
            continue
        tokens = text.split()
        if not tokens:
            continue
        if len(tokens) < 2:
            reason = "expected a user id followed by at least one item id"
            if number == len(lines) and not ends_with_newline:
                reason += (
                    "; this is the last line and the file does not end with a newline: it looks truncated"
                )
            bad.append((number, number, text.rstrip("\r"), reason))
            continue
        users.extend([tokens[0]] * (len(tokens) - 1))
        items_.extend(tokens[1:])
    spec = _Delimited(path, data, sep=" ", n_fields=0, fields=())
    if bad:
        _raise_or_warn(spec, bad if skip_bad_lines else bad[:1], skip_bad_lines)
    events = _events({USER: _ids_from_strings(users), ITEM: _ids_from_strings(items_)})
    items = None
    sources = [str(path)]
    if attributes_path is not None:
        attributes_path = Path(attributes_path)
        sources.append(str(attributes_path))
        items = _read_attributes(attributes_path)
    return Interactions(
        events,
        _align_items(events, items),
        name=name or _stem(path),
        source=", ".join(sources),
        meta=_meta([b[0] for b in bad]),
    )


def _read_attributes(path: Path) -> pd.DataFrame:
    """S3-Rec's item2attributes.json: {"item id": [attribute ids]} -> items with ``categories``."""
    data = _load_bytes(path)
    try:
        mapping = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise SinerecError(f"{path}: not valid utf-8: {exc}") from exc
    except json.JSONDecodeError as exc:
        line = data.decode("utf-8").split("\n")[exc.lineno - 1]
        col = exc.colno - 1
        raise DataFormatError(
            str(path),
            exc.lineno,
            line[max(0, col - 60) : col + 60],
            f"invalid JSON at column {exc.colno}: {exc.msg}",
        ) from None
    if not isinstance(mapping, dict):
        raise SinerecError(
            f"{path}: expected a JSON object item id -> list of attribute ids, got {type(mapping).__name__}"
        )
    ids, cats = [], []
    for key, values in mapping.items():
        if not isinstance(values, list) or not all(isinstance(v, (int, str)) for v in values):
            raise SinerecError(f"{path}: item {key!r}: expected a list of attribute ids, got {values!r:.80}")
        ids.append(key)
        cats.append(tuple(str(v) for v in values))
    return _items_frame(_ids_from_strings(ids), categories=cats)


def read_taobao(
    path: PathLike,
    behaviors: Sequence[str] | str | None = ("pv",),
    skip_bad_lines: bool = False,
    *,
    name: str = "taobao",
) -> Interactions:
    """Tianchi's Taobao UserBehavior.csv: no header, ``user_id,item_id,category_id,behavior_type,timestamp``.

    Args:
        behaviors: behaviour types to keep (of pv, buy, cart, fav); None keeps all. The ``behavior`` column
            is kept unless exactly one type is kept.
        skip_bad_lines: skip malformed lines with a warning instead of raising DataFormatError. A file cut in
            the middle of its last line (as heads of the 3.5 GB original often are) is reported as truncated.

    Returns events user, item, timestamp (int64), category [, behavior] in file order; ``items.categories`` =
    (the item's first seen category,) as str.
    """
    path = Path(path)
    if isinstance(behaviors, str):
        behaviors = (behaviors,)
    if behaviors is not None:
        unknown = sorted(set(behaviors) - set(TAOBAO_BEHAVIORS))
        if unknown or not behaviors:
            raise SinerecError(
                f"read_taobao: unknown behaviour type(s) {unknown or list(behaviors)}; "
                f"expected some of {', '.join(TAOBAO_BEHAVIORS)} (or None for all)"
            )
    spec = _Delimited(
        path,
        _load_bytes(path),
        sep=",",
        n_fields=5,
        fields=(
            _Field(0, "id", "user id"),
            _Field(1, "id", "item id"),
            _Field(2, "id", "category id"),
            _Field(3, "choice", "behaviour type", choices=frozenset(TAOBAO_BEHAVIORS)),
            _Field(4, "time", "timestamp"),
        ),
    )
    cols, skipped = _parse_delimited(spec, skip_bad_lines)
    events = _events({USER: cols[0], ITEM: cols[1], TIMESTAMP: cols[4], CATEGORY: cols[2], BEHAVIOR: cols[3]})
    if behaviors is not None:
        events = events[events[BEHAVIOR].isin(set(behaviors))].reset_index(drop=True)
        if len(set(behaviors)) == 1:
            events = events.drop(columns=BEHAVIOR)
    items = _first_category_items(events[ITEM], events[CATEGORY])
    return Interactions(events, _align_items(events, items), name=name, source=str(path), meta=_meta(skipped))
