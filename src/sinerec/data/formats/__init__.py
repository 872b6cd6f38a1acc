"""The file formats a custom dataset (``data.path`` + ``data.format``) can be read from: one table, one source.

``FORMATS`` maps a format's name to its :class:`FormatSpec`; the pipeline reads through it, the CLI lists it
in ``--format``, configuration validation accepts exactly its keys, and the shared reader tests run every
entry. Adding a format is one module in this package (its reader, taking :class:`ReadOptions`) plus one
entry below (or :func:`register_format` from outside the package).

Every reader

* keeps the events in file order (no sorting, no filtering beyond what its arguments ask for);
* reads ``.gz`` files transparently (detected from the gzip magic bytes, so the suffix does not matter);
* gives ids as int64 when every id of the column is an integer, else as str (object dtype);
* raises :class:`~sinerec.errors.DataFormatError` naming the file, the 1-based line number and the line for
  the first malformed row, or, with ``skip_bad_lines=True``, skips every malformed row with one
  ``warnings.warn`` naming the file and the lines (their numbers are also kept in ``meta["skipped_lines"]``);
* sets ``Interactions.name`` (overridable with ``name=``) and ``Interactions.source`` (the paths read).

The building blocks: ``sinerec.data.files`` (file access), ``sinerec.data.delimited`` (the schema-driven
parser of delimited text), ``sinerec.data.assemble`` (ids, events and items tables) and
``sinerec.data.columns`` (the columns of a generic table).

This module imports no reader (and no pandas): the built-in entries import their module on first read, so
the command line can list the formats without loading the data stack.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sinerec.data.frame import Interactions

__all__ = ["DEFAULT_FORMAT", "FORMATS", "FormatSpec", "ReadOptions", "register_format"]


@dataclass(frozen=True)
class ReadOptions:
    """What a format reader may use, taken from the ``data`` configuration section.

    path: the interaction file (or folder, for ml-1m and movielens); item_path: the format's optional item
    file; user_col ... behavior_col, sep, header: table/parquet column names or positions; name: the
    dataset name (None: the reader's default, usually the file's stem); skip_bad_lines: skip malformed lines
    with a warning instead of raising DataFormatError; compact: the log is only preprocessed
    (``sinerec.pipeline``), so a reader may hold it in less memory: narrower types for the same values and
    no per-event column that preprocessing does not read (``taobao``: int32 timestamps when they fit, the
    behaviour as a Categorical, no per-event category).
    """

    path: str
    item_path: str | None = None
    user_col: str | int = "user_id"
    item_col: str | int = "item_id"
    timestamp_col: str | int | None = "timestamp"
    category_col: str | int | None = None
    behavior_col: str | int | None = None
    sep: str | None = None
    header: bool = True
    name: str | None = None
    skip_bad_lines: bool = False
    compact: bool = False


#: A format's reader: options -> the interaction log in file order.
Reader = Callable[[ReadOptions], "Interactions"]


@dataclass(frozen=True)
class FormatSpec:
    """One readable format: its ``data.format`` name, one line for help texts, and its reader."""

    name: str
    description: str
    read: Reader


def _reader_of(module: str) -> Reader:
    """The ``read`` function of ``sinerec.data.formats.<module>``, imported on the first call."""

    def read(options: ReadOptions) -> Interactions:
        reader: Reader = importlib.import_module(f"{__name__}.{module}").read
        return reader(options)

    return read


#: The format used when ``data.format`` is not given.
DEFAULT_FORMAT = "table"

FORMATS: dict[str, FormatSpec] = {
    spec.name: spec
    for spec in (
        FormatSpec("table", "delimited text (csv, tsv...) with named columns, or Parquet by suffix",
                   _reader_of("table")),
        FormatSpec("parquet", "a Parquet table with named columns (needs pyarrow)", _reader_of("parquet")),
        FormatSpec("recbole", "RecBole atomic files: .inter (+ .item)", _reader_of("recbole")),
        FormatSpec("comirec", "ComiRec/SINE user,item,timestamp lines (+ item,category file)",
                   _reader_of("comirec")),
        FormatSpec("sequences", "one 'user item item ...' line per user (SASRec; + item2attributes.json)",
                   _reader_of("sequences")),
        FormatSpec("taobao", "Tianchi Taobao UserBehavior.csv (every behaviour type)", _reader_of("taobao")),
        FormatSpec("ml-1m", "MovieLens-1M folder: ratings.dat and movies.dat", _reader_of("ml1m")),
        FormatSpec("movielens", "MovieLens CSV folder: ratings.csv and movies.csv", _reader_of("movielens")),
    )
}


def register_format(spec: FormatSpec) -> None:
    """Add ``spec`` to ``FORMATS`` (a plug-in's format); a name already registered raises ValueError."""
    if spec.name in FORMATS:
        raise ValueError(f"format {spec.name!r} is already registered")
    FORMATS[spec.name] = spec
