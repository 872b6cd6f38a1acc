"""Preprocessing: filters, chronological order and id remapping, from `Interactions` to `SequenceData`.

Order of operations (each step is recorded in ``SequenceData.steps`` and in the fingerprint):

1. behaviour-type filter (keep the listed types; only when the log has a ``behavior`` column);
2. duplicate policy for repeated (user, item) pairs: ``keep`` all, keep the ``first`` or the ``last`` one;
3. iterative k-core filter: drop items with fewer than ``min_item_count`` and users with fewer than
   ``min_user_count`` interactions, repeated until both hold (``kcore_iterative=False`` does one pass,
   items first, then users: the ComiRec recipe);
4. chronological order per user, stable: ties in time keep file order (so does a log without timestamps);
5. ids remapped: users to 0..U-1 and items to 1..M in ascending order of their original ids
   (so "smaller id" means the same thing before and after remapping); 0 is the padding item.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sinerec.data.codes import count_codes, kcore_rows, member_rows, sorted_codes, take_chunked
from sinerec.data.frame import BEHAVIOR, ITEM, TIMESTAMP, USER, Interactions
from sinerec.errors import ConfigError


@dataclass(frozen=True)
class PreprocessConfig:
    """Filters applied before splitting. The defaults change nothing."""

    behaviors: tuple[str, ...] | None = None  # keep only these behaviour types (None: all)
    duplicates: str = "keep"  # "keep" | "first" | "last"
    min_user_count: int = 0
    min_item_count: int = 0
    kcore_iterative: bool = True

    def __post_init__(self) -> None:
        if self.duplicates not in ("keep", "first", "last"):
            raise ConfigError(f"data.duplicates: expected 'keep', 'first' or 'last', got {self.duplicates!r}")
        for key in ("min_user_count", "min_item_count"):
            if getattr(self, key) < 0:
                raise ConfigError(f"data.{key}: must be >= 0, got {getattr(self, key)!r}")


@dataclass
class SequenceData:
    """Per-user chronological sequences in CSR form, with the id maps back to the original ids.

    Attributes:
        items: (N,) int64 remapped item ids (1..M), user after user, each user's items in time order
            (a read-only ``np.memmap`` when loaded from a prepared dataset: ``sinerec.data.prepared``).
        offsets: (U + 1,) int64; user u's items are ``items[offsets[u]:offsets[u + 1]]``.
        user_ids: (U,) original user id of each user index.
        item_ids: (M + 1,) original item id of each item index; entry 0 (padding) is None.
        timestamps: (N,) aligned with ``items``, or None when the log has order only.
        item_titles / item_categories: per item index (length M + 1, entry 0 empty), when known.
    """

    name: str
    items: np.ndarray
    offsets: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    timestamps: np.ndarray | None = None
    item_titles: list[str] | None = None
    item_categories: list[tuple[str, ...]] | None = None
    steps: dict[str, Any] = field(default_factory=dict)

    @property
    def num_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def num_items(self) -> int:
        """M: the largest item id (ids are 1..M)."""
        return len(self.item_ids) - 1

    @property
    def num_interactions(self) -> int:
        return len(self.items)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sequence(self, user: int) -> np.ndarray:
        return self.items[self.offsets[user] : self.offsets[user + 1]]

    def fingerprint(self) -> str:
        """sha256 (16 hex) of the remapped sequences and the preprocessing steps: equal data, equal print."""
        h = hashlib.sha256()
        h.update(json.dumps({"name": self.name, "steps": self.steps}, sort_keys=True, default=str).encode())
        # hashed through the buffer, not a copy: a memory-mapped array (sinerec.data.prepared) stays shared
        h.update(np.ascontiguousarray(self.offsets, dtype=np.int64).data)
        h.update(np.ascontiguousarray(self.items, dtype=np.int64).data)
        return h.hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        lengths = self.lengths
        return {
            "name": self.name,
            "n_users": self.num_users,
            "n_items": _distinct(self.items),
            "n_interactions": self.num_interactions,
            "min_length": int(lengths.min()) if len(lengths) else 0,
            "median_length": float(np.median(lengths)) if len(lengths) else 0.0,
            "max_length": int(lengths.max()) if len(lengths) else 0,
            "fingerprint": self.fingerprint(),
        }


def _distinct(values: np.ndarray, chunk: int = 1 << 20) -> int:
    """The number of distinct non-negative ints in ``values``, read a chunk at a time: ``np.bincount`` copies
    a read-only array whole, which for a memory-mapped one (``sinerec.data.prepared``) is a private copy of
    every interaction in every process that describes it."""
    if not len(values):
        return 0
    seen = np.zeros(int(values.max()) + 1, dtype=bool)
    for lo in range(0, len(values), chunk):
        seen[values[lo:lo + chunk]] = True
    return int(np.count_nonzero(seen))


def _drop_duplicates(keep: np.ndarray | None, users: np.ndarray, items: np.ndarray, times: np.ndarray | None,
                     policy: str) -> np.ndarray:
    """``keep`` (None: all rows) less the repeated (user, item) pairs but the ``policy`` ("first"/"last") one:
    first or last in time, file order breaking ties (in file order without timestamps)."""
    mask = np.ones(len(users), dtype=bool) if keep is None else keep.copy()
    sub = np.flatnonzero(mask)
    pairs = pd.DataFrame({"u": users[sub], "i": items[sub]})
    if times is not None:
        order = np.lexsort((sub, times[sub]))
        pairs = pairs.iloc[order]
        sub = sub[order]
    dup = pairs.duplicated(keep=policy).to_numpy()
    mask[sub[dup]] = False
    return mask


def preprocess(data: Interactions, config: PreprocessConfig | None = None, release: bool = False) -> SequenceData:
    """Filter, order and remap an interaction log (see the module docstring for the exact order).

    Column-wise, with bounded memory (``sinerec.data.codes``): besides the log it holds the int32 codes of
    the users and items, one mask, and the sort order and the outputs (int64 items and timestamps).
    Timestamps come out int64 (integers, of any width) or float64. ``release``: the caller is done with the
    events, so each column of ``data.events`` is deleted (in place) once read, and its memory is given back
    while preparing (``data.events`` ends without columns; ``data.items`` is kept).
    """
    config = config or PreprocessConfig()
    ev = data.events
    steps: dict[str, Any] = {"raw": data.describe()}
    keep: np.ndarray | None = None  # the rows kept so far (None: all)

    def read(column: str) -> pd.Series:
        values = ev[column]
        if release:
            del ev[column]
        return values

    if config.behaviors is not None and BEHAVIOR in ev.columns:
        keep = member_rows(read(BEHAVIOR), list(config.behaviors))
        steps["behaviors"] = list(config.behaviors)

    # Dense codes for the original ids (ascending original ids, used for the final remap too).
    user_codes, user_uniques = sorted_codes(read(USER))
    item_codes, item_uniques = sorted_codes(read(ITEM))
    times = read(TIMESTAMP).to_numpy() if TIMESTAMP in ev.columns else None
    if release:
        for column in list(ev.columns):
            del ev[column]

    if config.duplicates != "keep":
        keep = _drop_duplicates(keep, user_codes, item_codes, times, config.duplicates)
        steps["duplicates"] = config.duplicates

    if config.min_user_count > 0 or config.min_item_count > 0:
        keep = kcore_rows(user_codes, item_codes, keep, len(user_uniques), len(item_uniques),
                          config.min_user_count, config.min_item_count, config.kcore_iterative)
        steps["kcore"] = {"min_user_count": config.min_user_count, "min_item_count": config.min_item_count,
                          "iterative": config.kcore_iterative}

    if keep is not None and not keep.all():
        user_codes = user_codes[keep]
        item_codes = item_codes[keep]
        times = times[keep] if times is not None else None
    del keep
    # Stable chronological order per user: sort by (user, time), ties in file order (lexsort is stable and
    # its last key is primary).
    user_counts = count_codes(user_codes, len(user_uniques))
    order = np.lexsort((times, user_codes)) if times is not None else np.argsort(user_codes, kind="stable")
    del user_codes

    # Remap to contiguous ids, keeping ascending original order: users 0..U-1, items 1..M.
    used_users = np.flatnonzero(user_counts)
    offsets = np.zeros(len(used_users) + 1, dtype=np.int64)
    np.cumsum(user_counts[used_users], out=offsets[1:])
    used_items = np.flatnonzero(count_codes(item_codes, len(item_uniques)))
    item_map = np.zeros(len(item_uniques), dtype=np.int64)
    item_map[used_items] = np.arange(1, len(used_items) + 1)
    items = take_chunked(item_map, item_codes, order)
    del item_codes
    ts = None
    if times is not None:
        wide = np.int64 if times.dtype.kind in "iu" else np.float64
        ts = times[order] if times.dtype == wide else take_chunked(times, order, dtype=wide)
    del order, times

    user_ids = np.asarray(user_uniques)[used_users]
    item_ids = np.empty(len(used_items) + 1, dtype=object)
    item_ids[0] = None
    item_ids[1:] = np.asarray(item_uniques)[used_items]

    titles = categories = None
    if data.items is not None and len(data.items):
        info = data.items.reindex(pd.Index(item_ids[1:]))
        if "title" in info.columns:
            titles = [""] + [t if isinstance(t, str) else "" for t in info["title"].tolist()]
        if "categories" in info.columns:
            categories = [()] + [tuple(c) if isinstance(c, (tuple, list)) else () for c in info["categories"]]

    out = SequenceData(
        name=data.name,
        items=items,
        offsets=offsets,
        user_ids=user_ids,
        item_ids=item_ids,
        timestamps=ts,
        item_titles=titles,
        item_categories=categories,
        steps=steps,
    )
    return out
