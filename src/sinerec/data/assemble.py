"""From parsed columns to an :class:`~sinerec.data.frame.Interactions`: original ids, the events frame, the
items table and the reader's ``meta``.

Original ids keep their value: a column of ids is int64 when every id is an integer that fits, else str
(object dtype); the items table is indexed with the dtype of ``events.item`` so that the two join.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from sinerec.data.frame import ITEM

__all__ = [
    "align_items",
    "events_frame",
    "first_category_items",
    "genre_tuples",
    "ids_from_strings",
    "items_frame",
    "normalize_ids",
    "skipped_meta",
]

#: MovieLens' label for a movie without genres; it becomes an empty tuple of categories.
_NO_GENRES = "(no genres listed)"


def ids_from_strings(values: Sequence[str] | np.ndarray) -> pd.Series:
    """int64 when every string is an integer that fits, else str (object)."""
    arr = np.asarray(values, dtype=object)
    try:
        as_int = np.array([int(v) for v in arr], dtype=np.int64) if len(arr) else np.array([], dtype=np.int64)
    except (ValueError, OverflowError, TypeError):
        return pd.Series(arr, dtype=object)
    return pd.Series(as_int, dtype=np.int64)


def normalize_ids(col: pd.Series) -> pd.Series:
    """Ids of any dtype (Parquet, JSON keys) -> int64 when all are integral, else str (object)."""
    if pd.api.types.is_integer_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        if col.dtype == np.uint64 and len(col) and int(col.max()) >= 2**63:
            return col.astype(str).astype(object)
        return col.astype(np.int64)
    if pd.api.types.is_float_dtype(col.dtype):
        arr = col.to_numpy(dtype=np.float64)
        if np.all(arr == np.floor(arr)) and np.all(np.abs(arr) < 2**62):
            return col.astype(np.int64)
        return col.astype(str).astype(object)
    text = [str(v) for v in col]
    if all(re.fullmatch(r"[+-]?\d+", v) for v in text):
        return ids_from_strings(text).set_axis(col.index)
    return pd.Series(text, index=col.index, dtype=object)


def align_items(events: pd.DataFrame, items: pd.DataFrame | None) -> pd.DataFrame | None:
    """Give ``items`` an index of the dtype of ``events.item``.

    int64 events with str item ids: the ids that are not integers cannot match any event, so they are dropped.
    """
    if items is None:
        return None
    index = items.index
    if events[ITEM].dtype == np.int64 and index.dtype != np.int64:
        keep = [bool(re.fullmatch(r"\s*[+-]?\d+\s*", str(v))) for v in index]
        items = items[keep]
        items.index = pd.Index([int(str(v)) for v in items.index], dtype=np.int64)
    elif events[ITEM].dtype != np.int64 and index.dtype != object:
        items = items.copy()
        items.index = pd.Index([str(v) for v in index], dtype=object)
    items = items[~items.index.duplicated(keep="first")]
    items.index.name = ITEM
    return items


def genre_tuples(values: pd.Series, sep: str = "|") -> list[tuple[str, ...]]:
    """'A|B' -> ('A', 'B'); '' and MovieLens' '(no genres listed)' -> ()."""
    out: list[tuple[str, ...]] = []
    for value in values:
        value = value.strip()
        if not value or value == _NO_GENRES:
            out.append(())
        else:
            out.append(tuple(g for g in value.split(sep) if g))
    return out


def items_frame(
    ids: pd.Series, title: pd.Series | None = None, categories: list | None = None
) -> pd.DataFrame:
    """An items table indexed by ``ids`` (first occurrence kept) with ``title`` and/or ``categories``."""
    data: dict[str, object] = {}
    if title is not None:
        data["title"] = title.to_numpy(dtype=object)
    if categories is not None:
        data["categories"] = pd.Series(categories, dtype=object).to_numpy()
    frame = pd.DataFrame(data, index=pd.Index(ids.to_numpy(), name=ITEM, dtype=ids.dtype))
    return frame[~frame.index.duplicated(keep="first")]


def first_category_items(items: pd.Series, categories: pd.Series) -> pd.DataFrame:
    """Items table from per-event categories: each item gets (its first seen category,)."""
    first = np.flatnonzero(~items.duplicated().to_numpy())  # a hash of the distinct items, not of every row
    cats = [(str(c),) for c in categories.to_numpy()[first]]
    return items_frame(pd.Series(items.to_numpy()[first], dtype=items.dtype), categories=cats)


def events_frame(columns: dict[str, pd.Series]) -> pd.DataFrame:
    """The events frame: the columns in the given order, with a fresh 0..n-1 index (the columns are not
    copied: a column is as big as the log)."""
    return pd.DataFrame({k: v.reset_index(drop=True) for k, v in columns.items()}, copy=False)


def skipped_meta(skipped: list[int]) -> dict[str, object]:
    """``Interactions.meta`` of a reader that skipped the malformed lines ``skipped`` (none: empty)."""
    return {"skipped_lines": skipped} if skipped else {}

