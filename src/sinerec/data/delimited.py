"""The schema-driven parser of delimited text: a file + a declared schema -> typed columns, streamed.

The interface is narrow on purpose (a reader describes a file with :class:`DelimitedFile` and calls
:func:`parse_delimited`), so that the engine below can be replaced without touching any format:

* :class:`Field` declares what one column must hold (an id, a number, a timestamp, one of some choices, text);
* :func:`parse_delimited` returns the declared columns, typed, by field index, and the 1-based line numbers it
  skipped. It raises :class:`~sinerec.errors.DataFormatError` naming the file, the line number and the line
  for the first malformed record (wrong number of fields, missing id, unparseable number or timestamp,
  unknown choice, invalid encoding), or, with ``skip_bad_lines=True``, skips every malformed record with one
  ``warnings.warn`` naming the file and the lines. A last line cut short in a file without a final newline
  is reported as a truncated file.

How it stays fast and small: the file is read as a stream of blocks of whole lines (``block_size`` bytes,
64 MiB by default; gzip is decompressed on the fly), and each block is parsed by pyarrow's multi-threaded
CSV parser straight into typed columns (multi-character separators such as ML-1M's ``::`` are replaced by an
unused byte block by block). Only the numpy columns are kept, never the file or one Python object per line.
When a block's parse looks wrong (a parser error, a missing value, an unknown choice, a column of the wrong
type), that block alone is checked line by line (``sinerec.data.linescan``, the authority): a malformed line
costs one rescan of its block. A block the check finds well-formed is re-read as text and converted column by
column (ids that are not all integers stay text, fractional timestamps become float, ISO 8601 date-times are
converted), and the next blocks are read with the types learnt.

The blocks' columns are gathered in chunks of 64 MiB (:class:`_Chunks`), which the C allocator maps from the
system and gives back when freed: assembling a column from its chunks releases them as it goes, so the peak
is the columns plus a chunk (block-sized pieces would stay in the heap, freed but not returned, and double
the peak). A choice column is held as one-byte codes until assembled.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from sinerec.data.blockparse import BlockKinds, Restart, parse_block
from sinerec.data.files import head_block, iter_line_blocks
from sinerec.data.linescan import (
    MAX_ID_LENGTH,
    TIMESTAMP_LIMIT,
    BadLine,
    Block,
    Field,
    check_value,
    parse_datetimes,
    report_bad_lines,
    split_fields,
)
from sinerec.errors import SinerecError

__all__ = ["DEFAULT_BLOCK_SIZE", "MAX_ID_LENGTH", "TIMESTAMP_LIMIT", "BadLine", "DelimitedFile", "Field",
           "check_value", "integral_or_float", "parse_datetimes", "parse_delimited", "read_header",
           "report_bad_lines", "split_fields"]

#: Bytes per block of the streamed parse: the memory held besides the columns, and the rescan of a bad line.
DEFAULT_BLOCK_SIZE = 64 << 20


@dataclass
class DelimitedFile:
    """A delimited file to parse and its schema.

    ``path`` is the file (streamed; gzip detected) and the name used in messages; ``data``, when given, is
    the body to parse instead of the file. ``first_line`` is the file line number of the body's first line:
    the ``first_line - 1`` lines before it (a header) are skipped when streaming ``path``. ``sep`` may be
    several characters (``::``); ``quoting`` allows csv-quoted fields (one-character ``sep`` only);
    ``fields`` declares the columns to return, ``n_fields`` how many every record has.
    """

    path: Path
    sep: str
    n_fields: int
    fields: Sequence[Field]
    first_line: int = 1
    quoting: bool = False
    encoding: str = "utf-8"
    data: bytes | None = None
    block_size: int = DEFAULT_BLOCK_SIZE


def read_header(path: Path, sep: str, quoting: bool, encoding: str) -> list[str]:
    """The column names on the file's first line (read alone, not the whole file)."""
    first = head_block(path, 1 << 16)
    first = first.split(b"\n", 1)[0].rstrip(b"\r")
    if not first.strip():
        raise SinerecError(f"{path}: empty file, expected a header line")
    try:
        text = first.decode(encoding)
    except UnicodeDecodeError:
        from sinerec.errors import DataFormatError

        raise DataFormatError(
            str(path), 1, first.decode(encoding, "replace"), f"not valid {encoding}"
        ) from None
    return [name.strip() for name in split_fields(text, sep, quoting)]


def _blocks(spec: DelimitedFile) -> Generator[Block, None, None]:
    """The body as :class:`Block` s, each knowing its first line number and whether it ends the file."""
    skip = 0 if spec.data is not None else spec.first_line - 1
    with closing(iter_line_blocks(spec.path, spec.block_size, skip, spec.quoting, spec.data)) as source:
        line = spec.first_line
        current = next(source, None)
        while current is not None:
            following = next(source, None)
            yield Block(current, line, spec.sep, spec.n_fields, spec.quoting, spec.encoding,
                        last=following is None)
            line += current.count(b"\n")
            current = following


def parse_delimited(spec: DelimitedFile, skip_bad_lines: bool) -> tuple[dict[int, pd.Series], list[int]]:
    """Typed columns (by field index) of the body, and the line numbers skipped as malformed.

    Column types: "id" int64 when every value is an integer that fits, else str (object); "num" float64;
    "time" int64 when every value is integral, else float64 (ISO 8601 strings -> int64 unix seconds when the
    field allows date-times); "choice" and "text" str. A ``compact`` field's integers are int32 when every
    value fits and its choices a Categorical (:class:`Field`). Raises DataFormatError for the first malformed
    record unless ``skip_bad_lines`` (then one warning; see the module docstring).
    """
    text_ids: set[int] = set()
    while True:
        try:
            columns, bad = _parse_blocks(spec, skip_bad_lines, text_ids)
            break
        except Restart as restart:  # an id column is text after all: read it as text from the start
            text_ids |= restart.columns
    if bad:
        report_bad_lines(spec.path, bad, True)
    return columns, [first for first, _, _, _ in bad]


