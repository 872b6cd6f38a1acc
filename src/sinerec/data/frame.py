"""The raw interaction log every reader returns, before any filtering or id remapping.

`Interactions` is the one contract between readers (``sinerec.data.formats``) and preprocessing
(``sinerec.data.preprocess``): a reader turns a file into it; nothing downstream knows about file formats.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

#: Column names of ``Interactions.events``.
USER, ITEM, TIMESTAMP, BEHAVIOR, CATEGORY = "user", "item", "timestamp", "behavior", "category"


@dataclass
class Interactions:
    """An interaction log in file order.

    Attributes:
        events: one row per interaction, in the order of the file(s). Columns:
            ``user`` and ``item``: original ids, int64 when every id in the file is an integer, else str
            (object dtype); ``timestamp``: int64 or float64 seconds, or absent when the format has order only
            (then file order is chronological order); ``behavior`` (optional, str): behaviour type such as
            "pv" or "buy"; ``category`` (optional): a per-event category id (Taobao). A log read for
            preprocessing only (``ReadOptions.compact``) may hold narrower types of the same values (int32
            timestamps, the behaviour as a Categorical) and leave out columns preprocessing does not read.
        items: optional item side information indexed by original item id (same dtype as ``events.item``):
            ``title`` (str) and/or ``categories`` (tuple of str labels, e.g. genres or attribute ids).
            May list items that never occur in ``events``.
        name: dataset name, used in fingerprints and run directories.
        source: human-readable description of where it was read from (paths).
    """

    events: pd.DataFrame
    items: pd.DataFrame | None = None
    name: str = "custom"
    source: str = ""
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def has_timestamps(self) -> bool:
        return TIMESTAMP in self.events.columns

    def describe(self) -> dict[str, int]:
        """Counts with no filter applied: distinct users, distinct items, rows."""
        return {
            "n_users": int(self.events[USER].nunique()),
            "n_items": int(self.events[ITEM].nunique()),
            "n_interactions": int(len(self.events)),
        }
