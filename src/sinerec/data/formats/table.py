"""Format ``table``: a generic interaction table, delimited text (csv, tsv, any one-character separator,
quoted fields allowed, optional header) or Parquet (by the ``.parquet``/``.pq`` suffix)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from sinerec.data.columns import TABLE_COLUMNS, column_position, table_interactions, wanted_columns
from sinerec.data.delimited import DelimitedFile, Field, parse_delimited, read_header, split_fields
from sinerec.data.files import PathLike, head_block
from sinerec.data.formats import ReadOptions
from sinerec.data.formats.parquet import read_parquet_columns
from sinerec.data.frame import TIMESTAMP, Interactions
from sinerec.errors import SinerecError

__all__ = ["read", "read_table"]


def read(options: ReadOptions) -> Interactions:
    """The ``table`` format: :func:`read_table` with the configured columns, separator and header."""
    return read_table(options.path, options.user_col, options.item_col, options.timestamp_col,
                      options.category_col, options.behavior_col, sep=options.sep, header=options.header,
                      name=options.name, skip_bad_lines=options.skip_bad_lines)


def _default_sep(path: Path) -> str:
    """Tab for ``.tsv``/``.tab`` files (gzipped or not), else comma."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return "\t" if suffixes and suffixes[-1] in (".tsv", ".tab") else ","


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
    wanted = wanted_columns(user_col, item_col, timestamp_col, category_col, behavior_col)
    if fmt == "parquet":
        cols = read_parquet_columns(path, wanted)
        skipped: list[int] = []
    else:
        cols, skipped = _read_delimited_table(path, wanted, sep or _default_sep(path), header, skip_bad_lines)
    return table_interactions(path, cols, skipped, name)


def _read_delimited_table(
    path: Path, wanted: dict[str, str | int], sep: str, header: bool, skip_bad_lines: bool
) -> tuple[dict[str, pd.Series], list[int]]:
    if len(sep) != 1:
        raise SinerecError(f"read_table: sep must be one character, got {sep!r}")
    names: list[str] | None = None
    first_line = 1
    if header:
        names = read_header(path, sep, True, "utf-8")
        n_fields, first_line = len(names), 2
    else:
        n_fields = _usual_field_count(path, sep, wanted)
    positions = {k: column_position(path, c, names, n_fields) for k, c in wanted.items()}
    fields: dict[int, Field] = {}
    for key, pos in positions.items():  # a column named twice (say user and category) is checked once
        kind, label = TABLE_COLUMNS[key]
        fields.setdefault(pos, Field(pos, kind, label, datetime=(key == TIMESTAMP)))
    spec = DelimitedFile(
        path,
        sep=sep,
        n_fields=n_fields,
        fields=list(fields.values()),
        first_line=first_line,
        quoting=True,
    )
    cols, skipped = parse_delimited(spec, skip_bad_lines)
    return {k: cols[pos] for k, pos in positions.items()}, skipped


def _usual_field_count(path: Path, sep: str, wanted: dict[str, str | int]) -> int:
    """A header-less file's number of fields: the most common count among its first lines (the first MiB,
    read alone), so that one malformed first line is reported as such rather than every line after it."""
    head = head_block(path, 1 << 20, quoting=True).split(b"\n")[:1000]
    counts = Counter(
        len(split_fields(line.rstrip(b"\r").decode("utf-8", "replace"), sep, True))
        for line in head
        if line.rstrip(b"\r")
    )
    if counts:
        return counts.most_common(1)[0][0]
    # An empty file: any position asked for exists (there is nothing to read anyway).
    positions = [c for c in wanted.values() if isinstance(c, int) and not isinstance(c, bool)]
    return max(positions, default=-1) + 1