def _parse_blocks(
    spec: DelimitedFile, skip_bad_lines: bool, text_ids: set[int]
) -> tuple[dict[int, pd.Series], list[BadLine]]:
    kinds = BlockKinds.initial(spec.fields, text_ids)
    chunks = {f.index: _Chunks() for f in spec.fields}
    bad: list[BadLine] = []
    with closing(_blocks(spec)) as blocks:
        for n, block in enumerate(blocks):
            cols, block_bad = parse_block(spec.path, block, spec.fields, kinds, skip_bad_lines, n == 0)
            bad += block_bad
            for f in spec.fields:
                chunks[f.index].append(_narrowed(f, cols.pop(f.index)))
            del cols
    pa.default_memory_pool().release_unused()  # the blocks' Arrow buffers, kept by the allocator for reuse
    return {f.index: _assemble(f, chunks.pop(f.index).release()) for f in spec.fields}, bad


#: Bytes of one chunk of a column being gathered: above glibc's largest mmap threshold (32 MiB), so a chunk
#: is mapped from the system and returned to it when freed.
_CHUNK_BYTES = 64 << 20


class _Chunks:
    """A column gathered block after block into chunks of :data:`_CHUNK_BYTES` (numbers; str objects are kept
    as the blocks gave them). A block that does not fit the last chunk's room starts a new chunk: the room left
    is never written, so it costs address space, not memory."""

    def __init__(self) -> None:
        self._chunks: list[np.ndarray] = []
        self._filled: list[int] = []

    def append(self, values: np.ndarray) -> None:
        if values.dtype == object:
            self._chunks.append(values)
            self._filled.append(len(values))
            return
        if self._chunks and self._chunks[-1].dtype == values.dtype and \
                len(self._chunks[-1]) - self._filled[-1] >= len(values):
            at = self._filled[-1]
            self._chunks[-1][at : at + len(values)] = values
            self._filled[-1] += len(values)
            return
        chunk = np.empty(max(len(values), _CHUNK_BYTES // values.dtype.itemsize), dtype=values.dtype)
        chunk[: len(values)] = values
        self._chunks.append(chunk)
        self._filled.append(len(values))

    def release(self) -> list[np.ndarray]:
        """The filled parts of the chunks, in order; the chunks are forgotten here (the caller frees them)."""
        parts = [chunk[:filled] for chunk, filled in zip(self._chunks, self._filled, strict=True)]
        self._chunks, self._filled = [], []
        return parts


def _narrowed(field: Field, values: np.ndarray) -> np.ndarray:
    """A ``compact`` field's int64 block as int32 when every value fits."""
    if field.compact and values.dtype == np.int64 and len(values) and \
            np.iinfo(np.int32).min <= values.min() and values.max() <= np.iinfo(np.int32).max:
        return values.astype(np.int32)
    return values


def _assemble(field: Field, parts: list[np.ndarray]) -> pd.Series:
    """One column from its blocks' arrays (ids int64 or all text; times int64 unless one is fractional;
    a ``compact`` field's integers int32 when every block's fit; choices from their codes).

    The parts are copied one by one into the column and released, so the peak is the columns plus a chunk.
    """
    if field.kind == "choice":
        return _choice_column(field, parts)
    if not parts:
        dtypes = {"id": np.int64, "time": np.int64, "num": np.float64}
        return pd.Series([], dtype=dtypes.get(field.kind, object))
    if any(p.dtype == object for p in parts) or field.kind == "text":
        return pd.Series(_concat_releasing(parts, np.dtype(object)), dtype=object)
    if field.kind == "time" and any(p.dtype == np.float64 for p in parts):
        return integral_or_float(pd.Series(_concat_releasing(parts, np.dtype(np.float64))))
    if any(p.dtype != parts[0].dtype for p in parts):  # compact: some blocks int32, some int64
        return pd.Series(_concat_releasing(parts, np.dtype(np.int64)))
    return pd.Series(_concat_releasing(parts, parts[0].dtype))


def _choice_column(field: Field, parts: list[np.ndarray]) -> pd.Series:
    """The choice column from its codes: str objects shared by every row (one per choice), or, ``compact``,
    a Categorical of the sorted choices."""
    choices = sorted(field.choices)
    codes = _concat_releasing(parts, parts[0].dtype) if parts else np.empty(0, dtype=np.int8)
    if field.compact:
        return pd.Series(pd.Categorical.from_codes(codes, categories=choices))
    return pd.Series(np.array(choices, dtype=object)[codes], dtype=object)


def _concat_releasing(parts: list[np.ndarray], dtype: np.dtype) -> np.ndarray:
    """``np.concatenate(parts)`` as ``dtype``, emptying ``parts`` as it goes."""
    out = np.empty(sum(len(p) for p in parts), dtype=dtype)
    at = 0
    parts.reverse()
    while parts:
        part = parts.pop()
        out[at : at + len(part)] = part
        at += len(part)
    return out


def integral_or_float(col: pd.Series) -> pd.Series:
    """int64 when every value is integral (1e9 stays exact), else float64."""
    if col.dtype == np.int64:
        return col
    values = col.astype(np.float64)
    arr = values.to_numpy()
    if len(arr) == 0 or (np.all(arr == np.floor(arr)) and np.all(np.abs(arr) < 2**62)):
        return values.astype(np.int64)
    return values
