"""Format ``comirec``: ComiRec / SINE data files, ``user,item,timestamp`` lines and an optional
``item,category`` file."""

from __future__ import annotations

from pathlib import Path

from sinerec.data.assemble import align_items, events_frame, items_frame, skipped_meta
from sinerec.data.delimited import DelimitedFile, Field, parse_delimited
from sinerec.data.files import PathLike, dataset_stem
from sinerec.data.formats import ReadOptions
from sinerec.data.frame import ITEM, TIMESTAMP, USER, Interactions

__all__ = ["read", "read_comirec"]


def read(options: ReadOptions) -> Interactions:
    """The ``comirec`` format: ``options.item_path`` is the optional ``item,category`` file."""
    return read_comirec(options.path, options.item_path, name=options.name,
                        skip_bad_lines=options.skip_bad_lines)


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
    spec = DelimitedFile(
        path,
        sep=",",
        n_fields=3,
        fields=(Field(0, "id", "user id"), Field(1, "id", "item id"), Field(2, "time", "timestamp")),
    )
    cols, skipped = parse_delimited(spec, skip_bad_lines)
    events = events_frame({USER: cols[0], ITEM: cols[1], TIMESTAMP: cols[2]})
    items = None
    sources = [str(path)]
    meta = skipped_meta(skipped)
    if category_path is not None:
        category_path = Path(category_path)
        sources.append(str(category_path))
        cspec = DelimitedFile(
            category_path,
            sep=",",
            n_fields=2,
            fields=(Field(0, "id", "item id"), Field(1, "id", "category")),
        )
        ccols, cskipped = parse_delimited(cspec, skip_bad_lines)
        items = items_frame(ccols[0], categories=[(str(c),) for c in ccols[1]])
        if cskipped:
            meta["skipped_item_lines"] = cskipped
    return Interactions(
        events, align_items(events, items), name=name or dataset_stem(path), source=", ".join(sources), meta=meta
    )
