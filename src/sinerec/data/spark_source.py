"""What ``sinerec data prepare --engine spark`` reads: a delimited format's interaction file described as a
:class:`SparkSource` (separator, fields, which field is the user, the item...), with the same rules as the
format's single-machine reader (``sinerec.data.formats``).

Formats: ``taobao`` (Tianchi UserBehavior lines), ``comirec`` (``user,item,timestamp`` lines, and its
``item,category`` file), ``movielens`` (a folder: ``ratings.csv``, and ``movies.csv`` for titles and
genres), ``ml-1m`` (``ratings.dat`` and ``movies.dat``) and ``table`` (delimited text with a header or column
positions). The others, and options whose single-machine rule the engine does not reproduce (table's Parquet
input, multi-character separators), are refused with :class:`~sinerec.errors.ConfigError` naming the
option: the engine never gives a different artifact silently.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from sinerec.config import DataConfig
from sinerec.data.assemble import align_items, genre_tuples, items_frame
from sinerec.data.columns import TABLE_COLUMNS, column_position, wanted_columns
from sinerec.data.datasets import DATASETS
from sinerec.data.delimited import DelimitedFile, parse_delimited, read_header
from sinerec.data.files import dataset_stem, find_file
from sinerec.data.formats import DEFAULT_FORMAT
from sinerec.data.formats.taobao import TAOBAO_BEHAVIORS
from sinerec.data.frame import BEHAVIOR, CATEGORY, ITEM, TIMESTAMP, USER
from sinerec.data.linescan import Field, split_fields
from sinerec.errors import ConfigError, DataFormatError, SinerecError

__all__ = ["SPARK_FORMATS", "SparkSource", "side_items", "spark_source"]

#: The formats ``--engine spark`` reads.
SPARK_FORMATS = ("taobao", "comirec", "movielens", "ml-1m", "table")

#: How many first lines a header-less table's field count is taken from (as the single-machine reader does).
_HEAD_LINES = 1000


@dataclass(frozen=True)
class SparkSource:
    """A delimited interaction file as the engine parses it.

    ``path`` is what Spark reads (a local path or a URI such as ``hdfs://...``); ``name`` the dataset name;
    ``sep`` the one-character separator; every record has ``n_fields`` fields, ``fields`` declares the checked
    ones (the single-machine rules of :class:`~sinerec.data.linescan.Field`); ``columns`` maps the logical
    columns (user, item, timestamp, category, behavior) to field indexes; ``header``: line 1 holds names and is
    not data; ``quoting``: the single-machine reader splits csv quotes (the engine refuses a line holding
    one); ``side`` reads the format's item file (small: one line per item) on the driver, with the
    single-machine reader, as an items table (:func:`side_items`); ``encoding`` "utf-8", or "latin-1" (then
    the engine refuses a line that is not ASCII: Spark decodes UTF-8).
    """

    path: str
    name: str
    sep: str
    n_fields: int
    fields: tuple[Field, ...]
    columns: dict[str, int]
    header: bool = False
    quoting: bool = False
    side: Callable[[], pd.DataFrame] | None = None
    encoding: str = "utf-8"


def side_items(source: SparkSource, item_ids: np.ndarray, int_items: bool
               ) -> tuple[list[str] | None, list[tuple[str, ...]] | None]:
    """The titles and categories of the items ``item_ids`` (index 0 padding) from the source's item file
    (``source.side``), by the single-machine rules (``sinerec.data.preprocess``): (None, None) without one.
    ``int_items``: the log's item ids are integers."""
    items = source.side() if source.side is not None else None
    events = pd.DataFrame({ITEM: pd.Series([], dtype=np.int64 if int_items else object)})
    aligned = align_items(events, items)
    if aligned is None or not len(aligned):
        return None, None
    info = aligned.reindex(pd.Index(item_ids[1:]))
    titles = categories = None
    if "title" in info.columns:
        titles = [""] + [t if isinstance(t, str) else "" for t in info["title"].tolist()]
    if "categories" in info.columns:
        categories = [()] + [tuple(c) if isinstance(c, (tuple, list)) else () for c in info["categories"]]
    return titles, categories


def _comirec_items(path: Path, skip_bad_lines: bool) -> pd.DataFrame:
    """comirec's ``item,category`` file as ``sinerec.data.formats.comirec`` reads it."""
    spec = DelimitedFile(path, sep=",", n_fields=2, fields=(Field(0, "id", "item id"), Field(1, "id", "category")))
    columns, _ = parse_delimited(spec, skip_bad_lines)
    return items_frame(columns[0], categories=[(str(c),) for c in columns[1]])


def _positions(path: Path, header: list[str], wanted: list[str]) -> list[int]:
    """The positions of the ``wanted`` columns (MovieLens' rule: a missing one is a malformed header)."""
    missing = [w for w in wanted if w not in header]
    if missing:
        raise DataFormatError(str(path), 1, ",".join(header), f"unexpected header: missing column(s) "
                                                                f"{', '.join(missing)}")
    return [header.index(w) for w in wanted]


def _movielens_items(path: Path, skip_bad_lines: bool) -> pd.DataFrame:
    """MovieLens' ``movies.csv`` as ``sinerec.data.formats.movielens`` reads it (titles, genres)."""
    header = read_header(path, ",", True, "utf-8")
    mi, mt, mg = _positions(path, header, ["movieId", "title", "genres"])
    spec = DelimitedFile(path, sep=",", n_fields=len(header), first_line=2, quoting=True,
                         fields=(Field(mi, "id", "movie id"), Field(mt, "text", "title"), Field(mg, "text", "genres")))
    columns, _ = parse_delimited(spec, skip_bad_lines)
    return items_frame(columns[mi], title=columns[mt], categories=genre_tuples(columns[mg]))


def _ml1m_items(path: Path, skip_bad_lines: bool) -> pd.DataFrame:
    """MovieLens-1M's ``movies.dat`` (latin-1, ``::``) as ``sinerec.data.formats.ml1m`` reads it."""
    spec = DelimitedFile(path, sep="::", n_fields=3, encoding="latin-1",
                         fields=(Field(0, "id", "movie id"), Field(1, "text", "title"), Field(2, "text", "genres")))
    columns, _ = parse_delimited(spec, skip_bad_lines)
    return items_frame(columns[0], title=columns[1], categories=genre_tuples(columns[2]))


def _ml1m_source(cfg: DataConfig, name: str | None) -> SparkSource:
    """A MovieLens-1M folder: ``ratings.dat`` (read by Spark; latin-1, so lines must be ASCII) and
    ``movies.dat`` (the item file)."""
    folder = Path(str(cfg.path))
    ratings, movies = find_file(folder, "ratings.dat"), find_file(folder, "movies.dat")
    fields = (Field(0, "id", "user id"), Field(1, "id", "movie id"), Field(2, "num", "rating"),
              Field(3, "time", "timestamp"))
    return SparkSource(str(ratings), name or "ml-1m", "::", 4, fields, {USER: 0, ITEM: 1, TIMESTAMP: 3},
                       encoding="latin-1", side=partial(_ml1m_items, movies, cfg.skip_bad_lines))


def _movielens_source(cfg: DataConfig, name: str | None) -> SparkSource:
    """A MovieLens CSV folder: ``ratings.csv`` (read by Spark) and ``movies.csv`` (the item file)."""
    folder = Path(str(cfg.path))
    ratings, movies = find_file(folder, "ratings.csv"), find_file(folder, "movies.csv")
    header = read_header(ratings, ",", True, "utf-8")
    u, i, r, t = _positions(ratings, header, ["userId", "movieId", "rating", "timestamp"])
    fields = (Field(u, "id", "user id"), Field(i, "id", "movie id"), Field(r, "num", "rating"),
              Field(t, "time", "timestamp"))
    return SparkSource(str(ratings), name or folder.resolve().name, ",", len(header), fields,
                       {USER: u, ITEM: i, TIMESTAMP: t}, header=True, quoting=True,
                       side=partial(_movielens_items, movies, cfg.skip_bad_lines))


def spark_source(cfg: DataConfig, head: Callable[[int], list[bytes]]) -> SparkSource:
    """The source of ``cfg`` (``data.path`` in ``data.format``); ``head(n)`` gives the file's first ``n``
    lines (bytes, for a table's header or field count). Refuses, naming the setting, a named dataset, a format
    outside :data:`SPARK_FORMATS` and the options the engine does not reproduce."""
    if cfg.path is None:
        raise ConfigError("--engine spark reads --path FILE with --format (a named --dataset is prepared on one "
                          "machine: drop --engine spark)")
    fmt = cfg.format or DEFAULT_FORMAT
    if fmt not in SPARK_FORMATS:
        raise ConfigError(f"data.format: --engine spark reads {', '.join(SPARK_FORMATS)}, not {fmt!r} "
                          "(prepare it on one machine: drop --engine spark)")
    path = cfg.path
    name = cfg.dataset if cfg.dataset not in DATASETS else None
    if fmt == "taobao":
        fields: tuple[Field, ...] = (Field(0, "id", "user id"), Field(1, "id", "item id"),
                                     Field(2, "id", "category id"),
                                     Field(3, "choice", "behaviour type", choices=frozenset(TAOBAO_BEHAVIORS)),
                                     Field(4, "time", "timestamp"))
        columns = {USER: 0, ITEM: 1, CATEGORY: 2, BEHAVIOR: 3, TIMESTAMP: 4}
        return SparkSource(path, name or "taobao", ",", 5, fields, columns)
    if fmt == "comirec":
        fields = (Field(0, "id", "user id"), Field(1, "id", "item id"), Field(2, "time", "timestamp"))
        side = partial(_comirec_items, Path(cfg.item_path), cfg.skip_bad_lines) if cfg.item_path else None
        return SparkSource(path, name or dataset_stem(Path(path)), ",", 3, fields,
                           {USER: 0, ITEM: 1, TIMESTAMP: 2}, side=side)
    if fmt == "movielens":
        return _movielens_source(cfg, name)
    if fmt == "ml-1m":
        return _ml1m_source(cfg, name)
    return _table_source(cfg, head, name)


def _table_source(cfg: DataConfig, head: Callable[[int], list[bytes]], name: str | None) -> SparkSource:
    """Format ``table`` as ``sinerec.data.formats.table`` reads delimited text: names from the header line
    (or 0-based positions), the field count from the header (or the most common count of the first lines)."""
    path = Path(cfg.path or "")
    if len(cfg.sep) != 1:
        raise ConfigError(f"data.sep: the table format needs a one-character separator, got {cfg.sep!r}")
    if path.suffix.lower() in (".parquet", ".pq"):
        raise ConfigError(f"data.path: --engine spark reads delimited text, not Parquet ({path})")
    wanted = wanted_columns(cfg.user_col, cfg.item_col, cfg.timestamp_col, cfg.category_col, cfg.behavior_col)
    names: list[str] | None = None
    if cfg.header:
        names = _header(path, cfg.sep, head(1))
        n_fields = len(names)
    else:
        n_fields = _usual_field_count(cfg.sep, head(_HEAD_LINES), wanted)
    positions = {key: column_position(path, col, names, n_fields) for key, col in wanted.items()}
    fields: dict[int, Field] = {}
    for key, pos in positions.items():  # a column named twice (say user and category) is checked once
        kind, label = TABLE_COLUMNS[key]
        fields.setdefault(pos, Field(pos, kind, label, datetime=(key == TIMESTAMP)))
    return SparkSource(str(cfg.path), name or dataset_stem(path), cfg.sep, n_fields, tuple(fields.values()),
                       positions, header=cfg.header, quoting=True)


def _header(path: Path, sep: str, lines: list[bytes]) -> list[str]:
    """The column names of the first line (the rules of ``sinerec.data.delimited.read_header``)."""
    first = lines[0].rstrip(b"\r") if lines else b""
    if not first.strip():
        raise SinerecError(f"{path}: empty file, expected a header line")
    try:
        text = first.decode("utf-8")
    except UnicodeDecodeError:
        raise DataFormatError(str(path), 1, first.decode("utf-8", "replace"), "not valid utf-8") from None
    return [name.strip() for name in split_fields(text, sep, True)]


def _usual_field_count(sep: str, lines: list[bytes], wanted: dict[str, str | int]) -> int:
    """A header-less file's number of fields: the most common count among its first lines."""
    counts = Counter(len(split_fields(line.rstrip(b"\r").decode("utf-8", "replace"), sep, True))
                     for line in lines if line.rstrip(b"\r"))
    if counts:
        return counts.most_common(1)[0][0]
    positions = [c for c in wanted.values() if isinstance(c, int) and not isinstance(c, bool)]
    return max(positions, default=-1) + 1
