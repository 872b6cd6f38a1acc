"""Column-wise operations on dense codes with bounded memory: the building blocks of ``sinerec.data.preprocess``.

A log of N rows is held as a few columns; what preparing it costs on top of them is what these functions
allocate. Gathering and counting with int32 codes makes numpy convert the codes to its index type (int64)
first, a copy as big as the column; so both run over slices of :data:`CHUNK_ROWS` rows, and the transient
memory is a slice, not a column.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["CHUNK_ROWS", "count_codes", "kcore_rows", "member_rows", "sorted_codes", "take_chunked"]

#: Rows per slice of the chunked operations (32 MiB of int64 indices).
CHUNK_ROWS = 1 << 22


def sorted_codes(ids: pd.Series) -> tuple[np.ndarray, Any]:
    """Dense codes of ``ids`` in ascending order of the ids (int32 when they fit, else int64) and the distinct
    ids in that order: ``uniques[codes] == ids``; what ``pd.factorize(ids, sort=True)`` gives, in 4 bytes per
    row (integer ids spanning no more values than there are rows: a table over the span) or 12 bytes per row
    at the peak (hashing), instead of pandas' 21."""
    values = ids.to_numpy()
    if values.dtype.kind == "i" and len(values):
        low, high = int(values.min()), int(values.max())
        if high - low < len(values):
            return _span_codes(values, low, high)
    codes, uniques = pd.factorize(values, sort=False)
    try:
        sorter = np.argsort(uniques, kind="stable")
    except TypeError:  # ids of mixed types (objects): pandas' order (numbers before strings)
        codes, uniques = pd.factorize(values, sort=True)
        return codes.astype(np.int32 if len(uniques) < 2**31 else np.int64), uniques
    rank = np.empty(len(uniques), dtype=np.int32 if len(uniques) < 2**31 else np.int64)
    rank[sorter] = np.arange(len(uniques), dtype=rank.dtype)
    ranked = take_chunked(rank, codes)
    del codes
    return ranked, uniques[sorter]


def _span_codes(values: np.ndarray, low: int, high: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`sorted_codes` of integers in ``low..high`` through a table over that span (no hashing)."""
    seen = np.zeros(high - low + 1, dtype=bool)
    for start in range(0, len(values), CHUNK_ROWS):
        seen[values[start : start + CHUNK_ROWS] - low] = True
    uniques = np.flatnonzero(seen).astype(values.dtype) + low
    rank = np.cumsum(seen, dtype=np.int32 if len(uniques) < 2**31 else np.int64) - 1
    del seen
    codes = np.empty(len(values), dtype=rank.dtype)
    for start in range(0, len(values), CHUNK_ROWS):
        codes[start : start + CHUNK_ROWS] = rank[values[start : start + CHUNK_ROWS] - low]
    return codes, uniques


def member_rows(column: pd.Series, values: list[Any]) -> np.ndarray:
    """``column.isin(values)`` as a boolean array; a Categorical column is looked up by its codes, slice by
    slice (pandas' isin converts the codes of every row first)."""
    if not isinstance(column.dtype, pd.CategoricalDtype):
        return column.isin(values).to_numpy()
    wanted = set(values)
    table = np.array([c in wanted for c in column.cat.categories] + [False])  # code -1 (missing): the last
    return take_chunked(table, column.cat.codes.to_numpy())


def take_chunked(table: np.ndarray, codes: np.ndarray, order: np.ndarray | None = None,
                 dtype: np.dtype | type | None = None) -> np.ndarray:
    """``table[codes[order]]`` (``order`` None: ``table[codes]``) as ``dtype`` (default the table's), slice by
    slice, so that no index copy as long as the column is made."""
    n = len(codes) if order is None else len(order)
    out = np.empty(n, dtype=dtype or table.dtype)
    for start in range(0, n, CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, n)
        index = codes[start:stop] if order is None else codes[order[start:stop]]
        out[start:stop] = table[index]
    return out


def count_codes(codes: np.ndarray, n: int, keep: np.ndarray | None = None) -> np.ndarray:
    """How many rows (of those ``keep`` marks; None: all) hold each code 0..n-1: ``np.bincount``, by slices."""
    counts = np.zeros(n, dtype=np.int64)
    for start in range(0, len(codes), CHUNK_ROWS):
        part = codes[start : start + CHUNK_ROWS]
        if keep is not None:
            part = part[keep[start : start + CHUNK_ROWS]]
        counts += np.bincount(part, minlength=n)
    return counts


def _drop_rare(codes: np.ndarray, n: int, minimum: int, keep: np.ndarray) -> bool:
    """Unmark (in ``keep``) the rows whose code is held by fewer than ``minimum`` marked rows; whether any was."""
    rare = count_codes(codes, n, keep) < minimum
    changed = False
    for start in range(0, len(codes), CHUNK_ROWS):
        part = keep[start : start + CHUNK_ROWS]  # a view: unmarked in place
        drop = rare[codes[start : start + CHUNK_ROWS]] & part
        if drop.any():
            part &= ~drop
            changed = True
    return changed


def kcore_rows(users: np.ndarray, items: np.ndarray, keep: np.ndarray | None, n_users: int, n_items: int,
               min_user: int, min_item: int, iterative: bool) -> np.ndarray:
    """The rows (a boolean mask) left by the k-core filter among those ``keep`` marks (None: all).

    Items with fewer than ``min_item`` rows are dropped, then users with fewer than ``min_user``, repeated until
    both hold (``iterative``) or once. ``users``/``items`` are dense codes below ``n_users``/``n_items``.
    """
    keep = np.ones(len(users), dtype=bool) if keep is None else keep.copy()
    while True:
        changed = False
        if min_item > 0:
            changed |= _drop_rare(items, n_items, min_item, keep)
        if min_user > 0:
            changed |= _drop_rare(users, n_users, min_user, keep)
        if not iterative or not changed:
            return keep
