"""One block of whole lines of a delimited file -> numpy columns, with pyarrow's multi-threaded CSV parser.

:func:`parse_block` first parses with the column types learnt so far (:class:`BlockKinds`). When that parse
fails or shows a sign of a malformed line (a missing value, an unknown choice, a non-finite number), the
block is checked line by line (:func:`sinerec.data.linescan.scan`); bad lines raise, or are blanked and the
block parsed again; a block found well-formed is read as text and converted column by column, which teaches
:class:`BlockKinds` the types of the next blocks (an id column that is not all integers, fractional or
ISO 8601 timestamps). An id column found to be text after an earlier block was read as integers raises
:class:`Restart`: the caller parses again from the start with that column as text.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv as pacsv

from sinerec.data.files import iter_line_blocks
from sinerec.data.linescan import (
    MAX_ID_LENGTH,
    TIMESTAMP_LIMIT,
    BadLine,
    Block,
    Field,
    parse_datetimes,
    records,
    report_bad_lines,
    scan,
    without_lines,
)
from sinerec.errors import SinerecError

__all__ = ["BlockKinds", "Restart", "parse_block"]

# One-byte separators that replace a multi-character one (the first absent from the block is used).
_SEP_CANDIDATES = (b"\x1f", b"\x1e", b"\x1d", b"\x01")
# A suspicious block larger than this is parsed again in pieces of this size; only a failing piece is checked
# line by line in Python (about 30k lines, a tenth of a second).
_SCAN_SIZE = 1 << 20
# The smallest pyarrow parse block inside one of our blocks (pyarrow parses its blocks on several threads).
_MIN_ARROW_BLOCK = 1 << 20


class Restart(Exception):
    """An id column read as integers in earlier blocks holds text: parse again with ``columns`` as text."""

    def __init__(self, columns: set[int]) -> None:
        super().__init__(f"id columns {sorted(columns)} hold text")
        self.columns = columns


class _Suspicious(Exception):
    """The fast parse cannot be trusted as it is: check the block's lines."""


@dataclass
class BlockKinds:
    """The storage learnt so far for each declared column: "int" or "str" ids; "int", "float" or "datetime"
    times; "float" numbers; "choice"; "text"."""

    kinds: dict[int, str] = field(default_factory=dict)

    @classmethod
    def initial(cls, fields: Sequence[Field], text_ids: set[int]) -> BlockKinds:
        start = {"id": "int", "time": "int", "num": "float", "choice": "choice", "text": "text"}
        return cls({f.index: "str" if f.index in text_ids else start[f.kind] for f in fields})

    def arrow_type(self, index: int) -> pa.DataType:
        return {"int": pa.int64(), "float": pa.float64()}.get(self.kinds[index], pa.string())


def _name(index: int) -> str:
    return f"f{index}"


