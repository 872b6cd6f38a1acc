"""Original ids (as the dataset spells them) and the dense indices the model uses.

A run keeps two id tables (``SequenceData.user_ids``, index u -> the user's id, and ``item_ids``, index
i -> the item's id, entry 0 being padding). Ids are int64 when every id of the dataset is an integer, else
text. This module owns the conversions between the two worlds:

- :func:`plain_id`: a table entry as a JSON-ready Python value;
- :func:`ids_from_text` and :func:`id_column`: a table read back from text (CSV), and written as a
  typed column (npz, Parquet);
- :func:`split_ids`: a comma-separated list typed by a person;
- :class:`IdMap`: original id -> index, accepting ids spelled as text ("42" finds 42 in an integer table,
  as command lines, URLs and JSON clients send them; 42 finds "42" in a text table).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["IdMap", "id_column", "ids_from_text", "plain_id", "split_ids"]

INTEGER_TEXT = re.compile(r"-?\d+")
"""How an integer id is spelled as text."""


def plain_id(value: Any) -> Any:
    """A numpy scalar as the Python int / str it holds (for JSON); any other value unchanged."""
    return value.item() if isinstance(value, np.generic) else value


def ids_from_text(values: pd.Series) -> np.ndarray:
    """Ids read back from CSV as text: int64 when every one is an integer (as the readers do), else str
    (an object array)."""
    text = values.astype(str)
    if text.str.fullmatch(INTEGER_TEXT.pattern).all():
        return text.astype(np.int64).to_numpy()
    return text.to_numpy(dtype=object)


def id_column(ids: Iterable[Any]) -> np.ndarray:
    """Original ids as int64 when they are all integers, else as text (never object arrays)."""
    values = list(ids)
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=np.int64)
    return np.asarray([str(v) for v in values], dtype=str)


def split_ids(text: str) -> list[str]:
    """``"12, 7,,x "`` -> ``["12", "7", "x"]``: a comma-separated list of ids, blanks dropped."""
    return [part.strip() for part in text.split(",") if part.strip()]


class IdMap:
    """Original id -> index for one id table, built once.

    Args:
        ids: the table, index -> original id (``SequenceData.user_ids`` or ``item_ids``).
        first: the first index that holds an id (1 for items: index 0 is padding, never looked up).
    """

    def __init__(self, ids: Sequence[Any] | np.ndarray, first: int = 0) -> None:
        self.integer = all(isinstance(i, (int, np.integer)) for i in ids[first:])
        self._index: dict[Any, int] = {self.key(i): idx for idx, i in enumerate(ids) if idx >= first}

    def key(self, value: Any) -> Any:
        """The dictionary key of an original id, or None for a value no id can equal: an integer table
        takes ints and integer text ("42", " -3 "), a text table takes text and ints (42 -> "42")."""
        if self.integer:
            if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
                return int(value)
            if isinstance(value, str) and INTEGER_TEXT.fullmatch(value.strip()):
                return int(value)
            return None
        return str(value) if isinstance(value, (str, int, np.integer)) else None

    def index(self, value: Any) -> int | None:
        """The index of original id ``value`` (spelled as :meth:`key` allows), None when unknown."""
        return self._index.get(self.key(value))

    def __len__(self) -> int:
        return len(self._index)
