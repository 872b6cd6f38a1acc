"""Format ``ml-1m``: MovieLens-1M as GroupLens publishes it, a folder with ``ratings.dat`` and ``movies.dat``."""

from __future__ import annotations

from pathlib import Path

from sinerec.data.assemble import align_items, events_frame, genre_tuples, items_frame, skipped_meta
from sinerec.data.delimited import DelimitedFile, Field, parse_delimited
from sinerec.data.files import PathLike, find_file
from sinerec.data.formats import ReadOptions
from sinerec.data.frame import ITEM, TIMESTAMP, USER, Interactions

__all__ = ["read", "read_ml1m"]


def read(options: ReadOptions) -> Interactions:
    """The ``ml-1m`` format: ``options.path`` is the folder."""
    if options.name is None:
        return read_ml1m(options.path, skip_bad_lines=options.skip_bad_lines)
    return read_ml1m(options.path, name=options.name, skip_bad_lines=options.skip_bad_lines)


def read_ml1m(folder: PathLike, *, name: str = "ml-1m", skip_bad_lines: bool = False) -> Interactions:
    """MovieLens-1M as GroupLens publishes it: ``ratings.dat`` and ``movies.dat`` in ``folder``.

    ``ratings.dat``: ``UserID::MovieID::Rating::Timestamp``; ``movies.dat``: ``MovieID::Title::Genres``
    in latin-1, genres joined by ``|``. Either may be gzipped (``ratings.dat.gz``).

    Returns events with columns user, item, timestamp (int64 unix seconds), rating (float64), in file order
    (which is by user, not by time); items indexed by movie id with ``title`` and ``categories`` (genres).
    """
    folder = Path(folder)
    ratings_path, movies_path = find_file(folder, "ratings.dat"), find_file(folder, "movies.dat")
    spec = DelimitedFile(
        ratings_path,
        sep="::",
        n_fields=4,
        fields=(
            Field(0, "id", "user id"),
            Field(1, "id", "movie id"),
            Field(2, "num", "rating"),
            Field(3, "time", "timestamp"),
        ),
        encoding="latin-1",
    )
    cols, skipped = parse_delimited(spec, skip_bad_lines)
    events = events_frame({USER: cols[0], ITEM: cols[1], TIMESTAMP: cols[3], "rating": cols[2]})
    mspec = DelimitedFile(
        movies_path,
        sep="::",
        n_fields=3,
        fields=(Field(0, "id", "movie id"), Field(1, "text", "title"), Field(2, "text", "genres")),
        encoding="latin-1",
    )
    mcols, mskipped = parse_delimited(mspec, skip_bad_lines)
    items = items_frame(mcols[0], title=mcols[1], categories=genre_tuples(mcols[2]))
    meta = skipped_meta(skipped)
    if mskipped:
        meta["skipped_item_lines"] = mskipped
    return Interactions(
        events, align_items(events, items), name=name, source=f"{ratings_path}, {movies_path}", meta=meta
    )
