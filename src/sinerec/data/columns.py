"""The logical columns of a generic interaction table (formats ``table`` and ``parquet``): what each holds,
how a column named by the user is found, and the Interactions built from them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sinerec.data.assemble import align_items, events_frame, first_category_items, skipped_meta
from sinerec.data.files import dataset_stem
from sinerec.data.frame import BEHAVIOR, CATEGORY, ITEM, TIMESTAMP, USER, Interactions
from sinerec.errors import SinerecError

__all__ = ["TABLE_COLUMNS", "column_position", "table_interactions", "wanted_columns"]

#: Logical column -> (field kind, label in messages); the kinds are those of ``sinerec.data.delimited.Field``.
TABLE_COLUMNS: dict[str, tuple[str, str]] = {
    USER: ("id", "user id"),
    ITEM: ("id", "item id"),
    TIMESTAMP: ("time", "timestamp"),
    CATEGORY: ("id", "category"),
    BEHAVIOR: ("text", "behavior"),
}


def wanted_columns(
    user_col: str | int,
    item_col: str | int,
    timestamp_col: str | int | None,
    category_col: str | int | None,
    behavior_col: str | int | None,
) -> dict[str, str | int]:
    """Logical column -> the user's name or position, for the columns asked for (not None)."""
    given = {
        USER: user_col,
        ITEM: item_col,
        TIMESTAMP: timestamp_col,
        CATEGORY: category_col,
        BEHAVIOR: behavior_col,
    }
    return {k: v for k, v in given.items() if v is not None}


def column_position(path: Path, column: str | int, header: list[str] | None, n_fields: int) -> int:
    """The 0-based position of ``column`` (a name in ``header``, or a position); SinerecError naming the
    file and the existing columns when there is no such column."""
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


def table_interactions(
    path: Path, cols: dict[str, pd.Series], skipped: list[int], name: str | None
) -> Interactions:
    """Events user, item [, timestamp] [, behavior] [, category] in file order; with a category column,
    ``items.categories`` = (the item's first seen category,). ``name`` defaults to the file's stem."""
    events = events_frame({k: cols[k] for k in (USER, ITEM, TIMESTAMP, BEHAVIOR, CATEGORY) if k in cols})
    items = first_category_items(events[ITEM], events[CATEGORY]) if CATEGORY in events else None
    return Interactions(
        events, align_items(events, items), name=name or dataset_stem(path), source=str(path),
        meta=skipped_meta(skipped),
    )
