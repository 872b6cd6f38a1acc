"""Format ``movielens``: a MovieLens CSV release (ml-latest-small, ml-latest, ml-20m, ml-25m, ml-32m), a folder
with ``ratings.csv`` and ``movies.csv``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sinerec.data.assemble import align_items, events_frame, genre_tuples, items_frame, skipped_meta
from sinerec.data.delimited import DelimitedFile, Field, parse_delimited, read_header
from sinerec.data.files import PathLike, find_file
from sinerec.data.formats import ReadOptions
from sinerec.data.frame import ITEM, TIMESTAMP, USER, Interactions
from sinerec.errors import DataFormatError

__all__ = ["read", "read_movielens_csv"]


def read(options: ReadOptions) -> Interactions:
    """The ``movielens`` format: ``options.path`` is the folder."""
    return read_movielens_csv(options.path, name=options.name, skip_bad_lines=options.skip_bad_lines)


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
    ratings_path, movies_path = find_file(folder, "ratings.csv"), find_file(folder, "movies.csv")
    header = read_header(ratings_path, ",", True, "utf-8")
    u, i, r, t = _header_positions(ratings_path, header, ["userId", "movieId", "rating", "timestamp"])
    spec = DelimitedFile(
        ratings_path,
        sep=",",
        n_fields=len(header),
        first_line=2,
        quoting=True,
        fields=(
            Field(u, "id", "user id"),
            Field(i, "id", "movie id"),
            Field(r, "num", "rating"),
            Field(t, "time", "timestamp"),
        ),
    )
    cols, skipped = parse_delimited(spec, skip_bad_lines)
    events = events_frame({USER: cols[u], ITEM: cols[i], TIMESTAMP: cols[t], "rating": cols[r]})

    mheader = read_header(movies_path, ",", True, "utf-8")
    mi, mt, mg = _header_positions(movies_path, mheader, ["movieId", "title", "genres"])
    mspec = DelimitedFile(
        movies_path,
        sep=",",
        n_fields=len(mheader),
        first_line=2,
        quoting=True,
        fields=(Field(mi, "id", "movie id"), Field(mt, "text", "title"), Field(mg, "text", "genres")),
    )
    mcols, mskipped = parse_delimited(mspec, skip_bad_lines)
    items = items_frame(mcols[mi], title=mcols[mt], categories=genre_tuples(mcols[mg]))
    meta = skipped_meta(skipped)
    if mskipped:
        meta["skipped_item_lines"] = mskipped
    return Interactions(
        events,
        align_items(events, items),
        name=name or folder.resolve().name,
        source=f"{ratings_path}, {movies_path}",
        meta=meta,
    )
