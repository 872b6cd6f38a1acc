"""Format ``recbole``: RecBole atomic files, ``.inter`` and optionally ``.item`` (tab-separated, ``name:type``
header)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sinerec.data.assemble import align_items, events_frame, items_frame, skipped_meta
from sinerec.data.delimited import DelimitedFile, Field, parse_delimited, read_header
from sinerec.data.files import PathLike, dataset_stem
from sinerec.data.formats import ReadOptions
from sinerec.data.frame import ITEM, TIMESTAMP, USER, Interactions
from sinerec.errors import DataFormatError, SinerecError

__all__ = ["read", "read_recbole", "sibling_item_file"]


def read(options: ReadOptions) -> Interactions:
    """The ``recbole`` format: ``options.path`` is the ``.inter`` file, ``options.item_path`` the ``.item``;
    without ``item_path``, the ``.item`` file next to the ``.inter`` one (same stem), when there is one."""
    item_path = options.item_path if options.item_path is not None else sibling_item_file(options.path)
    return read_recbole(options.path, item_path, name=options.name, skip_bad_lines=options.skip_bad_lines)


def sibling_item_file(inter_path: PathLike) -> Path | None:
    """RecBole's layout: ``NAME.item`` in the folder of ``NAME.inter``; None when it does not exist."""
    candidate = Path(inter_path).with_suffix(".item")
    return candidate if candidate.is_file() else None


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
    header = read_header(inter_path, "\t", False, "utf-8")
    names, _ = _recbole_header(inter_path, header)
    for field_name in (user_field, item_field):
        if field_name not in names:
            raise SinerecError(f"{inter_path}: no field {field_name!r}; the fields are: {', '.join(header)}")
    u, i = names.index(user_field), names.index(item_field)
    fields = [Field(u, "id", "user id"), Field(i, "id", "item id")]
    t = names.index(time_field) if time_field in names else None
    r = names.index("rating") if "rating" in names else None
    if t is not None:
        fields.append(Field(t, "time", "timestamp"))
    if r is not None:
        fields.append(Field(r, "num", "rating"))
    spec = DelimitedFile(inter_path, sep="\t", n_fields=len(names), fields=fields, first_line=2)
    cols, skipped = parse_delimited(spec, skip_bad_lines)
    event_cols = {USER: cols[u], ITEM: cols[i]}
    if t is not None:
        event_cols[TIMESTAMP] = cols[t]
    if r is not None:
        event_cols["rating"] = cols[r]
    events = events_frame(event_cols)
    items = None
    sources = [str(inter_path)]
    meta = skipped_meta(skipped)
    if item_path is not None:
        item_path = Path(item_path)
        sources.append(str(item_path))
        items, iskipped = _read_recbole_items(item_path, item_field, skip_bad_lines)
        if iskipped:
            meta["skipped_item_lines"] = iskipped
    return Interactions(
        events,
        align_items(events, items),
        name=name or dataset_stem(inter_path),
        source=", ".join(sources),
        meta=meta,
    )


def _read_recbole_items(
    path: Path, item_field: str, skip_bad_lines: bool
) -> tuple[pd.DataFrame | None, list[int]]:
    header = read_header(path, "\t", False, "utf-8")
    names, types = _recbole_header(path, header)
    if item_field not in names:
        raise SinerecError(f"{path}: no field {item_field!r}; the fields are: {', '.join(header)}")
    i = names.index(item_field)
    title = next((names.index(n) for n in ("title", "movie_title", "item_title") if n in names), None)
    cat = next((names.index(n) for n in ("genre", "categories", "class", "category") if n in names), None)
    fields = [Field(i, "id", "item id")]
    fields += [Field(c, "text", names[c]) for c in (title, cat) if c is not None]
    spec = DelimitedFile(path, sep="\t", n_fields=len(names), fields=fields, first_line=2)
    cols, skipped = parse_delimited(spec, skip_bad_lines)
    if title is None and cat is None:
        return None, skipped
    categories = None
    if cat is not None:
        if types[cat].endswith("_seq"):
            categories = [tuple(v.split()) for v in cols[cat]]
        else:
            categories = [(v,) if v else () for v in cols[cat]]
    return items_frame(
        cols[i], title=cols[title] if title is not None else None, categories=categories
    ), skipped