def _arrow_read(block: Block, types: dict[int, pa.DataType]) -> pa.Table:
    """pyarrow's CSV parser over the block (raises pa.ArrowInvalid on a parse or conversion error)."""
    data, sep = block.data, block.sep
    if len(sep) > 1:
        free = next((c for c in _SEP_CANDIDATES if c not in data), None)
        if free is None:
            raise _Suspicious("every candidate separator byte occurs in the block")
        data, sep = data.replace(sep.encode(block.encoding), free), free.decode()
    quoted = block.quoting and b'"' in data
    if quoted and data.count(b'"') % 2:
        raise _Suspicious("a quoted field is never closed")
    return pacsv.read_csv(
        pa.BufferReader(data),
        read_options=pacsv.ReadOptions(
            column_names=[_name(i) for i in range(block.n_fields)], use_threads=True,
            block_size=max(_MIN_ARROW_BLOCK, len(data) // 8), encoding=block.encoding,
        ),
        parse_options=pacsv.ParseOptions(
            delimiter=sep, quote_char='"' if block.quoting else False, newlines_in_values=quoted,
            ignore_empty_lines=True,
        ),
        convert_options=pacsv.ConvertOptions(
            column_types={_name(i): t for i, t in types.items()}, include_columns=[_name(i) for i in types],
            null_values=[""], strings_can_be_null=False, quoted_strings_can_be_null=False,
        ),
    )


def _choice_codes(col: pa.ChunkedArray, f: Field) -> np.ndarray:
    """The choice column as small codes: positions in ``sorted(f.choices)`` (int8 for up to 127 choices);
    the column is assembled from the codes (``sinerec.data.delimited``), never one str object per line."""
    choices = sorted(f.choices)
    codes = pc.index_in(col, value_set=pa.array(choices, type=pa.string()))
    if codes.null_count:
        raise _Suspicious(f"unknown {f.label}")
    return codes.to_numpy(zero_copy_only=False).astype(np.int8 if len(choices) < 128 else np.int32)


def _owned(values: np.ndarray) -> np.ndarray:
    """``values`` in numpy's own memory: a view would keep the block's Arrow buffers alive (and Arrow's
    allocator keeps freed pages), so a column would cost twice its size until assembled."""
    return values if values.base is None else values.copy()


def _finite(values: np.ndarray, label: str) -> np.ndarray:
    if not np.isfinite(values).all():
        raise _Suspicious(f"non-finite {label}")
    return values


def _typed_columns(table: pa.Table, fields: Sequence[Field], kinds: BlockKinds) -> dict[int, np.ndarray]:
    """The typed parse as numpy columns; _Suspicious when it shows a sign of a malformed line."""
    out: dict[int, np.ndarray] = {}
    for f in fields:
        col, kind = table.column(_name(f.index)), kinds.kinds[f.index]
        if kind in ("int", "float"):
            if col.null_count:
                raise _Suspicious(f"missing {f.label}")
            values = _owned(col.to_numpy())
            if kind == "float":
                _finite(values, f.label)
                if f.kind == "time" and (np.abs(values) >= TIMESTAMP_LIMIT).any():
                    raise _Suspicious(f"{f.label} out of range")
            out[f.index] = values
        elif kind == "choice":
            out[f.index] = _choice_codes(col, f)
        elif kind == "text":
            out[f.index] = col.to_numpy(zero_copy_only=False).astype(object)
        elif kind == "datetime":
            try:
                out[f.index] = parse_datetimes(pd.Series(col.to_numpy(zero_copy_only=False))).to_numpy()
            except (ValueError, TypeError, OverflowError):
                raise _Suspicious(f"bad {f.label}") from None
        else:  # text ids
            if pc.any(pc.equal(col, "")).as_py():
                raise _Suspicious(f"missing {f.label}")
            longest = pc.max(pc.utf8_length(col)).as_py()
            if (longest or 0) > MAX_ID_LENGTH or pc.any(pc.match_substring(col, "\x00")).as_py():
                raise _Suspicious(f"{f.label} beyond the limits")  # the line scan names the line
            out[f.index] = col.to_numpy(zero_copy_only=False).astype(object)
    return out


def _text_columns(block: Block, fields: Sequence[Field]) -> dict[int, pa.ChunkedArray]:
    """The declared columns as text, by pyarrow or (when it cannot split the block) line by line."""
    try:
        table = _arrow_read(block, {f.index: pa.string() for f in fields})
        return {f.index: table.column(_name(f.index)) for f in fields}
    except (pa.ArrowInvalid, _Suspicious):
        rows = [values for _, _, _, values, _ in records(block) if values is not None]
        return {f.index: pa.chunked_array([pa.array([r[f.index] for r in rows], type=pa.string())])
                for f in fields}


def _cast(col: pa.ChunkedArray, to: pa.DataType) -> np.ndarray | None:
    try:
        return _owned(pc.cast(pc.utf8_trim_whitespace(col), to).to_numpy())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _converted(path: Path, block: Block, fields: Sequence[Field], kinds: BlockKinds, first_block: bool
               ) -> dict[int, np.ndarray]:
    """A well-formed block read as text, each column converted to the narrowest type that holds it."""
    text = _text_columns(block, fields)
    out: dict[int, np.ndarray] = {}
    for f in fields:
        col, kind = text[f.index], kinds.kinds[f.index]
        if f.kind == "id":
            as_int = _cast(col, pa.int64()) if kind == "int" else None
            if as_int is None and kind == "int" and not first_block:
                raise Restart({f.index})
            kinds.kinds[f.index] = "int" if as_int is not None else "str"
            out[f.index] = as_int if as_int is not None else col.to_numpy(zero_copy_only=False).astype(object)
        elif f.kind in ("time", "num"):
            out[f.index] = _number_column(path, col, f, kinds)
        elif f.kind == "choice":
            out[f.index] = _choice_codes(col, f)
        else:
            out[f.index] = col.to_numpy(zero_copy_only=False).astype(object)
    return out


def _number_column(path: Path, col: pa.ChunkedArray, f: Field, kinds: BlockKinds) -> np.ndarray:
    """A time or number column of a well-formed block: int64, else float64, else (times) ISO date-times."""
    kind = kinds.kinds[f.index]
    if kind == "int" and (values := _cast(col, pa.int64())) is not None:
        return values
    if kind in ("int", "float") and (values := _cast(col, pa.float64())) is not None:
        kinds.kinds[f.index] = "float"
        return values
    if f.kind == "time" and f.datetime and (kind == "datetime" or kinds.kinds[f.index] == "int"):
        try:
            values = parse_datetimes(pd.Series(col.to_numpy(zero_copy_only=False))).to_numpy()
            kinds.kinds[f.index] = "datetime"
            return values
        except (ValueError, TypeError, OverflowError) as exc:
            raise SinerecError(f"{path}: cannot parse the {f.label} column: {exc}") from exc
    raise SinerecError(f"{path}: cannot parse the {f.label} column: numbers mixed with other values")


def parse_block(path: Path, block: Block, fields: Sequence[Field], kinds: BlockKinds, skip_bad_lines: bool,
                first_block: bool) -> tuple[dict[int, np.ndarray], list[BadLine]]:
    """The block's declared columns as numpy arrays (a choice column as its codes: positions in the sorted
    choices) and its malformed records (only with ``skip_bad_lines``;
    else the first one raises DataFormatError)."""
    try:
        table = _arrow_read(block, {f.index: kinds.arrow_type(f.index) for f in fields})
        return _typed_columns(table, fields, kinds), []
    except (pa.ArrowInvalid, _Suspicious):
        pass
    if len(block.data) > _SCAN_SIZE:  # narrow the line-by-line check down to the small pieces that fail
        return _parse_pieces(path, block, fields, kinds, skip_bad_lines, first_block)
    bad = scan(block, fields, collect=skip_bad_lines)
    if bad and not skip_bad_lines:
        report_bad_lines(path, bad, False)
    if bad:
        cleaned = dataclasses.replace(block, data=without_lines(block, bad))
        columns, _ = parse_block(path, cleaned, fields, kinds, False, first_block)
        return columns, bad
    return _converted(path, block, fields, kinds, first_block), []


def _parse_pieces(path: Path, block: Block, fields: Sequence[Field], kinds: BlockKinds, skip_bad_lines: bool,
                  first_block: bool) -> tuple[dict[int, np.ndarray], list[BadLine]]:
    """:func:`parse_block` over pieces of about ``_SCAN_SIZE`` bytes of ``block``, joined."""
    pieces = list(iter_line_blocks(path, _SCAN_SIZE, quoting=block.quoting, data=block.data))
    parts: dict[int, list[np.ndarray]] = {f.index: [] for f in fields}
    bad: list[BadLine] = []
    line = block.first_line
    for n, data in enumerate(pieces):
        piece = dataclasses.replace(block, data=data, first_line=line, last=block.last and n == len(pieces) - 1)
        cols, piece_bad = parse_block(path, piece, fields, kinds, skip_bad_lines, first_block and n == 0)
        bad += piece_bad
        for index, values in cols.items():
            parts[index].append(values)
        line += data.count(b"\n")
    return {i: np.concatenate(p) if len(p) > 1 else p[0] for i, p in parts.items()}, bad
